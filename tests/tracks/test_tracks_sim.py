"""track_masks with the sim backend on the tiny synthetic scene, masks made from its ground truth."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from tracks_testkit import first_frames, gt_ids, write_gt_masks

from ccl.io.h5 import read_json_attr
from ccl.io.tracks_h5 import read_tracks
from ccl.tracks import TracksConfig, track_masks

PERFECT = TracksConfig(sim_drift_rate=0.0, sim_swap_rate=0.0)


def test_perfect_propagation_labels_every_mask_with_its_parts_track(tiny_scene, part_masks, tmp_path):
    out = tmp_path / "tracks.h5"
    frames = track_masks(tiny_scene, part_masks, cfg=PERFECT, out_path=out, seed=0)
    ids = gt_ids(tiny_scene)  # frame → the part id of each mask
    first = {int(v): k for k, v in enumerate(ids[0])}  # part id → its track (first-frame mask index)
    for fr, frame_ids in zip(frames, ids, strict=True):
        want = [first.get(int(v), -1) for v in frame_ids]  # parts unseen in frame 0 have no track
        np.testing.assert_array_equal(fr.labels, want, err_msg=fr.name)
        matched = fr.labels >= 0
        np.testing.assert_allclose(fr.best_iou[matched], 1.0)  # ground-truth masks are their own regions
    f = read_tracks(out)
    assert f.n_tracks == len(ids[0]) and f.frame_names == tiny_scene.frame_names
    assert f.model["backend"] == "sim" and f.model["simulated"] is True
    for fr in frames:
        np.testing.assert_array_equal(f.frames[fr.name].labels, fr.labels)
        assert f.frames[fr.name].labels.dtype == np.int32 and f.frames[fr.name].best_iou.dtype == np.float32


def test_background_mask_of_the_whole_level_is_tracked_like_an_object(tiny_scene, tmp_path):
    """SAM gives the table and walls a mask at the whole level, and SAM2 follows it across frames like
    any other region: the sim does too, so the codebook's pull loss sees the background as one track."""
    from ccl.tracks.evaluate import track_label_accuracy

    masks = write_gt_masks(tiny_scene, tmp_path / "wp.h5", layer="whole_id", level=2, background=True)
    frames = track_masks(tiny_scene, masks, cfg=PERFECT, out_path=tmp_path / "tracks.h5", seed=0)
    ids = gt_ids(tiny_scene, "whole_id")
    background_track = len(ids[0])  # the last mask of frame 0
    first = {int(v): k for k, v in enumerate(ids[0])}
    for fr, frame_ids in zip(frames, ids, strict=True):
        want = [first.get(int(v), -1) for v in frame_ids] + [background_track]
        np.testing.assert_array_equal(fr.labels, want, err_msg=fr.name)
    acc = track_label_accuracy(tiny_scene, masks, tmp_path / "tracks.h5")
    assert acc.right_fraction == 1.0 and acc.n_trackable == acc.n_labelled


def test_same_seed_same_labels_other_seed_other_errors(tiny_scene, part_masks, tmp_path):
    noisy = TracksConfig(sim_drift_rate=0.2, sim_swap_rate=0.2)

    def labels(seed, name):
        frames = track_masks(tiny_scene, part_masks, cfg=noisy, out_path=tmp_path / name, seed=seed)
        return np.concatenate([f.labels for f in frames])

    a, b, c = labels(0, "a.h5"), labels(0, "b.h5"), labels(1, "c.h5")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_drift_loses_more_tracks_with_frame_distance(tiny_scene, part_masks, tmp_path):
    def matched_per_frame(drift):
        cfg = TracksConfig(sim_drift_rate=drift, sim_swap_rate=0.0)
        frames = track_masks(tiny_scene, part_masks, cfg=cfg, out_path=tmp_path / f"{drift}.h5", seed=3)
        return np.array([(f.labels >= 0).sum() for f in frames])

    perfect, drifting = matched_per_frame(0.0), matched_per_frame(0.3)
    assert (drifting <= perfect).all() and drifting[0] == perfect[0]
    lost = 1.0 - drifting / np.maximum(perfect, 1)
    assert lost[-3:].mean() > lost[1:4].mean()  # losses accumulate: 1 - 0.7^d grows with distance d


