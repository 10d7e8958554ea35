"""extract_features' defaults and what it tells about a kept frame file it cannot reuse (survivors of
bench.mutation on features/extract.py)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from test_resume_features import FramesEmbedded, _interrupt

from ccl.features import FeaturesConfig, encode_text, extract_features
from ccl.features.backends.sim import SimEncoder
from ccl.io.features_h5 import features_writer, read_features
from ccl.io.resume import partial_folder


def test_defaults_are_seed_0_on_the_automatic_device_and_the_file_says_so(tiny_scene, part_masks, tmp_path):
    cfg = FeaturesConfig()
    default = read_features(extract_features(tiny_scene, part_masks, cfg=cfg, out_path=tmp_path / "a.h5"))
    seeded = read_features(
        extract_features(tiny_scene, part_masks, cfg=cfg, out_path=tmp_path / "b.h5", seed=0)
    )
    other = read_features(
        extract_features(tiny_scene, part_masks, cfg=cfg, out_path=tmp_path / "c.h5", seed=1)
    )
    assert (default.params["seed"], default.params["device"]) == (0, "auto")
    name = tiny_scene.frame_names[0]
    np.testing.assert_array_equal(default.frames[name], seeded.frames[name])
    assert not np.array_equal(default.frames[name], other.frames[name])  # the seed does change the noise


def test_a_config_of_another_type_is_refused_naming_it(tiny_scene, part_masks, tmp_path):
    with pytest.raises(TypeError, match=r"^cfg: expected a FeaturesConfig, got dict$"):
        extract_features(tiny_scene, part_masks, cfg={"backend": "sim"}, out_path=tmp_path / "f.h5")
    with pytest.raises(TypeError, match=r"^queries: expected a list of strings, got one string$"):
        encode_text("red mug", cfg=FeaturesConfig())


def _rerun_after_tampering(tiny_scene, part_masks, tmp_path, monkeypatch, caplog, tamper):
    frames = FramesEmbedded(monkeypatch, SimEncoder)

    def run(out):
        return extract_features(tiny_scene, part_masks, cfg=FeaturesConfig(), out_path=out, seed=0)

    out = tmp_path / "run" / "sp.h5"
    _interrupt(frames, run, out, at=3)
    tamper(partial_folder(out))
    with caplog.at_level(logging.WARNING):
        run(out)
    assert frames.embedded == list(range(len(tiny_scene.cameras)))  # nothing kept: all embedded again
    return caplog.text


def test_a_kept_file_of_another_frame_is_named_and_not_used(
    tiny_scene, part_masks, tmp_path, monkeypatch, caplog
):
    def swap(folder):
        shutil.copyfile(folder / "frame_00001.h5", folder / "frame_00002.h5")

    text = _rerun_after_tampering(tiny_scene, part_masks, tmp_path, monkeypatch, caplog, swap)
    assert "frame_00002.h5 cannot be used: holds frames ['frame_00001'] of dim" in text
    assert "expected ['frame_00002'] of dim" in text


def test_a_kept_file_with_another_mask_count_is_named_and_not_used(
    tiny_scene, part_masks, tmp_path, monkeypatch, caplog
):
    def one_row_more(folder):
        kept = read_features(folder / "frame_00002.h5")
        rows = kept.frames["frame_00002"]
        path = folder / "frame_00002.h5"
        path.unlink()
        with features_writer(path, dim=kept.dim, frame_names=["frame_00002"], params=kept.params,
                             model=kept.model) as w:  # fmt: skip
            w.add("frame_00002", np.concatenate([rows, rows[:1]]).astype(np.float32))
        want_rows.append(len(rows))

    want_rows: list[int] = []
    text = _rerun_after_tampering(tiny_scene, part_masks, tmp_path, monkeypatch, caplog, one_row_more)
    [n] = want_rows
    assert f"frame_00002.h5 cannot be used: holds features ({n + 1}, " in text
    assert f"expected ({n}, " in text


def test_no_seed_is_recorded_as_none(tiny_scene, part_masks, tmp_path):
    out = extract_features(
        tiny_scene, part_masks, cfg=FeaturesConfig(), out_path=tmp_path / "f.h5", seed=None
    )
    assert read_features(out).params["seed"] is None


@pytest.mark.parametrize("where", ["build", "encode_frame"])
def test_running_out_of_gpu_memory_names_the_stage_and_the_key_to_lower(
    tiny_scene, part_masks, tmp_path, monkeypatch, where
):
    import torch

    from ccl.device import StageOutOfMemoryError
    from ccl.features.backends import sim

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(sim if where == "build" else SimEncoder, where, out_of_memory)
    stage = "features" if where == "build" else f"features of frame {tiny_scene.frame_names[0]}"
    with pytest.raises(StageOutOfMemoryError) as e:
        extract_features(tiny_scene, part_masks, cfg=FeaturesConfig(), out_path=tmp_path / "f.h5")
    assert str(e.value).startswith(f"{stage}: the GPU ran out of memory")
    assert "lower features.batch_size (crops per forward pass, e.g. 32) in " in str(e.value)
