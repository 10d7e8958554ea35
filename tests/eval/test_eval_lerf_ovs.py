"""The LERF-OVS protocol on hand-made fixtures whose answer is known by construction, and against an
independent step-by-step re-derivation of LangSplat's evaluation (torch tensors, a per-pixel loop)."""

from __future__ import annotations

import numpy as np
import pytest

from ccl.eval import evaluate_query, localize, majority_smooth, normalise
from ccl.eval.lerf_ovs import iou, point_in_boxes


def _majority_loop(mask):
    """LangSplat's 7×7 majority, pixel by pixel: window rows max(0, i−3) up to (excluded) min(i+4, h−1),
    columns likewise; the most frequent value, the smaller one on a tie."""
    h, w = mask.shape
    out = mask.copy()
    for i in range(h):
        for j in range(w):
            win = mask[max(0, i - 3) : min(i + 4, h - 1), max(0, j - 3) : min(j + 4, w - 1)]
            out[i, j] = np.argmax(np.bincount(win.reshape(-1)))
    return out


def test_majority_smooth_equals_the_per_pixel_rule_including_borders():
    rng = np.random.default_rng(0)
    for shape, p in [((23, 31), 0.5), ((9, 8), 0.3), ((40, 40), 0.7)]:
        m = (rng.random(shape) < p).astype(np.uint8)
        np.testing.assert_array_equal(majority_smooth(m), _majority_loop(m))


def test_majority_window_never_contains_the_last_row_or_column():
    m = np.zeros((20, 20), np.uint8)
    m[-1, :] = 1
    m[:, -1] = 1  # only the last row and column are set: LangSplat's windows never see them
    assert majority_smooth(m).sum() == 0


def _protocol_reference(valid_map, gt, thresh=0.4):
    """LangSplat activate_stream for one query, re-derived with torch tensors: per level mix with the
    30×30 box, min-max, ·2−1, clip, threshold, majority; the level of the highest mixed peak."""
    import cv2
    import torch

    vm = torch.tensor(valid_map.copy())
    kernel = np.ones((30, 30)) / 900
    ious, peaks = [], []
    for i in range(vm.shape[0]):
        avg = torch.from_numpy(cv2.filter2D(vm[i].numpy(), -1, kernel))
        vm[i] = 0.5 * (avg + vm[i])
        out = vm[i] - torch.min(vm[i])
        out = out / (torch.max(out) + 1e-9)
        out = torch.clip(out * 2.0 - 1.0, 0, 1)
        pred = _majority_loop((out.numpy() > thresh).astype(np.uint8))
        ious.append(np.logical_and(gt, pred).sum() / np.logical_or(gt, pred).sum())
        peaks.append(float(vm[i].max()))
    k = int(np.argmax(peaks))
    return ious[k], k


@pytest.mark.parametrize("seed", [0, 1])
def test_protocol_matches_the_step_by_step_reference(seed):
    import cv2

    rng = np.random.default_rng(seed)
    h, w = 48, 64
    noise = rng.random((2, h, w)).astype(np.float32)
    maps = np.stack([cv2.GaussianBlur(n, (0, 0), 4) for n in noise])  # smooth random relevance, 2 scales
    gt = np.zeros((h, w), bool)
    gt[10:30, 20:45] = True
    res = evaluate_query(maps, gt, np.array([[20, 10, 44, 29]]))
    want_iou, want_scale = _protocol_reference(maps, gt)
    assert res.scale_index == want_scale
    assert res.iou == pytest.approx(want_iou, abs=1e-12)


@pytest.mark.parametrize("shift", [0, 5, 12, 30])
def test_shifted_band_iou_is_known_analytically(shift):
    # Relevance = 1 on a full-height band of columns [40, 80), 0 elsewhere. Inside the band the 30-wide
    # box mean is ≥ 15/30, so 0.5·(box + 1) ≥ 0.75 > 0.7; outside it is 0.5·box ≤ 0.25. Min-max keeps
    # these values (min 0, max 1) and clip(2x − 1) > 0.4 ⇔ x > 0.7: the prediction is the band exactly,
    # and the 7×7 majority keeps straight edges. Ground truth: the band shifted by `shift` columns.
    h, w, x0, x1 = 60, 160, 40, 80
    rel = np.zeros((h, w), np.float32)
    rel[:, x0:x1] = 1
    gt = np.zeros((h, w), bool)
    gt[:, x0 + shift : x1 + shift] = True
    res = evaluate_query(rel, gt, np.array([[x0 + shift, 0, x1 + shift - 1, h - 1]]))
    width = x1 - x0
    assert res.iou == pytest.approx((width - shift) / (width + shift), abs=1e-12)
    np.testing.assert_array_equal(res.mask[:, :].any(axis=0), (np.arange(w) >= x0) & (np.arange(w) < x1))


