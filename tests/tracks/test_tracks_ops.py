"""IoU matching: the all-pairs fast path against the per-pair reference; the label rule."""

from __future__ import annotations

import numpy as np
import pytest

from ccl.tracks.ops import iou_matrix, iou_matrix_per_pair, match_labels


@pytest.mark.parametrize("k", [1, 7, 8, 9, 20])
def test_iou_matrix_equals_per_pair_reference(k):
    # k crosses the 8-track byte planes of the fast path; index 5 owns no pixel, 0 is propagated empty.
    rng = np.random.default_rng(k)
    seg = rng.integers(-1, 12, (30, 41)).astype(np.int32)
    seg[seg == 5] = -1
    prop = rng.random((k, 30, 41)) < 0.3
    prop[0] = False
    prop[-1] |= seg == 3  # one propagated mask that contains a whole mask
    fast = iou_matrix(seg, prop, 12)
    ref = iou_matrix_per_pair(seg, prop, 12)
    assert fast.dtype == np.float32 and fast.shape == (12, k)
    np.testing.assert_array_equal(fast, ref)  # exact integer counts, same division: bit-identical


def test_iou_matrix_of_identical_and_disjoint_masks():
    seg = np.full((6, 6), -1, np.int32)
    seg[:3, :3] = 0
    seg[3:, 3:] = 1
    prop = np.stack([seg == 0, np.zeros((6, 6), bool), (seg == 0) | (seg == 1)])
    iou = iou_matrix(seg, prop)
    np.testing.assert_allclose(iou, [[1.0, 0.0, 0.5], [0.0, 0.0, 0.5]])


def test_iou_matrix_empty_sides_and_bad_shapes():
    seg = np.zeros((4, 4), np.int32)
    assert iou_matrix(seg, np.zeros((0, 4, 4), bool), 1).shape == (1, 0)
    assert iou_matrix(np.full((4, 4), -1, np.int32), np.ones((2, 4, 4), bool)).shape == (0, 2)
    with pytest.raises(ValueError, match="pixels"):
        iou_matrix(seg, np.ones((2, 3, 4), bool))


def test_match_labels_threshold_is_strict_and_ties_go_to_the_first():
    iou = np.array([[0.5, 0.2], [0.51, 0.51], [0.1, 0.9], [0.0, 0.0]], np.float32)
    labels, best = match_labels(iou, 0.5)
    np.testing.assert_array_equal(labels, [-1, 0, 1, -1])  # 0.5 is not above 0.5
    np.testing.assert_allclose(best, [0.5, 0.51, 0.9, 0.0])
    assert labels.dtype == np.int32 and best.dtype == np.float32
    labels, _ = match_labels(np.array([[0.8, 0.1], [0.7, 0.2]], np.float32), 0.5)
    np.testing.assert_array_equal(labels, [0, 0])  # two pieces of one track both take it
    labels, best = match_labels(np.zeros((3, 0), np.float32), 0.5)
    np.testing.assert_array_equal(labels, [-1, -1, -1])
