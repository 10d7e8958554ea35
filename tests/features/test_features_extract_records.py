"""extract_features' defaults and what it tells about a kept frame file it cannot reuse (survivors of
bench.mutation on features/extract.py)."""

from __future__ import annotations

import logging
import re
import shutil

import numpy as np
import pytest
from features_testkit import first_frames, write_gt_masks
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


@pytest.mark.usefixtures("one_torch_thread")
def test_no_seed_is_recorded_as_none(tiny_scene, tiny_clip, tmp_path):
    """seed=None is what the workflow gives the real models, which draw nothing (the sim refuses it:
    tests/test_sim_seed.py)."""
    scene = first_frames(tiny_scene, 1)
    masks = write_gt_masks(scene, tmp_path / "sp.h5")
    name, weights = tiny_clip
    cfg = FeaturesConfig(backend="open_clip", model_name=name, pretrained=str(weights), crop_size=32)
    out = extract_features(scene, masks, cfg=cfg, out_path=tmp_path / "f.h5", device="cpu", seed=None)
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


def _masks_of_scene(scene, path, manifest):
    from gt_masks_testkit import gt_frame_masks

    from ccl.io.masks_h5 import write_masks
    from ccl.io.provenance import file_record

    return write_masks(path, gt_frame_masks(scene), frame_names=scene.frame_names, scale="sp",
                       params={"test": "ground-truth masks"}, model={"backend": "test", "simulated": True},
                       inputs={"manifest": file_record(manifest)})  # fmt: skip


def test_masks_of_another_scene_manifest_are_refused_naming_both(tiny_scene, tmp_path):
    import json

    here, there = tmp_path / "here" / "scene.json", tmp_path / "there" / "scene.json"
    for path, name in ((here, "ramen"), (there, "teatime")):
        path.parent.mkdir()
        path.write_text(json.dumps({"format_version": 1, "name": name}))
    masks = _masks_of_scene(tiny_scene, tmp_path / "here" / "sp.h5", here)
    out = extract_features(tiny_scene, masks, cfg=FeaturesConfig(), out_path=tmp_path / "a.h5", manifest=here)
    assert read_features(out).frame_names == tiny_scene.frame_names  # its own scene: accepted
    with pytest.raises(ValueError) as e:
        extract_features(tiny_scene, masks, cfg=FeaturesConfig(), out_path=tmp_path / "b.h5", manifest=there)
    assert str(e.value).startswith(f"{masks} was made from another scene manifest ({here})")
    assert f"not from {there}" in str(e.value)
    assert not (tmp_path / "b.h5").exists()


def test_masks_of_fewer_frames_are_refused_naming_the_masks_file(tiny_scene, tmp_path):
    masks = write_gt_masks(first_frames(tiny_scene, 3), tmp_path / "sp.h5")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(masks))}: its frames .* are not scene 'tiny'"):
        extract_features(tiny_scene, masks, cfg=FeaturesConfig(), out_path=tmp_path / "f.h5")


def test_the_sim_backend_refuses_a_scene_without_ground_truth_before_any_work(
    tiny_scene, part_masks, tmp_path
):
    import dataclasses

    real = dataclasses.replace(tiny_scene, root=tmp_path)  # no gt.h5 there: not a synthetic scene
    with pytest.raises(ValueError, match="not a synthetic scene"):
        extract_features(real, part_masks, cfg=FeaturesConfig(), out_path=tmp_path / "f.h5")
    assert not (tmp_path / "f.h5").exists()


@pytest.mark.usefixtures("one_torch_thread")
def test_open_clip_embeds_the_images_the_caller_loads(tiny_scene, tiny_clip, tmp_path):
    from ccl.scene import SceneLoadConfig, load_image

    scene = first_frames(tiny_scene, 2)
    masks = write_gt_masks(scene, tmp_path / "sp.h5")
    name, weights = tiny_clip
    cfg = FeaturesConfig(backend="open_clip", model_name=name, pretrained=str(weights), crop_size=32)
    loaded = []

    def upside_down(camera):  # the workflow passes its own loader (scene_load's downscale, the cache)
        loaded.append(camera.name)
        return np.ascontiguousarray(load_image(camera, cfg=SceneLoadConfig())[::-1])

    plain = read_features(extract_features(scene, masks, cfg=cfg, out_path=tmp_path / "a.h5", device="cpu"))
    flipped = read_features(
        extract_features(
            scene, masks, cfg=cfg, out_path=tmp_path / "b.h5", device="cpu", load_image=upside_down
        )
    )
    assert loaded == scene.frame_names
    name0 = scene.frame_names[0]
    assert not np.allclose(plain.frames[name0], flipped.frames[name0], atol=1e-3)


@pytest.mark.usefixtures("one_torch_thread")
def test_text_is_embedded_on_the_automatic_device_by_default(tiny_clip):
    import torch

    name, weights = tiny_clip
    cfg = FeaturesConfig(backend="open_clip", model_name=name, pretrained=str(weights), crop_size=32)
    default = encode_text(["red mug"], cfg=cfg)  # "auto": the CPU on a machine without CUDA
    if not torch.cuda.is_available():
        np.testing.assert_array_equal(default, encode_text(["red mug"], cfg=cfg, device="cpu"))
    assert default.shape == (1, 16) and np.isclose(np.linalg.norm(default), 1.0, atol=1e-3)