def test_iou_and_localization_choose_scales_by_their_own_rules():
    # Scale 0: a lone spike of 1 -> mixed peak 0.5·(1/900 + 1) > 0.5, box peak 1/900.
    # Scale 1: a 40×40 plateau of 0.5 -> mixed peak 0.5, box peak 0.5.
    # LangSplat's IoU takes scale 0 (highest mixed peak), its localization scale 1 (highest box peak).
    maps = np.zeros((2, 100, 120), np.float32)
    maps[0, 10, 10] = 1.0
    maps[1, 50:90, 60:100] = 0.5
    gt = np.zeros((100, 120), bool)
    gt[50:90, 60:100] = True
    res = evaluate_query(maps, gt, np.array([[60, 50, 99, 89]]))
    assert (res.scale_index, res.loc_scale_index) == (0, 1)
    assert res.loc_hit


def test_iou_scale_is_the_highest_smoothed_peak_where_the_raw_peak_points_elsewhere():
    # Scale 0: a lone spike of 1 (raw peak 1, mixed peak 0.5·(1/900 + 1) ≈ 0.5006) next to a faint
    # 40×40 plateau of 0.3 on the object. Scale 1: the object as a plateau of 0.8 (raw and mixed peak
    # 0.8). The raw peak picks scale 0, LangSplat's mixed peak scale 1; the two scales' IoUs differ.
    h, w = 100, 120
    maps = np.zeros((2, h, w), np.float32)
    maps[0, 10, 10] = 1.0
    maps[0, 50:90, 60:100] = 0.3
    maps[1, 45:95, 55:105] = 0.8
    gt = np.zeros((h, w), bool)
    gt[50:90, 60:100] = True
    assert int(np.argmax(maps.reshape(2, -1).max(axis=1))) == 0  # the raw peak's choice
    want_iou, want_scale = _protocol_reference(maps, gt)
    assert want_scale == 1
    res = evaluate_query(maps, gt, np.array([[60, 50, 99, 89]]))
    assert res.scale_index == 1
    assert res.iou == pytest.approx(want_iou, abs=1e-12)
    assert res.iou != pytest.approx(_protocol_reference(maps[:1], gt)[0], abs=1e-3)  # scales tell apart


def test_localization_peak_inside_or_outside_the_box():
    rel = np.zeros((1, 80, 100), np.float32)
    rel[0, 20:60, 50:90] = 1.0  # the box filter is maximal (1.0) where the 30×30 window fits inside
    loc = localize(rel, np.array([[50, 20, 89, 59]]))
    assert loc.hit and loc.scale_index == 0
    assert np.all((loc.peaks_xy[:, 0] >= 50) & (loc.peaks_xy[:, 0] <= 89))
    assert not localize(rel, np.array([[0, 0, 30, 30]])).hit
    # any of several boxes (a category with several objects), corners in either order, bounds inclusive
    assert localize(rel, np.array([[0, 0, 30, 30], [89, 59, 50, 20]])).hit
    assert point_in_boxes([[10.0, 5.0]], [[10.0, 5.0, 12.0, 7.0]])


def test_normalise_is_minmax_then_clip_2x_minus_1():
    x = np.array([[2.0, 3.0, 4.0, 6.0]], np.float32)  # minmax -> 0, .25, .5, 1 -> 2x-1 clipped
    np.testing.assert_allclose(normalise(x), [[0.0, 0.0, 0.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(normalise(np.array([[0.0, 0.8, 1.0]], np.float32)), [[0, 0.6, 1]], atol=1e-6)


def test_iou_basics():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    assert iou(a, b) == pytest.approx(4 / 12)
