"""The one index-map reader (ccl.codebook.index_maps): painted maps, and the refusals of a masks file and
codebook that do not belong together (docs/contracts.md: prototype_index row i = mask i, every mask one)."""

from __future__ import annotations

import numpy as np
import pytest

from ccl.codebook.index_maps import FrameIndexMaps, iter_index_maps, read_index_maps
from ccl.io.codebook_h5 import write_codebook
from ccl.io.h5 import put_array, write_h5

FRAMES = ["frame_00000", "frame_00001"]
SEGS = {
    FRAMES[0]: np.array([[0, 1, 1], [2, -1, 2]], np.int32),  # 3 masks
    FRAMES[1]: np.array([[-1, 1, 0], [0, 0, -1]], np.int32),  # 2 masks
}
PROTOTYPES = np.eye(4, 5, dtype=np.float32)


def _masks(path, segs=SEGS, counts=None, frames=FRAMES):
    """A masks file as the masks stage writes it (segmentation + the per-mask `score` of length M)."""
    with write_h5(path, kind="masks", format_version=1, params={}, frame_names=frames) as f:
        for name in frames:
            g = f.create_group(name)
            put_array(g, "segmentation", segs[name])
            m = counts[name] if counts else int(segs[name].max()) + 1
            put_array(g, "score", np.ones(m, np.float32))
    return path


def _codebook(path, index, frames=FRAMES):
    write_codebook(
        path, variant="full", prototypes=PROTOTYPES, prototype_index=index, frame_names=frames,
        params={}, model={}, inputs={},
    )  # fmt: skip
    return path


def test_read_index_maps_paints_every_frame_with_the_codebooks_prototypes(tmp_path):
    index = {FRAMES[0]: np.array([3, 0, 2], np.int32), FRAMES[1]: np.array([1, 1], np.int32)}
    got = read_index_maps(_codebook(tmp_path / "cb.h5", index), _masks(tmp_path / "sp.h5"))
    assert list(got.maps) == FRAMES and got.n_classes == 4
    np.testing.assert_array_equal(got.prototypes, PROTOTYPES)
    np.testing.assert_array_equal(got.maps[FRAMES[0]], [[3, 0, 0], [2, -1, 2]])
    np.testing.assert_array_equal(got.maps[FRAMES[1]], [[-1, 1, 1], [1, 1, -1]])
    assert all(m.dtype == np.int64 for m in got.maps.values())
    # the streaming form, and the one painting a frame when asked (ccl query3d's label support), give
    # the same maps from the same checks
    streamed = dict(iter_index_maps(tmp_path / "cb.h5", tmp_path / "sp.h5"))
    lazy = FrameIndexMaps(tmp_path / "cb.h5", tmp_path / "sp.h5")
    assert list(streamed) == list(lazy) == FRAMES and len(lazy) == 2
    for name in FRAMES:
        np.testing.assert_array_equal(streamed[name], got.maps[name])
        np.testing.assert_array_equal(lazy[name], got.maps[name])
        assert lazy.frame_shape(name) == got.maps[name].shape
    with pytest.raises(KeyError):
        lazy["frame_00009"]


@pytest.mark.parametrize(
    "index, frame, n_masks",
    [
        # more: a codebook fitted on another masks file whose frame had 4 masks (its rows are other masks)
        ({FRAMES[0]: [3, 0, 2, 1], FRAMES[1]: [1, 1]}, FRAMES[0], 3),
        # fewer: a mask of frame 1 would have no class
        ({FRAMES[0]: [3, 0, 2], FRAMES[1]: [1]}, FRAMES[1], 2),
    ],
    ids=["more_indices_than_masks", "fewer_indices_than_masks"],
)
def test_a_prototype_index_count_other_than_the_mask_count_is_refused_naming_both_files(
    tmp_path, index, frame, n_masks
):
    index = {name: np.array(v, np.int32) for name, v in index.items()}
    cb, masks = _codebook(tmp_path / "cb.h5", index), _masks(tmp_path / "sp.h5")
    want = rf"frame '{frame}'.*has {n_masks} masks but the codebook.*indexes {len(index[frame])}"
    with pytest.raises(ValueError, match=want) as e:
        read_index_maps(cb, masks)
    assert str(masks) in str(e.value) and str(cb) in str(e.value)
    with pytest.raises(ValueError, match=want):  # painted when asked, refused the same way
        FrameIndexMaps(cb, masks)[frame]


def test_mask_count_is_the_per_mask_arrays_length_not_the_painted_maximum(tmp_path):
    # mask 3 of frame 0 is in the file (score has 4 rows) though no pixel shows it: the codebook must
    # index 4 masks; 3 indices are refused even though they would paint every pixel
    index = {FRAMES[0]: np.array([3, 0, 2], np.int32), FRAMES[1]: np.array([1, 1], np.int32)}
    masks = _masks(tmp_path / "sp.h5", counts={FRAMES[0]: 4, FRAMES[1]: 2})
    with pytest.raises(ValueError, match=r"has 4 masks but the codebook.*indexes 3"):
        read_index_maps(_codebook(tmp_path / "cb.h5", index), masks)


def test_a_masks_file_of_other_frames_is_refused(tmp_path):
    index = {FRAMES[0]: np.array([3, 0, 2], np.int32), FRAMES[1]: np.array([1, 1], np.int32)}
    cb = _codebook(tmp_path / "cb.h5", index)
    other = ["frame_00000", "frame_00009"]
    masks = _masks(
        tmp_path / "sp.h5", segs={other[0]: SEGS[FRAMES[0]], other[1]: SEGS[FRAMES[1]]}, frames=other
    )
    with pytest.raises(ValueError, match=r"are not of the same scene: frame names differ") as e:
        read_index_maps(cb, masks)
    assert str(masks) in str(e.value) and str(cb) in str(e.value)
    with pytest.raises(ValueError, match=r"are not of the same scene: frame names differ"):
        FrameIndexMaps(cb, masks)  # at once, before any frame is asked for


def test_prototype_indices_outside_the_codebook_are_refused(tmp_path):
    # write_codebook refuses such a file, so it is written by hand: a damaged or foreign file
    cb = tmp_path / "cb.h5"
    with write_h5(cb, kind="codebook", format_version=1, params={}, frame_names=FRAMES) as f:
        f.attrs["variant"], f.attrs["n_prototypes"], f.attrs["dim"] = "full", 4, 5
        put_array(f, "prototypes", PROTOTYPES)
        put_array(f.create_group(FRAMES[0]), "prototype_index", np.array([3, 0, 4], np.int32))
        put_array(f.create_group(FRAMES[1]), "prototype_index", np.array([1, 1], np.int32))
    masks = _masks(tmp_path / "sp.h5")
    with pytest.raises(
        ValueError, match=r"frame 'frame_00000'.*prototype indices 0\.\.4, outside 0\.\.3"
    ) as e:
        read_index_maps(cb, masks)
    assert str(masks) in str(e.value) and str(cb) in str(e.value)
