"""fit_codebook end to end on files written in the contract's layouts, and its refusals of bad input."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
from h5_testkit import rewritten_h5

from ccl.codebook import (
    CodebookConfig,
    diagnostics_path,
    fit_codebook,
    iter_index_maps,
    loss_plot_path,
    read_codebook,
)
from ccl.codebook.testing import clustered_masks
from ccl.io.h5 import put_array, write_h5

CFG = CodebookConfig(n_prototypes=12, iterations=40, lr=0.01, batch_size=128, pairs_per_step=64)
FRAMES = [f"frame_{i:05d}" for i in range(6)]


def _split(n_masks: int, n_frames: int, seed: int) -> list[int]:
    cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, n_masks), n_frames - 1, replace=False))
    return np.diff(np.concatenate([[0], cuts, [n_masks]])).tolist()


def write_inputs(
    tmp_path,
    *,
    n_masks=240,
    labels=None,
    frames=FRAMES,
    counts=None,
    masks_file="/data/results/s/masks/sp.h5",
    tracks_masks_file=None,
    simulated=True,
    seed=0,
    tag="",
):
    """features/{tag}sp.h5 and tracks/{tag}sp.h5 in the contract's layouts, from clustered data."""
    d = clustered_masks(n_masks=n_masks, n_tracks=8, dim=32, seed=seed)
    labels = d.labels if labels is None else labels
    counts = counts or _split(n_masks, len(frames), seed)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    f_path, t_path = tmp_path / "features" / f"{tag}sp.h5", tmp_path / "tracks" / f"{tag}sp.h5"
    model = {"backend": "sim", "simulated": simulated}
    f_inputs = {"masks": masks_file, "scene": "s"}
    t_inputs = {"masks": tracks_masks_file or masks_file, "scene": "s"}
    with write_h5(
        f_path, kind="features", format_version=1, params={}, model=model, inputs=f_inputs, frame_names=frames
    ) as f:
        f.attrs["dim"] = 32
        for i, name in enumerate(frames):
            put_array(
                f.create_group(name), "features", d.features[offsets[i] : offsets[i + 1]].astype(np.float16)
            )
    with write_h5(
        t_path, kind="tracks", format_version=1, params={}, model=model, inputs=t_inputs, frame_names=frames
    ) as t:
        t.attrs["n_tracks"] = 8
        for i, name in enumerate(frames):
            g = t.create_group(name)
            put_array(g, "labels", np.asarray(labels[offsets[i] : offsets[i + 1]], np.int32))
            put_array(g, "best_iou", np.ones(counts[i], np.float32))
    return f_path, t_path, counts


def test_fit_writes_codebook_diagnostics_and_plot(tmp_path):
    f_path, t_path, counts = write_inputs(tmp_path)
    out = tmp_path / "codebook" / "full" / "sp.h5"
    fit_codebook(f_path, t_path, variant="full", cfg=CFG, out_path=out, seed=0, device="cpu")

    cb = read_codebook(out)
    assert cb.variant == "full" and cb.frame_names == FRAMES
    assert cb.prototypes.shape == (12, 32) and cb.prototypes.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(cb.prototypes, axis=1), 1.0, atol=1e-5)
    for name, m in zip(FRAMES, counts, strict=True):
        idx = cb.prototype_index[name]
        assert idx.shape == (m,) and idx.dtype == np.int32 and idx.min() >= 0 and idx.max() < 12
    assert cb.params["n_prototypes"] == 12 and cb.params["variant"] == "full" and cb.params["seed"] == 0
    assert cb.model["inputs_simulated"] is True and cb.model["features_model"]["backend"] == "sim"
    assert (
        cb.inputs["features"]["path"].endswith("features/sp.h5") and len(cb.inputs["tracks"]["sha256"]) == 64
    )

    diag = json.loads(diagnostics_path(out).read_text())
    for when in ("before", "init", "after"):
        assert set(diag[when]) >= {"intra_track_spread", "inter_track_separation", "nearest_track_separation"}
    assert diag["after"]["prototypes_in_use"] <= 12
    assert 0.0 <= diag["after"]["single_prototype_track_fraction"] <= 1.0
    assert len(diag["loss_curve"]["total"]) == CFG.iterations
    assert diag["terms_trained"] == {"pull": True, "push": True}
    assert loss_plot_path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_assigned_prototypes_are_at_least_as_consistent_as_raw_features(tmp_path):
    # Diagnostics on a real run: a track's assigned prototypes spread less than its raw features.
    f_path, t_path, _ = write_inputs(tmp_path)
    out = tmp_path / "cb.h5"
    fit_codebook(f_path, t_path, variant="full", cfg=CFG, out_path=out, seed=0, device="cpu")
    diag = json.loads(diagnostics_path(out).read_text())
    assert diag["after"]["intra_track_spread"] < diag["before"]["intra_track_spread"]


