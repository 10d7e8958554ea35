"""Mask NMS at its edges: a ratio exactly at a threshold (LangSplat drops only above it), one-pixel and
empty masks, tiles holding one mask or none, and the dtypes of what it returns. Every decision is
checked on the vectorised path and on the per-pair reference, against the hand-derived answer."""

from __future__ import annotations

import numpy as np
import pytest

from ccl.masks import mask_nms, mask_nms_reference, pairwise_intersections


def _box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _keep(masks, scores, **thresholds):
    """The decision of both paths, which must agree."""
    kw = {"iou_thresh": 0.8, "score_thresh": 0.5, "inner_thresh": 0.5, **thresholds}
    fast = mask_nms(np.stack(masks), np.asarray(scores), **kw)
    ref = mask_nms_reference(np.stack(masks), np.asarray(scores), **kw)
    assert fast.dtype == bool and ref.dtype == bool
    assert fast.tolist() == ref.tolist()
    return fast.tolist()


def test_iou_exactly_at_the_threshold_keeps_the_mask():
    big, inside = _box(4, 5, 0, 1, 0, 5), _box(4, 5, 0, 1, 0, 4)  # IoU = 4 / 5 = 0.8
    assert _keep([big, inside], [0.9, 0.8], iou_thresh=0.8) == [True, True]
    assert _keep([big, inside], [0.9, 0.8], iou_thresh=0.79) == [True, False]


@pytest.mark.parametrize("small_first", [True, False])
def test_inner_value_exactly_at_one_minus_inner_thresh_keeps_the_mask(small_first):
    big, small = _box(4, 5, 0, 4, 0, 5), _box(4, 5, 0, 1, 0, 5)  # small covers 5 / 20 of big
    masks, scores = ([small, big], [0.9, 0.8]) if small_first else ([big, small], [0.9, 0.8])
    small_at = 0 if small_first else 1
    # inner value 1 - 1 · 0.25 = 0.75: kept when 1 - inner_thresh = 0.75, dropped just below
    assert _keep(masks, scores, inner_thresh=0.25) == [True, True]
    dropped = _keep(masks, scores, inner_thresh=0.26)
    assert dropped[small_at] is False and dropped[1 - small_at] is True


@pytest.mark.parametrize("small_first", [True, False])
def test_a_mask_85_percent_inside_counts_as_inside(small_first):
    big = _box(10, 12, 0, 10, 3, 12)  # 90 px
    part = _box(10, 12, 0, 1, 0, 3) | _box(10, 12, 1, 2, 3, 12) | _box(10, 12, 2, 3, 3, 11)
    # the part: 3 px outside, 17 inside: 17 / 20 = 0.85 exactly; it covers 17 / 90 of the big mask
    masks, scores = ([part, big], [0.9, 0.8]) if small_first else ([big, part], [0.9, 0.8])
    keep = _keep(masks, scores)
    assert keep == ([False, True] if small_first else [True, False])


@pytest.mark.parametrize("small_first", [True, False])
def test_a_container_covered_exactly_half_is_not_a_container(small_first):
    big, half = _box(4, 10, 0, 4, 0, 10), _box(4, 10, 0, 2, 0, 10)  # half inside, covering 0.5 of big
    masks, scores = ([half, big], [0.9, 0.8]) if small_first else ([big, half], [0.9, 0.8])
    # as a container the value 1 - 0.5 = 0.5 would exceed 1 - 0.6 and drop the half
    assert _keep(masks, scores, inner_thresh=0.6, iou_thresh=0.9) == [True, True]


def test_a_one_pixel_mask_inside_a_large_one_is_dropped_and_its_duplicate_too():
    big = _box(10, 10, 0, 10, 0, 10)
    dot = _box(10, 10, 4, 5, 4, 5)
    assert _keep([big, dot], [0.9, 0.8]) == [True, False]
    assert _keep([dot, dot.copy()], [0.9, 0.8]) == [True, False]  # IoU 1 / 1


def test_no_masks_give_an_empty_bool_decision():
    assert (
        mask_nms(
            np.zeros((0, 4, 4), bool), np.zeros(0), iou_thresh=0.8, score_thresh=0.5, inner_thresh=0.5
        ).dtype
        == bool
    )


def test_scores_as_a_column_are_read_as_one_per_mask():
    masks = [_box(4, 8, 0, 4, 0, 4), _box(4, 8, 0, 4, 4, 8)]
    assert _keep(masks, np.array([[0.9], [0.3]])) == [True, False]


def test_intersections_of_masks_alone_in_their_tiles_and_after_an_empty_tile():
    # tiles of 4 px: a one-pixel mask at (0, 0) alone in the first, nothing in the second, a mask alone
    # in the third
    h, w = 4, 12
    masks = np.stack([_box(h, w, 0, 1, 0, 1), _box(h, w, 1, 3, 8, 12)])
    inter = pairwise_intersections(masks, tile_px=4)
    assert inter.dtype == np.int64
    np.testing.assert_array_equal(inter, np.diag([1, 8]))
    # the one-pixel mask at (0, 0) has a zero box, as an empty mask does
    np.testing.assert_array_equal(pairwise_intersections(masks[:1]), [[1]])
    np.testing.assert_array_equal(pairwise_intersections(masks[1:]), [[8]])


def test_a_score_exactly_at_the_threshold_is_dropped():
    masks = [_box(4, 8, 0, 4, 0, 4), _box(4, 8, 0, 4, 4, 8)]
    assert _keep(masks, np.array([0.75, 0.9], np.float32), score_thresh=0.75) == [False, True]


@pytest.mark.parametrize("shape", [(2, 4, 0), (2, 0, 4)])
def test_intersections_of_an_empty_image_are_zero(shape):
    inter = pairwise_intersections(np.zeros(shape, bool))
    assert inter.dtype == np.int64
    np.testing.assert_array_equal(inter, np.zeros((2, 2)))


def test_intersections_of_a_one_pixel_image():
    np.testing.assert_array_equal(pairwise_intersections(np.ones((2, 1, 1), bool)), [[1, 1], [1, 1]])
