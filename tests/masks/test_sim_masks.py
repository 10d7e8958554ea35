"""The `sim` backend on the tiny synthetic scene, and the whole stage (generate → merge) end to end."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest
from masks_testkit import blob_image, image_scene

from ccl.io.h5 import open_h5_for_read
from ccl.masks import LEVELS, MasksConfig, generate_masks, merge_masks, open_masks, open_raw_masks
from ccl.masks.backends.sim import simulate_levels

# Every degradation off, scores noiseless and box NMS off (boxes of distinct ground-truth masks can
# overlap, as a ring's box holds its centre's): the simulator must return the ground truth itself.
CLEAN = dict(
    box_nms_thresh=1.0,
    sim_miss_rate=0.0,
    sim_split_rate=0.0,
    sim_merge_rate=0.0,
    sim_erode_px=0,
    sim_duplicates=1,
    sim_score_noise=0.0,
    sim_background_masks=False,
    min_mask_region_area=0,
)


@pytest.fixture(scope="module")
def default_run(tiny_scene, tmp_path_factory):
    out = tmp_path_factory.mktemp("masks")
    cfg = MasksConfig()
    raw = generate_masks(tiny_scene, cfg=cfg, out_path=out / "raw.h5", seed=0)
    return (
        cfg,
        raw,
        {s: merge_masks(raw, scale=s, cfg=cfg, out_path=out / f"{s}.h5") for s in ("sp", "wp", "all")},
    )


def _datasets(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(
            lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
        )
    return out


def test_clean_simulation_returns_the_ground_truth_instances(tiny_scene, tiny_scene_dir, tmp_path):
    raw = generate_masks(tiny_scene, cfg=MasksConfig(**CLEAN), out_path=tmp_path / "raw.h5", seed=0)
    with open_raw_masks(raw) as r, open_h5_for_read(tiny_scene_dir / "gt.h5", kind="gt") as gt:
        for fr in r:
            for name in LEVELS:
                ids = gt[fr.name][f"{name}_id"][()]
                want = {(ids == k).tobytes() for k in np.unique(ids[ids >= 0])}
                got = {m.tobytes() for m in fr.level(name).masks}
                assert got == want, (fr.name, name)


def test_deterministic_per_seed_and_says_simulated(default_run, tiny_scene, tmp_path):
    cfg, raw, merged = default_run
    again = generate_masks(tiny_scene, cfg=cfg, out_path=tmp_path / "raw.h5", seed=0)
    a, b = _datasets(raw), _datasets(again)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    other = _datasets(generate_masks(tiny_scene, cfg=cfg, out_path=tmp_path / "raw1.h5", seed=1))
    assert any(not np.array_equal(a[k], other[k]) for k in a if k in other)
    with open_raw_masks(raw) as r:
        assert r.model["simulated"] is True and r.model["backend"] == "sim" and r.params["seed"] == 0
    for path in merged.values():
        with open_masks(path) as r:
            assert r.model["simulated"] is True


@pytest.mark.parametrize("scale", ["sp", "wp", "all"])
def test_merged_scales_hold_the_contract(default_run, tiny_scene, scale):
    cfg, _, merged = default_run
    levels = {"sp": {0, 1}, "wp": {1, 2}, "all": {0, 1, 2}}[scale]
    with open_masks(merged[scale]) as r:
        assert r.frame_names == tiny_scene.frame_names and r.scale == scale
        assert r.params["contested_pixel"] == cfg.contested_pixel(scale)
        n = 0
        for fm, cam in zip(r, tiny_scene.cameras, strict=True):
            assert fm.segmentation.shape == (cam.height, cam.width)
            counts = np.bincount(fm.segmentation.reshape(-1) + 1, minlength=fm.n_masks + 1)
            assert len(counts) == fm.n_masks + 1  # no index beyond M − 1
            np.testing.assert_array_equal(counts[1:], fm.area)
            assert (fm.area >= cfg.min_merged_area).all()
            assert set(fm.level.tolist()) <= levels
            np.testing.assert_allclose(fm.score, fm.pred_iou * fm.stability, rtol=1e-6)
            n += fm.n_masks
        assert n > len(tiny_scene.cameras)  # masks in most frames


def test_scores_follow_mask_quality():
    rng = np.random.default_rng(0)
    ids = np.full((60, 80), -1, np.int32)
    for k in range(12):  # a grid of touching rectangles
        y, x = divmod(k, 4)
        ids[y * 20 : y * 20 + 20, x * 20 : x * 20 + 20] = k
    cfg = MasksConfig(sim_split_rate=0.4, sim_merge_rate=0.4, sim_erode_px=2, sim_background_masks=False)
    quality, pred = [], []
    for frame in range(5):
        lv = simulate_levels(ids, ids, ids, cfg=cfg, seed=int(rng.integers(100)), frame_index=frame)[0]
        for m, p in zip(lv.masks, lv.pred_iou, strict=True):
            k = np.bincount(ids[m][ids[m] >= 0]).argmax()
            truth = ids == k
            quality.append((m & truth).sum() / (m | truth).sum())
            pred.append(p)
    assert np.corrcoef(quality, pred)[0, 1] > 0.8
    assert min(quality) < 0.7  # and there are bad masks to score


def test_sim_refuses_a_scene_that_is_not_synthetic(tmp_path):
    scene = image_scene(tmp_path / "scene", [blob_image()])
    with pytest.raises(ValueError, match="synthetic scenes only.*masks.backend: sam"):
        generate_masks(scene, cfg=MasksConfig(), out_path=tmp_path / "raw.h5")
    assert not (tmp_path / "raw.h5").exists()


def test_frames_without_masks_are_kept_empty_and_reported_once(tiny_scene, tmp_path, caplog):
    cfg = MasksConfig(sim_miss_rate=1.0, sim_background_masks=False)
    with caplog.at_level(logging.WARNING, logger="ccl.masks"):
        raw = generate_masks(tiny_scene, cfg=cfg, out_path=tmp_path / "raw.h5")
        merged = merge_masks(raw, scale="sp", cfg=cfg, out_path=tmp_path / "sp.h5")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("no masks" in r.getMessage() for r in warnings)  # once per file
    with open_raw_masks(raw) as r:
        assert all(fr.n_masks == 0 and fr.shape_hw == (48, 64) for fr in r)
    with open_masks(merged) as r:
        for fm in r:
            assert (fm.segmentation == -1).all() and fm.n_masks == 0
            assert fm.boxes_xyxy.shape == (0, 4) and fm.level.dtype == np.int8


def test_a_broken_output_is_rebuilt_by_the_next_run(tiny_scene, tmp_path):
    out = tmp_path / "raw.h5"
    out.write_bytes(b"left by a killed run")
    generate_masks(tiny_scene, cfg=MasksConfig(), out_path=out)
    with open_raw_masks(out) as r:
        assert len(r) == len(tiny_scene.cameras)