def test_index_maps_paint_each_frames_masks(tmp_path):
    counts = [3, 2]
    f_path, t_path, _ = write_inputs(tmp_path, n_masks=5, frames=FRAMES[:2], counts=counts)
    out = tmp_path / "cb.h5"
    fit_codebook(
        f_path, t_path, variant="base", cfg=dataclasses.replace(CFG, n_prototypes=2), out_path=out, seed=0
    )
    segs = {
        FRAMES[0]: np.array([[0, 1], [2, -1]], np.int32),
        FRAMES[1]: np.array([[-1, 1], [0, 0]], np.int32),
    }
    masks = tmp_path / "masks.h5"
    with write_h5(masks, kind="masks", format_version=1, params={}, frame_names=FRAMES[:2]) as f:
        for name, m in zip(FRAMES[:2], counts, strict=True):
            g = f.create_group(name)
            put_array(g, "segmentation", segs[name])
            put_array(g, "score", np.ones(m, np.float32))
    cb = read_codebook(out)
    got = dict(iter_index_maps(out, masks))
    for name in FRAMES[:2]:
        want = np.where(segs[name] >= 0, cb.prototype_index[name][segs[name]], -1)
        np.testing.assert_array_equal(got[name], want)


# ------------------------------------------------------------------------------------ bad input


def test_refuses_files_of_different_scales_by_mask_counts(tmp_path):
    f_path, _, counts = write_inputs(tmp_path, masks_file=None)
    other = list(counts)
    other[2], other[3] = other[2] + 1, other[3] - 1
    _, t_path, _ = write_inputs(tmp_path, counts=other, masks_file=None, tag="wp_")
    with pytest.raises(ValueError, match=r"mask counts of frame 'frame_00002'") as e:
        fit_codebook(f_path, t_path, variant="full", cfg=CFG, out_path=tmp_path / "cb.h5", seed=0)
    assert str(f_path) in str(e.value) and str(t_path) in str(e.value)
    assert not (tmp_path / "cb.h5").exists()


def test_refuses_files_made_from_different_masks_files(tmp_path):
    f_path, _, _ = write_inputs(tmp_path, masks_file="/r/s/masks/sp.h5")
    _, t_path, _ = write_inputs(tmp_path, masks_file="/r/s/masks/wp.h5", tag="wp_")
    with pytest.raises(ValueError, match=r"masks files they were made from.*sp\.h5.*wp\.h5") as e:
        fit_codebook(f_path, t_path, variant="full", cfg=CFG, out_path=tmp_path / "cb.h5", seed=0)
    assert str(f_path) in str(e.value) and str(t_path) in str(e.value)


def test_refuses_files_of_different_scenes_by_frame_names(tmp_path):
    f_path, _, _ = write_inputs(tmp_path)
    other = [f"img_{i}" for i in range(len(FRAMES))]
    _, t_path, _ = write_inputs(tmp_path, frames=other, tag="other_")
    with pytest.raises(ValueError, match="frame names differ") as e:
        fit_codebook(f_path, t_path, variant="full", cfg=CFG, out_path=tmp_path / "cb.h5", seed=0)
    assert str(f_path) in str(e.value) and str(t_path) in str(e.value)


def test_refuses_fewer_masks_than_prototypes_naming_the_setting(tmp_path):
    f_path, t_path, _ = write_inputs(tmp_path, n_masks=40)
    cfg = dataclasses.replace(CFG, n_prototypes=64)
    with pytest.raises(ValueError, match=r"40 masks.*64 prototypes.*lower codebook\.n_prototypes"):
        fit_codebook(f_path, t_path, variant="full", cfg=cfg, out_path=tmp_path / "cb.h5", seed=0)


def test_refuses_an_unknown_variant(tmp_path):
    f_path, t_path, _ = write_inputs(tmp_path)
    with pytest.raises(ValueError, match="variant 'ful' is unknown"):
        fit_codebook(f_path, t_path, variant="ful", cfg=CFG, out_path=tmp_path / "cb.h5", seed=0)


