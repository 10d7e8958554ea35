"""What track_masks tells and records besides the labels: the summary line, the reseeding and
propagation messages, why nothing was tracked, the defaults in the file, and running out of GPU memory
(survivors of bench.mutation on tracks/track.py). Counts are taken from the returned labels."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from tracks_testkit import first_frames, gt_ids, write_gt_masks

from ccl.io.h5 import read_json_attr
from ccl.io.tracks_h5 import read_tracks
from ccl.tracks import TracksConfig, track_masks

PERFECT = TracksConfig(sim_drift_rate=0.0, sim_swap_rate=0.0)


def _messages(caplog):
    return [r.getMessage() for r in caplog.records]


def test_the_summary_line_counts_tracks_and_labelled_masks(tiny_scene, part_masks, tmp_path, caplog):
    out = tmp_path / "t.h5"
    with caplog.at_level(logging.INFO, logger="ccl.tracks.track"):
        frames = track_masks(tiny_scene, part_masks, cfg=PERFECT, out_path=out)
    labels = np.concatenate([f.labels for f in frames])
    n_tracks = int(labels.max()) + 1
    matched, total = int((labels >= 0).sum()), len(labels)
    assert 0 < matched < total  # the scene has parts unseen in the first frame
    assert (
        f"{out}: {n_tracks} tracks, {matched} of {total} masks labelled ({100 * matched / total:.1f}%)"
        in (_messages(caplog))
    )
    n0 = len(frames[0].labels)
    assert (
        f"scene {tiny_scene.name!r}: propagating {n0} first-frame masks through {len(frames)} frames (sim)"
        in _messages(caplog)
    )


def test_reseeding_says_where_new_tracks_start(tiny_scene, part_masks, tmp_path, caplog):
    base = track_masks(tiny_scene, part_masks, cfg=PERFECT, out_path=tmp_path / "a.h5")
    cfg = TracksConfig(sim_drift_rate=0.0, sim_swap_rate=0.0, reseed_unmatched=True)
    with caplog.at_level(logging.INFO, logger="ccl.tracks.track"):
        track_masks(tiny_scene, part_masks, cfg=cfg, out_path=tmp_path / "b.h5")
    # with perfect propagation the masks unmatched in the first run are the ones that start tracks, at
    # the first frame where each part is seen
    said = [m for m in _messages(caplog) if "unmatched masks start new tracks" in m]
    first_unseen = next(f for f in base if (f.labels < 0).any())
    assert (
        said[0]
        == f"frame {first_unseen.name}: {int((first_unseen.labels < 0).sum())} unmatched masks start new tracks"
    )


@pytest.mark.parametrize("case", ["one image", "empty first frame"])
def test_nothing_to_track_records_why(tiny_scene, tmp_path, caplog, case):
    scene = first_frames(tiny_scene, 1) if case == "one image" else tiny_scene
    empty = (tiny_scene.frame_names[0],) if case == "empty first frame" else ()
    masks = write_gt_masks(scene, tmp_path / "sp.h5", empty=empty)
    with caplog.at_level(logging.WARNING):
        frames = track_masks(scene, masks, cfg=PERFECT, out_path=tmp_path / "t.h5")
    why = (
        "the scene has one image"
        if case == "one image"
        else f"its first frame {scene.frame_names[0]} has no masks"
    )
    assert f"scene {scene.name!r}: {why}, nothing to track: every label is -1" in _messages(caplog)
    f = read_tracks(tmp_path / "t.h5")
    assert f.model == {"backend": "sim", "simulated": True, "note": why}
    for fr in frames:
        assert fr.labels.dtype == np.int32 and fr.best_iou.dtype == np.float32
        assert (fr.labels == -1).all() and (fr.best_iou == 0).all()


def test_defaults_recorded_are_seed_0_on_the_automatic_device(tiny_scene, part_masks, tmp_path):
    from ccl.io import open_h5_for_read

    track_masks(tiny_scene, part_masks, cfg=PERFECT, out_path=tmp_path / "a.h5")
    with open_h5_for_read(tmp_path / "a.h5", kind="tracks") as f:
        params = read_json_attr(f, "params")
        assert (params["seed"], params["device"]) == (0, "auto")


def test_running_out_of_gpu_memory_names_the_stage_and_the_keys(
    tiny_scene, part_masks, tmp_path, monkeypatch
):
    import torch

    from ccl.device import StageOutOfMemoryError
    from ccl.tracks.backends import sim

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(sim, "build", out_of_memory)
    with pytest.raises(StageOutOfMemoryError) as e:
        track_masks(tiny_scene, part_masks, cfg=PERFECT, out_path=tmp_path / "t.h5")
    assert str(e.value).startswith("tracks: the GPU ran out of memory")
    assert "set tracks.offload_video_to_cpu: true and tracks.offload_state_to_cpu: true" in str(e.value)


def test_the_progress_line_counts_frames(tiny_scene, part_masks, tmp_path, capsys):
    import re

    track_masks(tiny_scene, part_masks, cfg=PERFECT, out_path=tmp_path / "t.h5")
    n = len(tiny_scene.cameras)
    assert re.search(rf"tracks: 100%.*\| {n}/{n} .*(frame/s|s/frame)", capsys.readouterr().err)


@pytest.mark.parametrize("case", ["first frame", "later frame", "nothing to track"])
def test_masks_of_another_image_size_are_refused_naming_the_masks_file(tiny_scene, tmp_path, case):
    import dataclasses
    import re

    # "nothing to track": the first frame has no masks and its size is right; a later frame's is not
    empty = (tiny_scene.frame_names[0],) if case == "nothing to track" else ()
    masks = write_gt_masks(tiny_scene, tmp_path / "sp.h5", empty=empty)
    resized = 0 if case == "first frame" else 1
    cams = tuple(
        dataclasses.replace(c, width=c.width * 2, height=c.height * 2) if i >= resized else c
        for i, c in enumerate(tiny_scene.cameras)
    )
    bigger = dataclasses.replace(tiny_scene, cameras=cams)
    frame = tiny_scene.frame_names[resized]
    with pytest.raises(
        ValueError, match=rf"^{re.escape(str(masks))}: frame {frame} is \d+x\d+, the scene's image"
    ):
        track_masks(bigger, masks, cfg=PERFECT, out_path=tmp_path / "t.h5")


def test_reseeded_tracks_are_new_and_each_follows_one_part(tiny_scene, part_masks, tmp_path):
    # With perfect propagation and reseeding, every ground-truth part is one track from the frame it is
    # first seen: one label per part, a different one for each part (two parts appear in frame 1).
    cfg = TracksConfig(sim_drift_rate=0.0, sim_swap_rate=0.0, reseed_unmatched=True)
    frames = track_masks(tiny_scene, part_masks, cfg=cfg, out_path=tmp_path / "t.h5")
    label_of: dict[int, int] = {}
    for fr, parts in zip(frames, gt_ids(tiny_scene), strict=True):
        for label, part in zip(fr.labels.tolist(), parts.tolist(), strict=True):
            assert label_of.setdefault(part, label) == label, (fr.name, part)
    assert len(set(label_of.values())) == len(label_of)


def test_after_reseeding_the_progress_line_counts_the_frames_left(tiny_scene, part_masks, tmp_path, capsys):
    import re

    base = track_masks(tiny_scene, part_masks, cfg=PERFECT, out_path=tmp_path / "a.h5")
    t = next(i for i, f in enumerate(base) if (f.labels < 0).any())  # the first restart
    capsys.readouterr()
    cfg = TracksConfig(sim_drift_rate=0.0, sim_swap_rate=0.0, reseed_unmatched=True)
    track_masks(tiny_scene, part_masks, cfg=cfg, out_path=tmp_path / "b.h5")
    left = len(tiny_scene.cameras) - t
    assert re.search(rf"tracks: 100%.*\| {left}/{left} ", capsys.readouterr().err)


def test_a_config_of_another_type_is_refused_naming_it(tiny_scene, part_masks, tmp_path):
    with pytest.raises(TypeError, match=r"^cfg: expected a TracksConfig, got dict$"):
        track_masks(tiny_scene, part_masks, cfg={"backend": "sim"}, out_path=tmp_path / "t.h5")


def test_the_file_names_its_masks_model_and_scene(tiny_scene, part_masks, tmp_path):
    from ccl.io import open_h5_for_read
    from ccl.io.masks_h5 import open_masks

    track_masks(tiny_scene, part_masks, cfg=PERFECT, out_path=tmp_path / "t.h5")
    with open_h5_for_read(tmp_path / "t.h5", kind="tracks") as f:
        inputs = read_json_attr(f, "inputs")
    with open_masks(part_masks) as r:
        assert (inputs["masks_model"], inputs["scene"]) == (r.model, tiny_scene.name)


def test_masks_of_another_scene_are_refused_naming_the_masks_file(tiny_scene, tmp_path):
    import json
    import re

    from tracks_testkit import gt_frame_masks

    from ccl.io.masks_h5 import write_masks
    from ccl.io.provenance import file_record

    few = write_gt_masks(first_frames(tiny_scene, 3), tmp_path / "few.h5")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(few))}: its frames .* are not scene 'tiny'"):
        track_masks(tiny_scene, few, cfg=PERFECT, out_path=tmp_path / "t.h5")
    here, there = tmp_path / "here" / "scene.json", tmp_path / "there" / "scene.json"
    for path, name in ((here, "ramen"), (there, "teatime")):
        path.parent.mkdir()
        path.write_text(json.dumps({"format_version": 1, "name": name}))
    masks = write_masks(tmp_path / "here" / "sp.h5", gt_frame_masks(tiny_scene), frame_names=tiny_scene.frame_names,
                        scale="sp", params={"test": "gt"}, model={"backend": "test"},
                        inputs={"manifest": file_record(here)})  # fmt: skip
    assert track_masks(tiny_scene, masks, cfg=PERFECT, out_path=tmp_path / "a.h5", manifest=here)
    with pytest.raises(ValueError) as e:
        track_masks(tiny_scene, masks, cfg=PERFECT, out_path=tmp_path / "b.h5", manifest=there)
    assert str(e.value).startswith(f"{masks} was made from another scene manifest ({here})")
    assert f"not from {there}" in str(e.value) and not (tmp_path / "b.h5").exists()
