"""The models on CUDA against the same models on the CPU: tiny randomly initialised SAM, OpenCLIP and
SAM2 of the real architectures (tests/realpath/tiny_checkpoints.py) through ccl's backends. In float32
(precision: fp32, TF32 off) the outputs agree to rounding, and each real stage's output file on one scene
(masks, tracks, features) agrees with the CPU's within the tolerances below; in the default mixed
precision the embeddings stay within FP16_COSINE of the CPU's and the stages run end to end, recording the
dtype they computed in."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from cuda_testkit import F32_RTOL_OF_SCALE, FP16_COSINE, match_masks, needs_cuda
from realpath.tiny_checkpoints import (
    write_tiny_checkpoints,
    write_tiny_open_clip,
    write_tiny_sam,
    write_tiny_sam2,
)

pytestmark = [*needs_cuda(), pytest.mark.usefixtures("one_torch_thread")]

# A stage's output on one scene, float32 on both devices. Masks: a pixel whose logit lies within float32
# rounding of SAM's 0 threshold may flip, a few pixels of a mask: every mask has its twin on the other
# device at MASK_IOU or more. Tracks: a mask whose best match lies within rounding of SAM2's thresholds
# may take another label: at least TRACK_AGREEMENT of the masks keep theirs. Features: stored in float16
# (~5e-4 relative per value), so cosine FEATURE_COSINE or more.
MASK_IOU = 0.98
TRACK_AGREEMENT = 0.95
FEATURE_COSINE = 0.9999


def test_open_clip_on_cuda_matches_the_cpu(tmp_path):
    from ccl.features import FeaturesConfig
    from ccl.features.backends.open_clip import OpenClipEncoder

    section = write_tiny_open_clip(tmp_path / "clip")
    crops = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    cpu = OpenClipEncoder(FeaturesConfig(**section, precision="fp32"), device="cpu")
    want, want_text = cpu.encode_crops(crops), cpu.encode_text(["mug", "ramen bowl"])
    exact = OpenClipEncoder(FeaturesConfig(**section, precision="fp32"), device="cuda")
    np.testing.assert_allclose(exact.encode_crops(crops), want, atol=F32_RTOL_OF_SCALE)
    np.testing.assert_allclose(exact.encode_text(["mug", "ramen bowl"]), want_text, atol=F32_RTOL_OF_SCALE)
    mixed = OpenClipEncoder(FeaturesConfig(**section), device="cuda")  # the default: fp16
    assert mixed.model_info()["dtype"] == "float16"
    cosine = (mixed.encode_crops(crops) * want).sum(-1)
    assert cosine.min() >= FP16_COSINE, cosine.min()


def test_sam_decoder_on_cuda_matches_the_cpu_and_generation_runs_in_bf16(tmp_path):
    from segment_anything import SamPredictor
    from segment_anything.utils.amg import build_all_layer_point_grids

    from ccl.masks import MasksConfig
    from ccl.masks.backends.sam import SAM_BUILDERS, generate_levels, load_sam

    section = write_tiny_sam(tmp_path / "sam")
    cfg = MasksConfig(**section)
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    points = torch.tensor([[[10.0, 12.0]], [[40.0, 30.0]]])
    out = {}
    for dev in ("cpu", "cuda"):
        model = load_sam(
            "vit_h", cfg.sam_checkpoint, builders=SAM_BUILDERS, device=dev, overrides=cfg.sam_overrides
        )
        predictor = SamPredictor(model)
        predictor.set_image(image)
        coords = torch.as_tensor(
            predictor.transform.apply_coords(points.numpy(), image.shape[:2]), device=dev
        )
        with torch.no_grad():
            logits, iou, _ = predictor.predict_torch(
                coords,
                torch.ones(2, 1, dtype=torch.int, device=dev),
                multimask_output=True,
                return_logits=True,
            )
        out[dev] = (logits.cpu(), iou.cpu())
    scale = float(out["cpu"][0].abs().max())
    torch.testing.assert_close(out["cuda"][0], out["cpu"][0], atol=F32_RTOL_OF_SCALE * scale, rtol=0)
    torch.testing.assert_close(out["cuda"][1], out["cpu"][1], atol=F32_RTOL_OF_SCALE, rtol=0)

    model = load_sam(
        "vit_h", cfg.sam_checkpoint, builders=SAM_BUILDERS, device="cuda", overrides=cfg.sam_overrides
    )
    grids = build_all_layer_point_grids(
        cfg.points_per_side, cfg.crop_n_layers, cfg.crop_n_points_downscale_factor
    )
    assert cfg.precision == "bf16"
    levels = generate_levels(SamPredictor(model), image, cfg=cfg, point_grids=grids)
    assert len(levels) == 3 and all(lv.masks.shape[1:] == (48, 64) for lv in levels)
    assert sum(len(lv) for lv in levels) > 0


def test_sam2_tracks_on_cuda_in_bf16(tiny_scene, tmp_path):
    from gt_masks_testkit import first_frames, write_gt_masks

    from ccl.io.tracks_h5 import read_tracks
    from ccl.tracks import TracksConfig, track_masks

    section = write_tiny_sam2(tmp_path / "sam2")
    scene = first_frames(tiny_scene, 3)
    masks = write_gt_masks(scene, tmp_path / "sp.h5")
    cfg = TracksConfig(**section)
    frames = track_masks(scene, masks, cfg=cfg, out_path=tmp_path / "t.h5", device="cuda")
    k = frames[0].n_masks
    np.testing.assert_array_equal(frames[0].labels, np.arange(k))
    assert all(((f.labels >= -1) & (f.labels < k)).all() for f in frames)
    assert read_tracks(tmp_path / "t.h5").model["dtype"] == "bfloat16"
    exact = track_masks(scene, masks, cfg=dataclasses.replace(cfg, precision="fp32"), out_path=tmp_path / "f.h5",
                        device="cuda")  # fmt: skip
    assert read_tracks(tmp_path / "f.h5").model["dtype"] == "float32" and len(exact) == len(frames)


def test_each_real_stage_on_cuda_matches_the_cpu_on_one_scene(tiny_scene, tmp_path):
    """Masks, tracks and features of the tiny scene's first frames, each stage fed the same input on both
    devices (the CPU's masks for tracks and features), through the stages' entries as the workflow calls them."""
    from gt_masks_testkit import first_frames

    from ccl.config import section
    from ccl.features import FeaturesConfig, extract_features
    from ccl.io.features_h5 import read_features
    from ccl.io.tracks_h5 import read_tracks
    from ccl.masks import MasksConfig, generate_masks, merge_masks, open_raw_masks
    from ccl.tracks import TracksConfig, track_masks

    sections = write_tiny_checkpoints(tmp_path / "models")
    scene = first_frames(tiny_scene, 3)
    exact = {stage: {**sections[stage], "precision": "fp32"} for stage in ("masks", "tracks", "features")}
    masks_cfg = section(MasksConfig, exact["masks"])
    raw = {dev: generate_masks(scene, cfg=masks_cfg, out_path=tmp_path / f"raw_{dev}.h5", device=dev)
           for dev in ("cpu", "cuda")}  # fmt: skip
    with open_raw_masks(raw["cpu"]) as cpu, open_raw_masks(raw["cuda"]) as gpu:
        assert gpu.model["device"].startswith("cuda")
        for name in scene.frame_names:
            for level, (want, got) in enumerate(
                zip(cpu.read(name).levels(), gpu.read(name).levels(), strict=True)
            ):
                assert len(got) == len(want), (name, level, len(got), len(want))
                for a, b in ((got.masks, want.masks), (want.masks, got.masks)):
                    ious = match_masks(a, b)
                    assert (ious >= MASK_IOU).all(), (name, level, ious.min())
    wp = merge_masks(raw["cpu"], scale="wp", cfg=masks_cfg, out_path=tmp_path / "wp.h5")

    tracks_cfg = section(TracksConfig, exact["tracks"])
    for dev in ("cpu", "cuda"):
        track_masks(scene, wp, cfg=tracks_cfg, out_path=tmp_path / f"tracks_{dev}.h5", device=dev)
    want, got = read_tracks(tmp_path / "tracks_cpu.h5"), read_tracks(tmp_path / "tracks_cuda.h5")
    labels = [g.labels == w.labels for g, w in zip(got.frames.values(), want.frames.values(), strict=True)]
    agreement = float(np.concatenate(labels).mean())
    assert agreement >= TRACK_AGREEMENT, agreement

    features_cfg = section(FeaturesConfig, exact["features"])
    for dev in ("cpu", "cuda"):
        extract_features(scene, wp, cfg=features_cfg, out_path=tmp_path / f"f_{dev}.h5", device=dev)
    want, got = read_features(tmp_path / "f_cpu.h5"), read_features(tmp_path / "f_cuda.h5")
    for name in scene.frame_names:
        a, b = want.frames[name].astype(np.float32), got.frames[name].astype(np.float32)
        cosine = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
        assert cosine.min() >= FEATURE_COSINE, (name, cosine.min())
