"""LERF-OVS edges the hand-made fixtures left open (survivors of bench.mutation on eval/lerf_ovs.py): the
strict threshold, the normalised map the figures draw, localization boxes off the diagonal and at their
bounds, and the IoU of two empty masks. References are LangSplat's steps written out again."""

from __future__ import annotations

import numpy as np
import pytest
from test_eval_lerf_ovs import _protocol_reference

from ccl.eval import evaluate_query
from ccl.eval.lerf_ovs import iou, point_in_boxes


def _smooth_maps(seed, shape=(2, 48, 64)):
    import cv2

    noise = np.random.default_rng(seed).random(shape).astype(np.float32)
    return np.stack([cv2.GaussianBlur(n, (0, 0), 4) for n in noise])


def _langsplat_normalised(level_map):
    """activate_stream's map before the threshold, with torch as LangSplat: mix, min-max, 2x − 1, clip."""
    import cv2
    import torch

    x = torch.tensor(level_map)
    x = 0.5 * (torch.from_numpy(cv2.filter2D(level_map, -1, np.ones((30, 30)) / 900)) + x)
    out = x - torch.min(x)
    out = out / (torch.max(out) + 1e-9)
    return torch.clip(out * 2.0 - 1.0, 0, 1).numpy()


def test_threshold_is_strict_even_at_zero():
    # mask_thresh 0 (the config allows [0, 1)): LangSplat keeps `output > 0`, so the pixels the clip sets
    # to 0 (the lower half of the min-max range) stay out; `>=` would take the whole image.
    maps = _smooth_maps(2)
    gt = np.zeros(maps.shape[1:], bool)
    gt[5:40, 10:50] = True
    res = evaluate_query(maps, gt, np.array([[10, 5, 49, 39]]), mask_thresh=0.0)
    want_iou, want_scale = _protocol_reference(maps, gt, thresh=0.0)
    assert res.scale_index == want_scale
    assert res.iou == pytest.approx(want_iou, abs=1e-12)
    assert 0.05 < res.mask.mean() < 0.95


@pytest.mark.parametrize("seed", [0, 1])
def test_normalised_map_and_mask_of_the_chosen_scale_are_langsplats(seed):
    maps = _smooth_maps(seed)
    gt = np.zeros(maps.shape[1:], bool)
    res = evaluate_query(maps, gt, np.array([[0, 0, 1, 1]]))
    np.testing.assert_allclose(res.normalised, _langsplat_normalised(maps[res.scale_index]), atol=1e-6)
    assert res.mask.dtype == np.uint8 and set(np.unique(res.mask)) <= {0, 1}  # a 0/1 image for figures
    # the mask scored is the thresholded normalised map after the 7×7 majority (its own test checks that)
    assert res.mask.sum() > 0


def _inside_any(x, y, boxes):
    """Bounds inclusive, corners in either order: LangSplat's check, one box at a time."""
    for x0, y0, x1, y1 in boxes:
        if min(x0, x1) <= x <= max(x0, x1) and min(y0, y1) <= y <= max(y0, y1):
            return True
    return False


@pytest.mark.parametrize(
    "point, box",
    [
        ((15, 55), (10, 50, 30, 60)),  # inside a box below the diagonal (x range far from y range)
        ((30, 10), (40, 0, 60, 20)),  # left of a box whose y1 is smaller than its x0
        ((10, 40), (0, 0, 60, 20)),  # below a wide box, within its columns
        ((100, 10), (0, 0, 60, 20)),  # right of a box, within its rows
        ((60, 10), (0, 0, 60, 20)),  # on the right edge
        ((10, 20), (0, 0, 60, 20)),  # on the bottom edge
        ((10, 20), (60, 20, 0, 0)),  # the same box, corners given the other way round
    ],
)
def test_localization_hit_is_the_point_in_box_rule(point, box):
    assert point_in_boxes([point], [box]) == _inside_any(*point, [box])


def test_iou_of_two_empty_masks_is_nan():
    empty = np.zeros((3, 3), bool)
    assert np.isnan(iou(empty, empty))
