"""The models on CUDA against the same models on the CPU: tiny randomly initialised SAM, OpenCLIP and
SAM2 of the real architectures (tests/realpath/tiny_checkpoints.py) through ccl's backends. In float32
(precision: fp32) the outputs agree to rounding; in the default mixed precision the embeddings stay
within FP16_COSINE of the CPU's and the stages run end to end, recording the dtype they computed in."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from cuda_testkit import needs_cuda
from realpath.tiny_checkpoints import write_tiny_open_clip, write_tiny_sam, write_tiny_sam2

pytestmark = [*needs_cuda(), pytest.mark.usefixtures("one_torch_thread")]

# float32 on both devices: TF32 is off in torch by default for matmuls, so only the summation order
# differs (~1e-6 relative); 1e-4 of the outputs' scale leaves room for a few hundred of those.
F32_ATOL = 1e-4
FP16_COSINE = 0.995  # fp16 autocast of a 2-layer tiny CLIP: ~1e-3 relative error per layer


def test_open_clip_on_cuda_matches_the_cpu(tmp_path):
    from ccl.features import FeaturesConfig
    from ccl.features.backends.open_clip import OpenClipEncoder

    section = write_tiny_open_clip(tmp_path / "clip")
    crops = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    cpu = OpenClipEncoder(FeaturesConfig(**section, precision="fp32"), device="cpu")
    want, want_text = cpu.encode_crops(crops), cpu.encode_text(["mug", "ramen bowl"])
    exact = OpenClipEncoder(FeaturesConfig(**section, precision="fp32"), device="cuda")
    np.testing.assert_allclose(exact.encode_crops(crops), want, atol=F32_ATOL)
    np.testing.assert_allclose(exact.encode_text(["mug", "ramen bowl"]), want_text, atol=F32_ATOL)
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
    torch.testing.assert_close(out["cuda"][0], out["cpu"][0], atol=F32_ATOL * scale, rtol=0)
    torch.testing.assert_close(out["cuda"][1], out["cpu"][1], atol=F32_ATOL, rtol=0)

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
