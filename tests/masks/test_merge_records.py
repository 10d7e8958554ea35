"""What `merge_masks` records and says besides the merged maps: the parameters that made the file (the
raw file's, plus the scale's levels and merge keys), the masks model carried over, the inputs (raw.h5
and the scene manifest, given or carried from raw.h5), and the frames left without masks, named in the
log. Every later reader (tracks, features, the codebook's provenance checks) relies on these records."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from ccl.io import atomic_write_json
from ccl.io.masks_h5 import LevelMasks, RawFrameMasks, open_masks, write_raw_masks
from ccl.io.provenance import file_record
from ccl.masks import MasksConfig, merge_masks

H, W = 32, 40
RAW_PARAMS = {"seed": 3, "pred_iou_thresh": 0.7}
RAW_MODEL = {"backend": "sim", "simulated": True}


def _frame(name: str, *, side: int) -> RawFrameMasks:
    """One square mask of `side` pixels a side per level (placed apart), scores 0.9."""
    levels = {}
    for i, lv in enumerate(("subpart", "part", "whole")):
        masks = np.zeros((1, H, W), bool)
        masks[0, 2 : 2 + side, 2 + 12 * i : 2 + 12 * i + side] = True
        score = np.full(1, 0.9, np.float32)
        levels[lv] = LevelMasks.from_masks(masks, score, score)
    return RawFrameMasks(name=name, **levels)


def _raw(tmp_path, frames, *, manifest=None):
    names = [f.name for f in frames]
    inputs = {"manifest": file_record(manifest)} if manifest is not None else {}
    return write_raw_masks(tmp_path / "masks" / "raw.h5", frames, frame_names=names, params=RAW_PARAMS,
                           model=RAW_MODEL, inputs=inputs)  # fmt: skip


def _manifest(path, name):
    return atomic_write_json(path, {"format_version": 1, "name": name})


def test_the_merged_file_records_its_parameters_model_and_inputs(tmp_path):
    manifest = _manifest(tmp_path / "scene.json", "ramen")
    raw = _raw(tmp_path, [_frame("frame_00001", side=8), _frame("frame_00002", side=8)], manifest=manifest)
    cfg = MasksConfig(contested_pixel_wp="smaller", min_merged_area=30)
    out = tmp_path / "masks" / "wp.h5"
    assert merge_masks(raw, scale="wp", cfg=cfg, out_path=out, manifest=manifest) == out
    with open_masks(out) as r:
        assert r.scale == "wp" and r.frame_names == ["frame_00001", "frame_00002"]
        assert r.params == {**RAW_PARAMS, "scale": "wp", "levels": ["part", "whole"],
                            "contested_pixel": "smaller", "min_merged_area": 30}  # fmt: skip
        assert r.model == RAW_MODEL
        assert r.inputs == {"raw": file_record(raw), "manifest": file_record(manifest)}


def test_without_a_manifest_the_scene_raw_records_is_carried_and_none_when_it_records_none(tmp_path):
    manifest = _manifest(tmp_path / "scene.json", "ramen")
    raw = _raw(tmp_path, [_frame("frame_00001", side=8)], manifest=manifest)
    sp = merge_masks(raw, scale="sp", cfg=MasksConfig(), out_path=tmp_path / "masks" / "sp.h5")
    with open_masks(sp) as r:
        assert r.inputs == {"raw": file_record(raw), "manifest": file_record(manifest)}
        assert r.params["levels"] == ["subpart", "part"]

    bare = _raw(tmp_path / "bare", [_frame("frame_00001", side=8)])
    out = merge_masks(bare, scale="all", cfg=MasksConfig(), out_path=tmp_path / "bare" / "all.h5")
    with open_masks(out) as r:
        assert r.inputs == {"raw": file_record(bare)}
        assert r.params["levels"] == ["subpart", "part", "whole"]


def test_frames_left_without_masks_are_kept_empty_and_named_once(tmp_path, caplog):
    # masks of 3x3 = 9 pixels, under min_merged_area 25: merged away in 12 of 13 frames
    frames = [_frame("frame_00001", side=8)] + [_frame(f"frame_{i:05d}", side=3) for i in range(2, 14)]
    raw = _raw(tmp_path, frames)
    out = tmp_path / "masks" / "wp.h5"
    with caplog.at_level(logging.WARNING, logger="ccl.masks.merge"):
        merge_masks(raw, scale="wp", cfg=MasksConfig(min_merged_area=25), out_path=out)
    warnings = [r.getMessage() for r in caplog.records if r.name == "ccl.masks.merge"]
    listed = ", ".join(f"frame_{i:05d}" for i in range(2, 12))
    assert warnings == [f"wp: 12 of 13 frames have no masks, kept as empty frames: {listed} …"], warnings
    with open_masks(out) as r:
        assert len(r) == 13
        kept, empty = r.read("frame_00001"), r.read("frame_00013")
    assert kept.n_masks == 2 and empty.n_masks == 0 and (empty.segmentation == -1).all()


def test_a_few_empty_frames_are_all_named_without_an_ellipsis(tmp_path, caplog):
    raw = _raw(tmp_path, [_frame("frame_00001", side=8), _frame("frame_00002", side=3)])
    with caplog.at_level(logging.WARNING, logger="ccl.masks.merge"):
        merge_masks(raw, scale="sp", cfg=MasksConfig(), out_path=tmp_path / "masks" / "sp.h5")
    assert [r.getMessage() for r in caplog.records if r.name == "ccl.masks.merge"] == [
        "sp: 1 of 2 frames have no masks, kept as empty frames: frame_00002"
    ]


def test_no_warning_when_every_frame_keeps_masks(tmp_path, caplog):
    raw = _raw(tmp_path, [_frame("frame_00001", side=8)])
    with caplog.at_level(logging.WARNING, logger="ccl.masks.merge"):
        merge_masks(raw, scale="wp", cfg=MasksConfig(), out_path=tmp_path / "masks" / "wp.h5")
    assert not [r for r in caplog.records if r.name == "ccl.masks.merge"]


def test_an_unknown_scale_is_refused_before_anything_is_written(tmp_path):
    raw = _raw(tmp_path, [_frame("frame_00001", side=8)])
    out = tmp_path / "masks" / "xp.h5"
    with pytest.raises(ValueError, match=r"unknown mask scale 'xp'; scales are \['all', 'sp', 'wp'\]"):
        merge_masks(raw, scale="xp", cfg=MasksConfig(), out_path=out)
    assert not out.exists()


def test_the_progress_line_names_the_scale_and_counts_frames(tmp_path, monkeypatch):
    from progress_testkit import record_progress

    import ccl.masks.merge as merge_mod

    seen = record_progress(monkeypatch, merge_mod)
    raw = _raw(tmp_path, [_frame("frame_00001", side=8), _frame("frame_00002", side=8)])
    merge_masks(raw, scale="sp", cfg=MasksConfig(), out_path=tmp_path / "masks" / "sp.h5")
    assert seen == {"desc": "merge sp", "total": 2, "unit": "frame"}
    assert json.loads(json.dumps(seen))  # plain values, as the log writes them


@pytest.mark.parametrize("n_empty, ellipsis", [(10, ""), (11, " …")])
def test_ten_empty_frames_are_all_named_and_an_eleventh_adds_the_ellipsis(tmp_path, caplog, n_empty, ellipsis):
    frames = [_frame("frame_00001", side=8)] + [_frame(f"frame_{i:05d}", side=3) for i in range(2, 2 + n_empty)]
    with caplog.at_level(logging.WARNING, logger="ccl.masks.merge"):
        merge_masks(_raw(tmp_path, frames), scale="wp", cfg=MasksConfig(), out_path=tmp_path / "masks" / "wp.h5")
    listed = ", ".join(f"frame_{i:05d}" for i in range(2, 12))
    assert [r.getMessage() for r in caplog.records if r.name == "ccl.masks.merge"] == [
        f"wp: {n_empty} of {n_empty + 1} frames have no masks, kept as empty frames: {listed}{ellipsis}"
    ]


def test_raw_masks_of_another_scene_are_refused_naming_the_raw_file(tmp_path):
    here = _manifest(tmp_path / "ramen" / "scene.json", "ramen")
    there = _manifest(tmp_path / "teatime" / "scene.json", "teatime")
    raw = _raw(tmp_path, [_frame("frame_00001", side=8)], manifest=there)
    out = tmp_path / "masks" / "wp.h5"
    with pytest.raises(ValueError, match="was made from another scene manifest") as e:
        merge_masks(raw, scale="wp", cfg=MasksConfig(), out_path=out, manifest=here)
    assert str(e.value).startswith(f"{raw} was made from"), e.value
    assert not out.exists()


def test_the_manifest_given_is_recorded_where_it_is_now(tmp_path):
    # the scene folder moved since raw.h5 was made: the same manifest content at another path; the
    # merged file records the manifest it was given (its path now), not the path raw.h5 recorded
    import shutil

    before = _manifest(tmp_path / "old" / "scene.json", "ramen")
    raw = _raw(tmp_path, [_frame("frame_00001", side=8)], manifest=before)
    now = tmp_path / "new" / "scene.json"
    now.parent.mkdir()
    shutil.copy(before, now)
    out = merge_masks(raw, scale="wp", cfg=MasksConfig(), out_path=tmp_path / "masks" / "wp.h5", manifest=now)
    with open_masks(out) as r:
        assert r.inputs["manifest"] == file_record(now) != file_record(before)