def test_refuses_features_that_are_not_unit_vectors(tmp_path):
    f_path, t_path, _ = write_inputs(tmp_path)

    with rewritten_h5(f_path) as f:
        f[FRAMES[1]]["features"][0] = np.zeros(32, np.float16)
    with pytest.raises(ValueError, match=r"not unit vectors \(first in frame 'frame_00001'"):
        fit_codebook(f_path, t_path, variant="full", cfg=CFG, out_path=tmp_path / "cb.h5", seed=0)


def test_all_unmatched_labels_warn_and_give_the_base_codebook(tmp_path, caplog):
    f_path, t_path, _ = write_inputs(tmp_path, labels=np.full(240, -1, np.int32))
    base, full = tmp_path / "base.h5", tmp_path / "full.h5"
    fit_codebook(f_path, t_path, variant="base", cfg=CFG, out_path=base, seed=0, device="cpu")
    with caplog.at_level(logging.WARNING):
        fit_codebook(f_path, t_path, variant="full", cfg=CFG, out_path=full, seed=0, device="cpu")
    assert "degenerate track supervision: every mask's track label is -1" in caplog.text
    a, b = read_codebook(base), read_codebook(full)
    assert np.array_equal(a.prototypes, b.prototypes)
    assert all(np.array_equal(a.prototype_index[n], b.prototype_index[n]) for n in FRAMES)
    assert b.model["terms_trained"] == {"max": True, "pull": False, "push": False}
    assert json.loads(diagnostics_path(full).read_text())["after"]["single_prototype_track_fraction"] is None


def test_refuses_files_of_different_scenes_by_inputs_attr(tmp_path):
    f_path, t_path, _ = write_inputs(tmp_path, masks_file=None)

    with rewritten_h5(t_path) as t:
        t.attrs["inputs"] = json.dumps({"masks": None, "scene": "other"})
    with pytest.raises(ValueError, match=r"the 'scene' attributes differ \(features: s; tracks: other\)"):
        fit_codebook(f_path, t_path, variant="full", cfg=CFG, out_path=tmp_path / "cb.h5", seed=0)


def test_index_maps_refuse_a_masks_file_of_another_scale(tmp_path):
    f_path, t_path, counts = write_inputs(tmp_path, n_masks=5, frames=FRAMES[:2], counts=[3, 2])
    out = tmp_path / "cb.h5"
    fit_codebook(
        f_path, t_path, variant="base", cfg=dataclasses.replace(CFG, n_prototypes=2), out_path=out, seed=0
    )
    masks = tmp_path / "masks.h5"
    with write_h5(masks, kind="masks", format_version=1, params={}, frame_names=FRAMES[:2]) as f:
        for name in FRAMES[:2]:
            g = f.create_group(name)
            put_array(g, "segmentation", np.array([[0, 1], [2, 3]], np.int32))
            put_array(g, "score", np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"frame 'frame_00000'.*4 masks but the codebook.*indexes 3"):
        list(iter_index_maps(out, masks))


def test_upstream_sim_stages_feed_the_codebook(tiny_scene_dir, tmp_path):
    # The real writers of masks, tracks and features (sim backends) on the tiny synthetic scene.
    from ccl.features import FeaturesConfig, extract_features
    from ccl.masks import MasksConfig, generate_masks, merge_masks
    from ccl.scene import SceneLoadConfig, load_scene
    from ccl.tracks import TracksConfig, track_masks

    scene = load_scene(tiny_scene_dir, source="synthetic", cfg=SceneLoadConfig(), name="tiny")
    generate_masks(scene, cfg=MasksConfig(), out_path=tmp_path / "raw.h5", seed=0)
    merge_masks(tmp_path / "raw.h5", scale="wp", cfg=MasksConfig(), out_path=tmp_path / "wp.h5")
    track_masks(scene, tmp_path / "wp.h5", cfg=TracksConfig(), out_path=tmp_path / "t.h5", seed=0)
    extract_features(scene, tmp_path / "wp.h5", cfg=FeaturesConfig(), out_path=tmp_path / "f.h5", seed=0)
    out = tmp_path / "cb.h5"
    cfg = dataclasses.replace(CFG, n_prototypes=8, iterations=20)
    fit_codebook(tmp_path / "f.h5", tmp_path / "t.h5", variant="full", cfg=cfg, out_path=out, seed=0)
    cb = read_codebook(out)
    assert cb.model["inputs_simulated"] is True
    maps = dict(iter_index_maps(out, tmp_path / "wp.h5"))
    assert list(maps) == [c.name for c in scene.cameras]
    assert all(m.min() >= -1 and m.max() < 8 for m in maps.values())
    assert any((m >= 0).any() for m in maps.values())
