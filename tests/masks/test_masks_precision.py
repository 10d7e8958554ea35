"""masks.precision and masks.points_per_batch: on a CPU the masks are the same bit for bit whatever
they say (autocast is CUDA's only; auto is the batch of 64 the CPU always used); out of GPU memory,
the stage names the keys that lower it and keeps the frames it finished."""

from __future__ import annotations

import dataclasses

import pytest
from masks_testkit import TINY_BUILDERS, blob_image, build_tiny_sam, image_scene

from ccl.device import StageOutOfMemoryError
from ccl.masks import MasksConfig, generate_masks
from ccl.masks.backends.sam import AUTO_POINTS_PER_BATCH, generate_levels, points_per_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _levels(cfg: MasksConfig):
    from segment_anything import SamPredictor
    from segment_anything.utils.amg import build_all_layer_point_grids

    grids = build_all_layer_point_grids(
        cfg.points_per_side, cfg.crop_n_layers, cfg.crop_n_points_downscale_factor
    )
    levels = generate_levels(SamPredictor(build_tiny_sam()), blob_image(), cfg=cfg, point_grids=grids)
    return [(lv.masks.tobytes(), lv.pred_iou.tobytes(), lv.stability.tobytes()) for lv in levels]


def test_precision_and_auto_batch_leave_cpu_masks_bit_identical(tiny_sam_cfg):
    base = dataclasses.replace(tiny_sam_cfg, points_per_side=8, points_per_batch=64, precision="fp32")
    reference = _levels(base)
    assert any(len(m) for m, _, _ in reference)
    for precision in ("bf16", "fp16"):
        assert _levels(dataclasses.replace(base, precision=precision)) == reference, precision
    assert points_per_batch(dataclasses.replace(base, points_per_batch="auto"), "cpu") == 64
    assert _levels(dataclasses.replace(base, points_per_batch="auto", precision="bf16")) == reference


def test_auto_points_per_batch_per_device_and_the_key_checked():
    cfg = MasksConfig()
    assert cfg.points_per_batch == "auto" and cfg.precision == "bf16"
    assert points_per_batch(cfg, "cpu") == AUTO_POINTS_PER_BATCH["cpu"] == 64
    assert points_per_batch(cfg, "cuda:0") == AUTO_POINTS_PER_BATCH["cuda"]
    assert points_per_batch(MasksConfig(points_per_batch=16), "cuda") == 16
    for bad in ("many", 0, True):
        with pytest.raises(ValueError, match=r"masks\.points_per_batch = .*an integer >= 1, or auto"):
            MasksConfig(points_per_batch=bad)
    with pytest.raises(ValueError, match=r"masks\.precision = 'fp8'"):
        MasksConfig(precision="fp8")


def test_out_of_gpu_memory_names_the_keys_and_keeps_finished_frames(tmp_path, tiny_sam_cfg, monkeypatch):
    import torch

    from ccl.masks.backends.sam import SamBackend

    scene = image_scene(tmp_path / "scene", [blob_image(seed=0), blob_image(seed=1)])
    real = SamBackend.frame_levels

    def runs_out_on_the_second(self, index, camera):
        if index == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 5.50 GiB")
        return real(self, index, camera)

    monkeypatch.setattr(SamBackend, "frame_levels", runs_out_on_the_second)
    with pytest.raises(StageOutOfMemoryError) as e:
        generate_masks(
            scene, cfg=tiny_sam_cfg, out_path=tmp_path / "raw.h5", device="cpu", sam_builders=TINY_BUILDERS
        )
    msg = str(e.value)
    assert (
        "masks of frame frame_00001" in msg and "masks.points_per_batch" in msg and "masks.precision" in msg
    )
    assert "Tried to allocate 5.50 GiB" in msg
    assert not (tmp_path / "raw.h5").exists()
    kept = sorted(p.name for p in (tmp_path / "raw.partial").iterdir())
    assert any("frame_00000" in n for n in kept), kept