def test_identity_swaps_give_a_neighbours_label(tiny_scene, part_masks, tmp_path):
    cfg = TracksConfig(sim_drift_rate=0.0, sim_swap_rate=1.0)
    frames = track_masks(tiny_scene, part_masks, cfg=cfg, out_path=tmp_path / "t.h5", seed=0)
    ids = gt_ids(tiny_scene)
    seed_id = {k: int(v) for k, v in enumerate(ids[0])}
    wrong = sum(
        int(k >= 0 and seed_id[k] != int(v))
        for f, fid in zip(frames[1:], ids[1:], strict=True)
        for k, v in zip(f.labels, fid, strict=True)
    )
    assert wrong > 0


def test_reseeding_starts_tracks_from_unmatched_masks(tiny_scene, part_masks, tmp_path):
    base = track_masks(tiny_scene, part_masks, cfg=PERFECT, out_path=tmp_path / "a.h5")
    cfg = TracksConfig(sim_drift_rate=0.0, sim_swap_rate=0.0, reseed_unmatched=True)
    frames = track_masks(tiny_scene, part_masks, cfg=cfg, out_path=tmp_path / "b.h5")
    k = len(base[0].labels)
    assert any((f.labels < 0).any() for f in base), "the test scene needs parts unseen in frame 0"
    for f in frames:
        assert (f.labels >= 0).all()  # with perfect propagation every new part becomes a track
    new = np.unique(np.concatenate([f.labels for f in frames]))
    assert new.max() >= k and read_tracks(tmp_path / "b.h5").n_tracks == new.max() + 1
    for fa, fb in zip(base, frames, strict=True):  # old tracks keep their labels
        old = fa.labels >= 0
        np.testing.assert_array_equal(fb.labels[old], fa.labels[old])


# ---------------------------------------------------------------------------------------- bad input


def test_frame_without_masks_gets_empty_labels(tiny_scene, tmp_path):
    masks = write_gt_masks(tiny_scene, tmp_path / "sp.h5", empty=(tiny_scene.frame_names[3],))
    frames = track_masks(tiny_scene, masks, cfg=PERFECT, out_path=tmp_path / "t.h5")
    assert frames[3].labels.shape == (0,) and frames[3].best_iou.shape == (0,)
    assert read_tracks(tmp_path / "t.h5").frames[frames[3].name].labels.shape == (0,)
    assert (frames[4].labels >= 0).any()


def test_first_frame_without_masks_leaves_nothing_to_track(tiny_scene, tmp_path, caplog):
    masks = write_gt_masks(tiny_scene, tmp_path / "sp.h5", empty=(tiny_scene.frame_names[0],))
    with caplog.at_level(logging.WARNING):
        frames = track_masks(tiny_scene, masks, cfg=PERFECT, out_path=tmp_path / "t.h5")
    assert all((f.labels == -1).all() for f in frames) and frames[1].n_masks > 0
    assert read_tracks(tmp_path / "t.h5").n_tracks == 0
    assert sum("nothing to track" in r.getMessage() for r in caplog.records) == 1


def test_scene_of_one_image_every_label_is_minus_one_said_once(tiny_scene, tmp_path, caplog):
    one = first_frames(tiny_scene, 1)
    masks = write_gt_masks(one, tmp_path / "sp.h5")
    with caplog.at_level(logging.INFO):
        frames = track_masks(one, masks, cfg=PERFECT, out_path=tmp_path / "t.h5")
    assert len(frames) == 1 and frames[0].n_masks > 0 and (frames[0].labels == -1).all()
    said = [r for r in caplog.records if "one image" in r.getMessage()]
    assert len(said) == 1 and "every label is -1" in said[0].getMessage()
    f = read_tracks(tmp_path / "t.h5")
    assert f.n_tracks == 0 and f.model["simulated"] is True


def test_half_written_masks_are_refused_before_any_work(tiny_scene, part_masks, tmp_path):
    import h5py

    from ccl.io import H5FormatError

    half = tmp_path / "half.h5"
    half.write_bytes(part_masks.read_bytes())
    with h5py.File(half, "a") as f:
        del f.attrs["complete"]  # as a killed writer that bypassed ccl.io would leave it
    out = tmp_path / "t.h5"
    with pytest.raises(H5FormatError, match="incomplete"):
        track_masks(tiny_scene, half, cfg=PERFECT, out_path=out)
    assert not out.exists()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(part_masks.read_bytes()[:4096])
    with pytest.raises(H5FormatError, match="killed run"):
        track_masks(tiny_scene, truncated, cfg=PERFECT, out_path=out)


