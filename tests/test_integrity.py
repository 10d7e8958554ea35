"""Nothing wrong is trusted: a checkpoint or HDF5 file damaged after it was written, a masks file of
another scene, and text weights other than those the features were made with are refused by their
readers, naming the files and the command that remakes the stale one; no output is left for a later run."""

from __future__ import annotations

import json
import logging
import struct

import h5py
import numpy as np
import pytest
import torch

from ccl.config import as_params
from ccl.features import FeaturesConfig
from ccl.io import atomic_write_json, file_sha256
from ccl.io.features_h5 import features_writer
from ccl.io.h5 import CHECKSUM_ATTR, H5FormatError, stamped_sha256
from ccl.io.masks_h5 import LevelMasks, RawFrameMasks, open_masks, open_raw_masks, write_raw_masks
from ccl.io.provenance import file_record
from ccl.masks import MasksConfig, merge_masks
from ccl.query.fields import scene_text_encoder
from ccl.splat.checkpoint import load_rgb_field, save_rgb_field
from ccl.splat.model import init_gaussians

HEADER = {"config": {"iterations": 7}, "iteration": 7, "scene": "kitchen", "device": "cpu", "seed": 0}


def _rgb_field(path):
    rng = np.random.default_rng(0)
    g = init_gaussians(rng.normal(size=(50, 3)).astype(np.float32), rng.integers(0, 256, (50, 3), dtype=np.uint8),
                       sh_degree=1, init_opacity=0.3, init_scale=1.0)  # fmt: skip
    return save_rgb_field(path, g, header=HEADER)