def test_the_file_names_its_inputs_and_the_log_counts_the_masks(
    tiny_scene, part_masks, tmp_path, caplog, capsys
):
    from ccl.io import file_sha256, open_h5_for_read
    from ccl.io.h5 import read_json_attr
    from ccl.io.masks_h5 import open_masks

    out = tmp_path / "f.h5"
    with caplog.at_level(logging.INFO, logger="ccl.features.extract"):
        extract_features(tiny_scene, part_masks, cfg=FeaturesConfig(), out_path=out)
    with open_h5_for_read(out, kind="features") as f:
        inputs = read_json_attr(f, "inputs")
    with open_masks(part_masks) as r:
        masks_model = r.model
    assert inputs["masks"]["path"].endswith("sp.h5") and inputs["masks"]["sha256"] == file_sha256(part_masks)
    assert (inputs["masks_model"], inputs["scene"]) == (masks_model, tiny_scene.name)
    feats = read_features(out)
    n = sum(len(v) for v in feats.frames.values())
    assert f"{out}: {n} masks embedded in {feats.dim} dims" in caplog.messages
    k = len(tiny_scene.cameras)
    assert re.search(rf"features: 100%.*\| {k}/{k} .*(frame/s|s/frame)", capsys.readouterr().err)


def test_a_frame_of_one_mask_gets_its_vector_and_a_frame_of_none_is_said(tiny_scene, tmp_path, caplog):
    import dataclasses

    from gt_masks_testkit import gt_frame_masks

    from ccl.io.masks_h5 import write_masks

    one, none = tiny_scene.frame_names[1], tiny_scene.frame_names[3]

    def only_the_first(fm):
        seg = np.where(fm.segmentation == 0, 0, -1).astype(np.int32)
        keep = {
            k: getattr(fm, k)[:1] for k in ("score", "pred_iou", "stability", "area", "boxes_xyxy", "level")
        }
        return dataclasses.replace(fm, segmentation=seg, **keep)

    frames = [
        only_the_first(fm) if fm.name == one else fm for fm in gt_frame_masks(tiny_scene, empty=(none,))
    ]
    masks = write_masks(tmp_path / "sp.h5", frames, frame_names=tiny_scene.frame_names, scale="sp",
                        params={"test": "one mask"}, model={"backend": "test"})  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ccl.features.extract"):
        feats = read_features(
            extract_features(tiny_scene, masks, cfg=FeaturesConfig(), out_path=tmp_path / "f.h5")
        )
    assert feats.frames[one].shape == (1, feats.dim)
    assert np.linalg.norm(feats.frames[one].astype(np.float32)) == pytest.approx(1.0, abs=1e-2)
    assert feats.frames[none].shape == (0, feats.dim)
    assert f"frame {none} has no masks: features [0, {feats.dim}]" in caplog.messages


def test_masks_of_another_image_size_are_refused_naming_the_masks_file(tiny_scene, part_masks, tmp_path):
    import dataclasses

    cams = tuple(dataclasses.replace(c, width=c.width * 2, height=c.height * 2) for c in tiny_scene.cameras)
    bigger = dataclasses.replace(tiny_scene, cameras=cams)
    with pytest.raises(
        ValueError, match=rf"^{re.escape(str(part_masks))}: frame \S+ is \d+x\d+, the scene's image"
    ):
        extract_features(bigger, part_masks, cfg=FeaturesConfig(), out_path=tmp_path / "f.h5")


@pytest.mark.parametrize("change", ["masks_model", "scene"])
def test_a_side_folder_of_another_masks_model_or_scene_is_set_aside_naming_it(
    tiny_scene, part_masks, tmp_path, monkeypatch, caplog, change
):
    import dataclasses

    from gt_masks_testkit import gt_frame_masks

    from ccl.io.masks_h5 import write_masks

    frames = FramesEmbedded(monkeypatch, SimEncoder)
    out = tmp_path / "run" / "sp.h5"

    def run(scene, masks):
        return extract_features(scene, masks, cfg=FeaturesConfig(), out_path=out, seed=0)

    _interrupt(frames, lambda _: run(tiny_scene, part_masks), out, at=3)
    scene, masks = tiny_scene, part_masks
    if change == "masks_model":  # the same masks from another model, at the same path
        masks = write_masks(tmp_path / "other" / "sp.h5", gt_frame_masks(tiny_scene),
                            frame_names=tiny_scene.frame_names, scale="sp", params={"test": "ground-truth masks"},
                            model={"backend": "another"})  # fmt: skip
    else:
        scene = dataclasses.replace(tiny_scene, name="another")
    with caplog.at_level(logging.WARNING):
        run(scene, masks)
    assert frames.embedded == list(range(len(tiny_scene.cameras)))
    said = next(r.getMessage() for r in caplog.records if "made with other" in r.getMessage())
    assert re.search(rf"made with other [^;]*\b{change}\b", said), said