def test_half_written_tracks_are_refused_and_rebuilt(tiny_scene, part_masks, tmp_path):
    from ccl.io import H5FormatError

    out = tmp_path / "t.h5"
    out.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # the start of an HDF5 file, nothing more
    with pytest.raises(H5FormatError):
        read_tracks(out)
    track_masks(tiny_scene, part_masks, cfg=PERFECT, out_path=out)  # the rule reruns and replaces it
    assert read_tracks(out).n_tracks > 0
    assert [p.name for p in tmp_path.iterdir()] == ["t.h5"]  # no temporary file left


def test_masks_of_another_scene_are_refused(tiny_scene, part_masks, tmp_path):
    shorter = first_frames(tiny_scene, 3)
    with pytest.raises(ValueError, match="another scene"):
        track_masks(shorter, part_masks, cfg=PERFECT, out_path=tmp_path / "t.h5")
    renamed = write_gt_masks(shorter, tmp_path / "other.h5")
    import dataclasses

    other = dataclasses.replace(
        shorter, cameras=tuple(dataclasses.replace(c, width=c.width + 2) for c in shorter.cameras)
    )
    with pytest.raises(ValueError, match="another scene"):
        track_masks(other, renamed, cfg=PERFECT, out_path=tmp_path / "t.h5")
    assert not (tmp_path / "t.h5").exists()


def test_sim_refuses_a_scene_without_ground_truth(tiny_scene, part_masks, tmp_path):
    import dataclasses

    real = dataclasses.replace(tiny_scene, root=tmp_path)  # no gt.h5 there: not a synthetic scene
    with pytest.raises(ValueError, match="not a synthetic scene"):
        track_masks(real, part_masks, cfg=PERFECT, out_path=tmp_path / "t.h5")


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="tracks.backend"):
        TracksConfig(backend="xmem")
    with pytest.raises(ValueError, match="iou_thresh"):
        TracksConfig(iou_thresh=1.5)
    with pytest.raises(ValueError, match="sim_drift_rate"):
        TracksConfig(sim_drift_rate=-0.1)


def test_tracks_attrs_record_params_and_inputs(tiny_scene, part_masks, tmp_path):
    from ccl.io import file_sha256, open_h5_for_read

    track_masks(tiny_scene, part_masks, cfg=PERFECT, out_path=tmp_path / "t.h5", seed=7)
    with open_h5_for_read(tmp_path / "t.h5", kind="tracks") as f:
        params = read_json_attr(f, "params")
        assert params["seed"] == 7 and params["iou_thresh"] == 0.5 and params["backend"] == "sim"
        masks = read_json_attr(f, "inputs")["masks"]  # the masks file, by path and content
        assert masks["path"].endswith("sp.h5") and masks["sha256"] == file_sha256(part_masks)
        assert int(f.attrs["n_tracks"]) > 0


def test_accuracy_figure_is_one_for_perfect_tracks_and_drops_with_errors(tiny_scene, part_masks, tmp_path):
    from ccl.tracks.evaluate import track_label_accuracy

    track_masks(tiny_scene, part_masks, cfg=PERFECT, out_path=tmp_path / "a.h5")
    perfect = track_label_accuracy(tiny_scene, part_masks, tmp_path / "a.h5")
    assert perfect.right_fraction == 1.0 and perfect.labelled_precision == 1.0
    assert perfect.n_masks == sum(len(i) for i in gt_ids(tiny_scene)[1:])
    noisy = TracksConfig(sim_drift_rate=0.3, sim_swap_rate=0.3)
    track_masks(tiny_scene, part_masks, cfg=noisy, out_path=tmp_path / "b.h5", seed=1)
    worse = track_label_accuracy(tiny_scene, part_masks, tmp_path / "b.h5")
    assert worse.right_fraction < 1.0 and worse.trackable_recall < perfect.trackable_recall


def test_accuracy_figure_of_a_scene_without_ground_truth_says_so(tiny_scene, part_masks, tmp_path):
    import dataclasses

    from ccl.tracks.evaluate import track_label_accuracy

    real = dataclasses.replace(tiny_scene, root=tmp_path)  # no gt.h5 there: a real scene
    with pytest.raises(ValueError, match=r"no .*gt\.h5: only synthetic scenes"):
        track_label_accuracy(real, part_masks, tmp_path / "tracks.h5")