def _tensor_offset(path, name):
    """Byte offset in a safetensors file of tensor `name`'s data."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return 8 + n + json.loads(raw[8 : 8 + n])[name]["data_offsets"][0]


@pytest.mark.parametrize("bit", [1, 30])  # a low mantissa bit, an exponent bit of means[0, 0]
def test_a_flipped_bit_in_a_fields_tensors_is_refused(tmp_path, bit):
    path = _rgb_field(tmp_path / "rgb.safetensors")
    good, _ = load_rgb_field(path, scene="kitchen")
    raw = bytearray(path.read_bytes())
    at = _tensor_offset(path, "means") + bit // 8
    raw[at] ^= 1 << (bit % 8)
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="not those it was written with") as e:
        load_rgb_field(path, scene="kitchen")
    assert str(path) in str(e.value) and "snakemake <this file> --force" in str(e.value)
    assert path.read_bytes() == bytes(raw), "the damaged file is kept as it is, never rewritten"


def test_a_changed_digit_of_a_fields_header_is_refused(tmp_path):
    path = _rgb_field(tmp_path / "rgb.safetensors")
    raw = path.read_bytes()
    assert raw.count(b'\\"iteration\\": 7') == 1
    path.write_bytes(raw.replace(b'\\"iteration\\": 7', b'\\"iteration\\": 9'))
    with pytest.raises(ValueError, match="not those it was written with"):
        load_rgb_field(path, scene="kitchen")


def test_a_field_of_an_earlier_ccl_without_checksum_is_read_with_a_warning(tmp_path, caplog):
    from safetensors.torch import load_file, safe_open, save_file

    path = _rgb_field(tmp_path / "rgb.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = {"ccl_header": f.metadata()["ccl_header"]}  # as the previous release wrote it
    save_file(load_file(str(path)), str(path), metadata=meta)
    with caplog.at_level(logging.WARNING):
        g, header = load_rgb_field(path, scene="kitchen")
    assert header["iteration"] == 7 and len(g) == 50
    assert "without a checksum" in caplog.text and "snakemake <this file> --force" in caplog.text


def _raw(path, manifest, *, seed=0):
    rng = np.random.default_rng(seed)
    h, w = 48, 64
    frames = []
    for name in ("frame_00001", "frame_00002"):
        levels = {}
        for i, lv in enumerate(("subpart", "part", "whole")):
            masks = np.zeros((3, h, w), bool)
            for k in range(3):
                y, x = rng.integers(0, h - 12), rng.integers(0, w - 12)
                masks[k, y : y + 8 + 4 * i, x : x + 8 + 4 * i] = True
            levels[lv] = LevelMasks.from_masks(masks, rng.random(3, dtype=np.float32), rng.random(3, dtype=np.float32))
        frames.append(RawFrameMasks(name=name, **levels))
    return write_raw_masks(path, frames, frame_names=["frame_00001", "frame_00002"], params={"seed": 0},
                           model={"backend": "sim"}, inputs={"manifest": file_record(manifest)})  # fmt: skip


def _manifest(path, name):
    return atomic_write_json(path, {"format_version": 1, "name": name})  # its content is its identity


def test_a_raw_masks_file_of_another_scene_is_refused_and_nothing_is_written(tmp_path):
    here = _manifest(tmp_path / "ramen" / "scene.json", "ramen")
    there = _manifest(tmp_path / "teatime" / "scene.json", "teatime")
    raw = _raw(tmp_path / "ramen" / "masks" / "raw.h5", there)  # teatime's, copied over ramen's
    out = tmp_path / "ramen" / "masks" / "wp.h5"
    with pytest.raises(ValueError, match="was made from another scene manifest") as e:
        merge_masks(raw, scale="wp", cfg=MasksConfig(), out_path=out, manifest=here)
    msg = str(e.value)
    assert str(there) in msg and str(here) in msg and f"snakemake {raw} --force" in msg
    assert not out.exists() and not list(out.parent.glob(".wp.h5*"))


def test_merged_masks_name_their_scene_for_every_later_reader(tmp_path):
    from ccl.io.provenance import check_scene_of

    here = _manifest(tmp_path / "ramen" / "scene.json", "ramen")
    there = _manifest(tmp_path / "teatime" / "scene.json", "teatime")
    raw = _raw(tmp_path / "teatime" / "masks" / "raw.h5", there)
    wp = merge_masks(raw, scale="wp", cfg=MasksConfig(), out_path=tmp_path / "teatime" / "masks" / "wp.h5",
                     manifest=there)  # fmt: skip
    with open_masks(wp) as r:
        assert r.inputs["manifest"] == file_record(there) and r.inputs["raw"] == file_record(raw)
        check_scene_of(wp, r.inputs, there)  # its own scene: accepted
        with pytest.raises(ValueError, match="another scene manifest"):  # copied into ramen: refused
            check_scene_of(wp, r.inputs, here)


def test_a_damaged_hdf5_chunk_or_attribute_is_refused(tmp_path):
    here = _manifest(tmp_path / "scene.json", "ramen")
    raw = _raw(tmp_path / "raw.h5", here)
    with open_raw_masks(raw) as r:
        assert len(r) == 2
    wp = merge_masks(raw, scale="wp", cfg=MasksConfig(), out_path=tmp_path / "wp.h5", manifest=here)
    with h5py.File(wp, "r") as f:
        ds = f["frame_00001/segmentation"]
        assert ds.chunks is not None
        info = ds.id.get_chunk_info(0)
    assert stamped_sha256(wp)
    data = bytearray(wp.read_bytes())
    data[info.byte_offset + info.size // 2] ^= 0x04
    wp.write_bytes(bytes(data))
    with pytest.raises(H5FormatError, match="not those it was written with") as e:
        open_masks(wp)
    assert "snakemake <this file> --force" in str(e.value)

    with h5py.File(raw, "r+") as f:  # an edited attribute (another scale's parameters, say)
        f.attrs["params"] = json.dumps({"seed": 1})
    with pytest.raises(H5FormatError, match="not those it was written with"):
        open_raw_masks(raw)


def test_text_weights_replaced_at_their_path_are_refused(tmp_path):
    weights = tmp_path / "ckpt" / "open_clip.bin"
    weights.parent.mkdir()
    torch.save({"w": torch.zeros(3)}, weights)
    cfg = FeaturesConfig(backend="open_clip", pretrained=str(weights))
    features = tmp_path / "ramen" / "features" / "wp.h5"
    model = {"backend": "open_clip", "pretrained": str(weights), "pretrained_sha256": file_sha256(weights)}
    with features_writer(features, dim=4, frame_names=["f"], params={**as_params(cfg), "seed": 0},
                         model=model) as w:  # fmt: skip
        w.add("f", np.zeros((1, 4), np.float32))
    assert scene_text_encoder(tmp_path / "ramen").pretrained == str(weights)

    torch.save({"w": torch.ones(3)}, weights)  # other weights of the same architecture, same path
    with pytest.raises(ValueError, match="would not share a space") as e:
        scene_text_encoder(tmp_path / "ramen")
    msg = str(e.value)
    assert str(weights) in msg and str(features) in msg and "features.pretrained" in msg
    assert f"snakemake {features} --forcerun clip_features" in msg


def test_a_full_disk_in_a_jobs_checkpoint_write_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    """safetensors reports ENOSPC as its own error type: the job still ends with ccl's one line (the
    file, the space left, that the kept work resumes), the old file kept and no temporary left."""
    from types import SimpleNamespace

    import safetensors.torch
    from safetensors import SafetensorError

    from ccl.runlog import script_logging

    path = _rgb_field(tmp_path / "gaussians" / "rgb.safetensors")
    before = path.read_bytes()

    def full(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
        )

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    job = SimpleNamespace(log=[str(tmp_path / "train_rgb.log")], threads=None, rule="train_rgb",
                          wildcards={"scene": "ramen", "seed": 0})  # fmt: skip
    with pytest.raises(SystemExit) as e, script_logging(job):
        _rgb_field(path)
    assert e.value.code == 1
    console = capsys.readouterr().err.strip().splitlines()
    assert len(console) == 1, console
    line = console[0]
    assert line.startswith(f"train_rgb ramen seed0: ERROR: {path}: no space left on the device")
    assert "MB free" in line and "resumed, not redone" in line and "Traceback" not in line
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["rgb.safetensors"]


def test_an_image_there_under_another_case_is_named_not_just_skipped(tmp_path, caplog):
    from scene.scene_testkit import make_colmap_scene

    from ccl.scene import SceneLoadConfig, load_scene

    root = make_colmap_scene(tmp_path / "fig", n=4)
    (root / "images" / "frame_00002.jpg").rename(root / "images" / "frame_00002.JPG")
    with caplog.at_level(logging.WARNING):
        scene = load_scene(root, source="colmap", cfg=SceneLoadConfig(), name="fig")
    assert "frame_00002" not in scene.frame_names
    assert "under another case (e.g. frame_00002.JPG for frame_00002.jpg)" in caplog.text
    assert "rename those files" in caplog.text


def _as_an_earlier_ccl_wrote_it(path, out):
    """`path` rewritten as the previous release wrote HDF5 files: no user block, the checksum the root
    attribute `content_sha256` over every object (h5_content_sha256), `complete` set after it."""
    from ccl.io.h5 import h5_content_sha256

    with h5py.File(path, "r") as src, h5py.File(out, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        del dst.attrs["complete"]
        for key in src:
            src.copy(src[key], dst, name=key)
        dst.flush()
        dst.attrs[CHECKSUM_ATTR] = h5_content_sha256(dst)
        dst.attrs["complete"] = True
    return out


def test_a_file_of_an_earlier_ccl_is_verified_by_the_checksum_it_carries(tmp_path):
    from ccl.io.h5 import h5_content_sha256

    here = _manifest(tmp_path / "scene.json", "ramen")
    old = _as_an_earlier_ccl_wrote_it(_raw(tmp_path / "new.h5", here), tmp_path / "raw.h5")
    with open_raw_masks(old) as r:  # accepted: its attribute checksum verifies
        assert len(r) == 2
    with h5py.File(old, "r") as f:  # the one-pass chunk read hashes as the per-chunk read does
        assert h5_content_sha256(f) == f.attrs[CHECKSUM_ATTR]
    with h5py.File(old, "r", driver="core") as f:  # in memory: no file to read chunks from
        assert h5_content_sha256(f) == f.attrs[CHECKSUM_ATTR]
    with h5py.File(old, "r+") as f:  # damaged later: refused as before
        f.attrs["params"] = json.dumps({"seed": 1})
    with pytest.raises(H5FormatError, match="not those it was written with"):
        open_raw_masks(old)


def test_a_file_whose_checksum_stamp_was_overwritten_is_refused(tmp_path):
    raw = _raw(tmp_path / "raw.h5", _manifest(tmp_path / "scene.json", "ramen"))
    data = bytearray(raw.read_bytes())
    data[:8] = b"\0" * 8
    raw.write_bytes(bytes(data))
    with pytest.raises(H5FormatError, match="checksum stamp is missing or damaged") as e:
        open_raw_masks(raw)
    assert "snakemake <this file> --force" in str(e.value)


def test_weights_are_hashed_once_per_file_version_across_processes(tmp_path, monkeypatch):
    # a later process (the in-process memory cleared) finds the hash on disk and reads no weights; the
    # weights rewritten in place, same size and mtime restored, are hashed again and refused
    import os

    from ccl.io import hashing

    monkeypatch.setenv("CCL_HASH_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "open_clip.bin"
    torch.save({"w": torch.zeros(3)}, weights)
    first = hashing.weights_sha256(weights)
    assert first == file_sha256(weights)

    hashing._REMEMBERED.clear()
    monkeypatch.setattr(hashing, "file_sha256", lambda p: pytest.fail(f"{p} hashed again"))
    assert hashing.weights_sha256(weights) == first
    monkeypatch.undo()
    monkeypatch.setenv("CCL_HASH_CACHE", str(tmp_path / "cache"))

    st = weights.stat()
    torch.save({"w": torch.ones(3)}, weights)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights.stat().st_size == st.st_size
    hashing._REMEMBERED.clear()
    assert hashing.weights_sha256(weights) == file_sha256(weights) != first
