"""Mask NMS: the vectorised path keeps exactly the masks the per-pair reference (LangSplat's
semantics) keeps, on random and adversarial cases; the semantics themselves on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from ccl.masks import mask_nms, mask_nms_reference, pairwise_intersections

LANGSPLAT = dict(iou_thresh=0.8, score_thresh=0.7, inner_thresh=0.5)


def ellipses(rng: np.random.Generator, m: int, h: int = 40, w: int = 56) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros((m, h, w), bool)
    for i in range(m):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(1, h * 0.6), rng.uniform(1, w * 0.6)
        out[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    return out


def both(masks, scores, tile_px=128, **kw):
    kw = {**LANGSPLAT, **kw}
    fast = mask_nms(masks, scores, tile_px=tile_px, **kw)
    ref = mask_nms_reference(masks, scores, **kw)
    return fast, ref


@pytest.mark.parametrize("seed", range(12))
def test_random_masks_same_keep_as_reference(seed):
    rng = np.random.default_rng(seed)
    masks = ellipses(rng, int(rng.integers(1, 40)))
    # Coarse scores make ties frequent; thresholds vary so every criterion gets exercised.
    scores = rng.choice([0.5, 0.7, 0.72, 0.8, 0.9, 0.95], len(masks)).astype(np.float32)
    kw = dict(
        iou_thresh=float(rng.choice([0.3, 0.5, 0.8])),
        score_thresh=float(rng.choice([0.0, 0.7, 0.99])),
        inner_thresh=float(rng.choice([0.2, 0.5, 0.9])),
    )
    fast, ref = both(masks, scores, tile_px=int(rng.integers(1, 70)), **kw)
    np.testing.assert_array_equal(fast, ref)


def test_adversarial_nested_duplicates_empty_and_ties():
    h, w = 32, 32
    yy, xx = np.mgrid[:h, :w]
    sq = lambda r: (abs(yy - 16) < r) & (abs(xx - 16) < r)  # noqa: E731 (nested squares)
    one_px = np.zeros((h, w), bool)
    one_px[0, 0] = True  # a box of all zeros that is not empty
    masks = np.stack(
        [sq(2), sq(4), sq(8), sq(16), sq(8), np.zeros((h, w), bool), np.zeros((h, w), bool), one_px]
    )
    for scores in (
        np.full(len(masks), 0.9, np.float32),  # all tied
        np.linspace(0.99, 0.71, len(masks)).astype(np.float32),  # small ranked first
        np.linspace(0.71, 0.99, len(masks)).astype(np.float32),  # large ranked first
        np.full(len(masks), 0.1, np.float32),  # nothing passes the score: top-3 fallback
    ):
        fast, ref = both(masks, scores, tile_px=7)
        np.testing.assert_array_equal(fast, ref)


def test_no_mask_and_one_mask():
    assert mask_nms(np.zeros((0, 4, 4), bool), np.zeros(0), **LANGSPLAT).shape == (0,)
    m = np.ones((1, 4, 4), bool)
    assert mask_nms(m, np.array([0.9]), **LANGSPLAT).tolist() == [True]
    assert mask_nms_reference(m, np.array([0.9]), **LANGSPLAT).tolist() == [True]


@pytest.mark.parametrize("tile", [1, 13, 10_000])
def test_pairwise_intersections_are_exact(tile):
    rng = np.random.default_rng(3)
    masks = rng.random((9, 23, 31)) < 0.4
    flat = masks.reshape(9, -1).astype(np.int64)
    np.testing.assert_array_equal(pairwise_intersections(masks, tile_px=tile), flat @ flat.T)


def rect(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_iou_suppression_is_not_greedy():
    # B overlaps A, C overlaps B but not A enough: LangSplat drops a mask overlapping ANY higher-ranked
    # mask, suppressed or not, so C goes with B (greedy NMS would keep C).
    a = rect(10, 100, 0, 10, 0, 90)
    b = rect(10, 100, 0, 10, 5, 95)
    c = rect(10, 100, 0, 10, 10, 100)
    masks = np.stack([a, b, c])
    scores = np.array([0.95, 0.9, 0.85], np.float32)
    kw = dict(iou_thresh=0.85, score_thresh=0.7, inner_thresh=0.5)
    # IoU(a,b) = 85/95 ≈ 0.895 > 0.85, IoU(b,c) ≈ 0.895, IoU(a,c) = 80/100 = 0.8 ≤ 0.85
    assert mask_nms(masks, scores, **kw).tolist() == [True, False, False]
    assert mask_nms_reference(masks, scores, **kw).tolist() == [True, False, False]


@pytest.mark.parametrize("small_first", [True, False])
def test_a_mask_inside_a_larger_one_is_dropped_whichever_ranks_first(small_first):
    big = rect(20, 20, 0, 20, 0, 20)
    small = rect(20, 20, 5, 10, 5, 10)
    masks = np.stack([big, small])
    scores = np.array([0.8, 0.9] if small_first else [0.9, 0.8], np.float32)
    assert mask_nms(masks, scores, **LANGSPLAT).tolist() == [True, False]


def test_score_must_exceed_the_threshold_and_all_below_keeps_top_three():
    masks = np.stack([rect(40, 40, 10 * i, 10 * i + 5, 0, 5) for i in range(4)])  # disjoint
    scores = np.array([0.75, 0.76, 0.9, 0.5], np.float32)  # 0.75 is exact in float32
    assert mask_nms(masks, scores, iou_thresh=0.8, score_thresh=0.75, inner_thresh=0.5).tolist() == [
        False,
        True,
        True,
        False,
    ]
    low = np.array([0.1, 0.3, 0.2, 0.4], np.float32)
    keep = mask_nms(masks, low, **LANGSPLAT)
    assert keep.tolist() == [False, True, True, True]
