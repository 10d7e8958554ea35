"""The raw.h5 and {scale}.h5 layouts: round trip, and files a killed run could leave are refused."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ccl.io import H5FormatError
from ccl.io.masks_h5 import (
    FrameMasks,
    LevelMasks,
    RawFrameMasks,
    open_masks,
    open_raw_masks,
    write_masks,
    write_raw_masks,
)
from ccl.masks.ops import merge_levels


def raw_frames(n=3, h=21, w=13, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        levels = []
        for m in (int(rng.integers(0, 5)), 0 if i == 1 else 3, 2):
            masks = rng.random((m, h, w)) < 0.3
            levels.append(LevelMasks.from_masks(masks, rng.random(m), rng.random(m)))
        out.append(RawFrameMasks(f"frame_{i:05d}", *levels))
    return out


def write_both(tmp_path):
    frames = raw_frames()
    names = [f.name for f in frames]
    raw = write_raw_masks(
        tmp_path / "raw.h5", iter(frames), frame_names=names, params={"a": 1}, model={"simulated": True}
    )
    merged = [merge_levels(f, scale="all", rule="smaller", min_area=1) for f in frames]
    sp = write_masks(
        tmp_path / "all.h5",
        iter(merged),
        frame_names=names,
        scale="all",
        params={},
        model={"simulated": True},
    )
    return frames, merged, raw, sp


def test_round_trip_of_both_layouts(tmp_path):
    frames, merged, raw_path, path = write_both(tmp_path)
    with open_raw_masks(raw_path) as r:
        assert r.frame_names == [f.name for f in frames] and r.model["simulated"] is True
        for want in frames:
            got = r.read(want.name)
            for a, b in zip(got.levels(), want.levels(), strict=True):
                for field in ("masks", "pred_iou", "stability", "area", "boxes_xyxy"):
                    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    with h5py.File(raw_path) as f:  # the contract's on-disk form
        ds = f["frame_00000/part/masks_packed"]
        assert (
            ds.dtype == np.uint8
            and ds.shape == (3, (21 * 13 + 7) // 8)
            and tuple(ds.attrs["shape_hw"]) == (21, 13)
        )
    with open_masks(path) as r:
        assert r.scale == "all"
        got = list(r)
    for a, b in zip(got, merged, strict=True):
        assert isinstance(a, FrameMasks)
        for field in ("segmentation", "score", "pred_iou", "stability", "area", "boxes_xyxy", "level"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_truncated_file_is_refused(tmp_path):
    _, _, raw_path, path = write_both(tmp_path)
    for p, opener in ((raw_path, open_raw_masks), (path, open_masks)):
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
        with pytest.raises(H5FormatError, match="killed run"):
            opener(p)


def test_file_without_the_complete_mark_is_refused(tmp_path):
    _, _, raw_path, _ = write_both(tmp_path)
    with h5py.File(raw_path, "a") as f:
        del f.attrs["complete"]
    with pytest.raises(H5FormatError, match="incomplete"):
        open_raw_masks(raw_path)


def test_a_file_of_the_other_kind_is_refused(tmp_path):
    _, _, raw_path, path = write_both(tmp_path)
    with pytest.raises(H5FormatError, match="masks_raw"):
        open_masks(raw_path)
    with pytest.raises(FileNotFoundError):
        open_masks(tmp_path / "missing.h5")


def test_a_failure_while_writing_leaves_no_file(tmp_path):
    frames = raw_frames()

    def dying():
        yield frames[0]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_raw_masks(
            tmp_path / "raw.h5", dying(), frame_names=[f.name for f in frames], params={}, model={}
        )
    assert list(tmp_path.iterdir()) == []
