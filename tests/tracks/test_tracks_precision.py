"""tracks.precision: on a CPU the tracks are the same whatever it says (autocast is CUDA's only)."""

from __future__ import annotations

import dataclasses

import pytest
from test_tracks_sam2 import tiny_cfg, tiny_ckpt  # noqa: F401 (a fixture)
from tracks_testkit import first_frames, write_gt_masks

from ccl.io.tracks_h5 import read_tracks
from ccl.tracks import TracksConfig, track_masks

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_precision_leaves_cpu_tracks_identical(tiny_scene, tiny_ckpt, tmp_path):  # noqa: F811
    scene = first_frames(tiny_scene, 3)
    masks = write_gt_masks(scene, tmp_path / "wp.h5", layer="whole_id", level=2)
    runs = {}
    for precision in ("fp32", "fp16"):
        cfg = dataclasses.replace(tiny_cfg(tiny_ckpt), precision=precision)
        out = tmp_path / f"{precision}.h5"
        frames = track_masks(scene, masks, cfg=cfg, out_path=out, device="cpu")
        runs[precision] = [(f.labels.tobytes(), f.best_iou.tobytes()) for f in frames]
        assert read_tracks(out).model["dtype"] == "float32"
    assert runs["fp16"] == runs["fp32"]


def test_the_default_precision_and_the_key_checked():
    assert TracksConfig().precision == "bf16"  # what SAM2's own demos autocast to
    with pytest.raises(ValueError, match=r"tracks\.precision = 'fp64'"):
        TracksConfig(precision="fp64")
