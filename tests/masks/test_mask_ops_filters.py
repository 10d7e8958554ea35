"""The per-level filters of the masks stage, on small hand-made levels: which SAM candidates
`filter_candidates` keeps (predicted IoU strictly above its threshold, stability at or above its own,
box NMS by predicted IoU, a zero threshold switching a filter off, as segment-anything's automatic
generator does), what `postprocess_small_regions` does to them (holes and islands under the area
filled or removed, holes first, masks it had to change losing the box NMS to masks it left alone:
segment-anything's own `postprocess_small_regions` is the reference), and what `apply_mask_nms` keeps
(empty masks dropped, the thresholds of the config, the score pred_iou × stability). Every expected
answer is worked out by hand in the comments, or taken from segment-anything."""

from __future__ import annotations

import numpy as np
import pytest

from ccl.io.masks_h5 import LevelMasks
from ccl.masks.config import MasksConfig
from ccl.masks.ops import apply_mask_nms, filter_candidates, postprocess_small_regions

H, W = 20, 30


def rect(y0, y1, x0, x1, shape=(H, W)):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def level(masks, pred_iou, stability=None):
    stability = np.ones(len(masks)) if stability is None else stability
    return LevelMasks.from_masks(np.stack(masks), np.float32(pred_iou), np.float32(stability))


def same_masks(got: LevelMasks, want: list[np.ndarray]) -> bool:
    return len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got.masks, want, strict=True))


def cfg(**kw) -> MasksConfig:
    """The thresholds of a test; min region area 0 (no cleanup) unless the test sets it."""
    base = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.7, crop_nms_thresh=0.7)
    return MasksConfig(**{**base, "min_mask_region_area": 0, **kw})


# ---------------------------------------------------------------------------------- filter_candidates

# four disjoint masks, far enough apart that no box NMS touches them
FOUR = [rect(0, 4, 0, 4), rect(0, 4, 10, 14), rect(10, 14, 0, 4), rect(10, 14, 10, 14)]


def test_filter_keeps_pred_iou_strictly_above_and_stability_at_or_above_their_thresholds():
    # (pred_iou, stability) against thresholds 0.75 and 0.875 (exact in float32):
    #   0: pred_iou 0.75 = thresh          -> dropped (SAM: iou_preds > pred_iou_thresh)
    #   1: stability 0.875 = thresh        -> kept    (SAM: stability_score >= thresh)
    #   2: stability 0.75 < thresh         -> dropped
    #   3: both well above                 -> kept
    lv = level(FOUR, [0.75, 0.875, 0.875, 1.0], [1.0, 0.875, 0.75, 1.0])
    out = filter_candidates(lv, cfg(pred_iou_thresh=0.75, stability_score_thresh=0.875))
    assert same_masks(out, [FOUR[1], FOUR[3]])
    assert out.pred_iou.tolist() == [0.875, 1.0] and out.stability.tolist() == [0.875, 1.0]
    assert out.area.tolist() == [16, 16]


def test_each_filter_alone():
    lv = level(FOUR, [0.5, 0.875, 0.875, 0.5], [0.5, 0.5, 1.0, 1.0])
    assert same_masks(filter_candidates(lv, cfg(pred_iou_thresh=0.75)), [FOUR[1], FOUR[2]])
    assert same_masks(filter_candidates(lv, cfg(stability_score_thresh=0.75)), [FOUR[2], FOUR[3]])


def test_a_zero_threshold_switches_the_filter_off():
    # SAM's IoU head is an unbounded regression: a bad mask can score 0 or below. With both thresholds
    # 0 (SAM: `if self.pred_iou_thresh > 0.0`) nothing is filtered, not even those.
    lv = level(FOUR, [-0.125, 0.0, 0.5, 1.0], [0.0, 0.25, 1.0, 1.0])
    assert same_masks(filter_candidates(lv, cfg()), FOUR)


def test_box_nms_by_pred_iou_keeps_the_better_of_two_overlapping_candidates_in_input_order():
    a = rect(0, 10, 0, 10)  # box [0, 0, 9, 9]: area (9 - 0) · (9 - 0) = 81, as torchvision counts it
    b = rect(0, 10, 0, 9)  # box [0, 0, 8, 9]: area 72, inside a's: IoU 72 / 81 = 0.889
    c = rect(12, 16, 20, 26)  # alone
    lv = level([a, b, c], [0.8, 0.9, 0.95])
    # 0.889 > 0.7: a (pred_iou 0.8) loses to b (0.9); the kept ones stay in input order, b then c,
    # though NMS visits c first
    out = filter_candidates(lv, cfg(box_nms_thresh=0.7))
    assert same_masks(out, [b, c]) and out.pred_iou.tolist() == [np.float32(0.9), np.float32(0.95)]
    assert same_masks(filter_candidates(lv, cfg(box_nms_thresh=0.9)), [a, b, c])  # 0.889 <= 0.9


def _island_pair():
    """p: a 10×10 square and a one-pixel island far right; q: the square moved 2 px right. Boxes as
    given: p [0, 0, 25, 9] (area 25 · 9 = 225), q [2, 0, 11, 9] (81), overlap 9 · 9 = 81: IoU 0.36.
    With p's island removed: p [0, 0, 9, 9] (81), overlap 7 · 9 = 63: IoU 63 / 99 = 0.636."""
    p = rect(0, 10, 0, 10)
    p[0, 25] = True
    q = rect(0, 10, 2, 12)
    return p, q


@pytest.mark.parametrize(
    ("box_nms", "crop_nms", "both_kept"),
    [(0.9, 0.5, True), (0.5, 0.9, True), (0.5, 0.5, False), (0.6, 0.6, False)],
)
def test_cleanup_after_the_filters_uses_the_larger_nms_threshold(box_nms, crop_nms, both_kept):
    # SAM runs postprocess_small_regions with max(box_nms_thresh, crop_nms_thresh). The first box NMS
    # sees IoU 0.36 and keeps both; after p loses its island (1 px < 4) the IoU is 0.636: above the
    # larger threshold, p (changed) loses to q (unchanged), though p has the higher predicted IoU.
    p, q = _island_pair()
    lv = level([p, q], [0.95, 0.8])
    out = filter_candidates(lv, cfg(box_nms_thresh=box_nms, crop_nms_thresh=crop_nms, min_mask_region_area=4))
    assert same_masks(out, [rect(0, 10, 0, 10), q] if both_kept else [q])


# ---------------------------------------------------------------------------------- postprocess_small_regions


def test_holes_and_islands_under_the_area_go_and_the_rest_stays():
    # min area 5 (SAM: a region is small when its size < area_thresh)
    small = rect(0, 8, 0, 8)
    small[3:5, 3:5] = False  # a hole of 4 px: filled
    small[0, 12:15] = True  # an island of 3 px: removed
    at = rect(10, 18, 0, 8)
    at[12, 2:7] = False  # a hole of 5 px = the area: kept
    at[19, 12:17] = True  # an island of 5 px: kept
    lv = level([small, at], [0.9, 0.8], [0.95, 0.85])
    out = postprocess_small_regions(lv, 5, 1.0)  # NMS threshold 1: no box suppresses another
    assert same_masks(out, [rect(0, 8, 0, 8), at])
    assert out.area.tolist() == [64, 64 - 5 + 5]
    assert out.boxes_xyxy.tolist() == [[0, 0, 7, 7], [0, 10, 16, 19]]  # recomputed after the cleanup
    assert out.pred_iou.tolist() == [np.float32(0.9), np.float32(0.8)]
    assert out.stability.tolist() == [np.float32(0.95), np.float32(0.85)]


def test_holes_are_filled_before_islands_are_judged():
    # a ring of 8 px around a one-pixel hole, beside a large square; min area 9. Filling the hole
    # first (SAM's order) makes the ring a 9-px island, which stays; judged first, it would go.
    m = rect(0, 6, 0, 6)
    m[10:13, 10:13] = True
    m[11, 11] = False
    out = postprocess_small_regions(level([m], [0.9]), 9, 0.7)
    want = rect(0, 6, 0, 6) | rect(10, 13, 10, 13)
    assert same_masks(out, [want])


def test_a_single_mask_is_cleaned():
    m = rect(2, 9, 2, 9)
    m[5, 5] = False
    assert same_masks(postprocess_small_regions(level([m], [0.9]), 3, 0.7), [rect(2, 9, 2, 9)])


@pytest.mark.parametrize("change", ["hole", "island", "both"])
def test_a_mask_the_cleanup_changed_loses_the_box_nms_to_one_it_left_alone(change):
    # two 8×8 squares, the second one pixel to the right: boxes [0, 0, 7, 7] and [1, 0, 8, 7], box IoU
    # 42 / 56 = 0.75 > 0.7 once the first is cleaned. The first has a one-pixel hole, a 2-px island,
    # or both; SAM scores it 0, the untouched second 1, whatever their predicted IoU: the second stays.
    changed = rect(0, 8, 0, 8)
    if change in ("hole", "both"):
        changed[4, 4] = False
    if change in ("island", "both"):
        changed[0, 10:12] = True
    clean = rect(0, 8, 1, 9)
    out = postprocess_small_regions(level([changed, clean], [0.99, 0.5]), 3, 0.7)
    assert same_masks(out, [clean]) and out.pred_iou.tolist() == [np.float32(0.5)]


def test_of_two_untouched_overlapping_masks_the_earlier_stays():
    a, b = rect(0, 8, 0, 8), rect(0, 8, 1, 9)  # box IoU 0.75, both clean: a tie, the earlier kept
    assert same_masks(postprocess_small_regions(level([a, b], [0.5, 0.99]), 3, 0.7), [a])
    assert same_masks(postprocess_small_regions(level([a, b], [0.5, 0.99]), 3, 0.8), [a, b])


def test_no_cleanup_at_min_area_zero_nor_on_an_empty_level():
    # SAM skips the cleanup, and its box NMS, when min_mask_region_area is 0: two identical masks
    # with a hole both stay as they are
    m = rect(0, 8, 0, 8)
    m[4, 4] = False
    out = postprocess_small_regions(level([m, m.copy()], [0.9, 0.8]), 0, 0.7)
    assert same_masks(out, [m, m])
    empty = LevelMasks.empty(H, W)
    assert len(postprocess_small_regions(empty, 5, 0.7)) == 0


def test_at_min_area_one_nothing_is_small_but_the_box_nms_still_runs():
    # SAM runs the cleanup for any min_mask_region_area > 0: at 1 no region is smaller, every mask is
    # unchanged (a tie), and the box NMS drops the later of two duplicates, hole and all
    m = rect(0, 8, 0, 8)
    m[4, 4] = False
    out = postprocess_small_regions(level([m, m.copy(), rect(12, 16, 20, 26)], [0.8, 0.9, 0.7]), 1, 0.7)
    assert same_masks(out, [m, rect(12, 16, 20, 26)])


def _random_level(seed: int, n: int = 12) -> LevelMasks:
    """Jittered copies of three rectangles (near-duplicates, as SAM's points give), some with holes,
    some with islands: boxes that overlap before and after the cleanup."""
    rng = np.random.default_rng(seed)
    bases = [(2, 12, 2, 14), (8, 20, 10, 28), (1, 22, 1, 30)]
    masks = np.zeros((n, 24, 32), bool)
    for i in range(n):
        y0, y1, x0, x1 = np.asarray(bases[rng.integers(0, 3)]) + rng.integers(-1, 2, 4)
        masks[i, y0:y1, x0:x1] = True
        if rng.random() < 0.5:
            masks[i] &= rng.random((24, 32)) < 0.97  # holes
        if rng.random() < 0.5:
            masks[i] |= rng.random((24, 32)) < 0.005  # islands
    return LevelMasks.from_masks(masks, rng.uniform(0.5, 1, n), rng.uniform(0.5, 1, n))


@pytest.mark.parametrize("seed", range(4))
def test_cleanup_keeps_what_segment_anythings_postprocess_keeps(seed):
    import torch
    from segment_anything import SamAutomaticMaskGenerator
    from segment_anything.utils.amg import MaskData, batched_mask_to_box, mask_to_rle_pytorch, rle_to_mask

    lv = _random_level(seed)
    masks = torch.from_numpy(lv.masks)
    data = MaskData(
        rles=mask_to_rle_pytorch(masks),
        boxes=batched_mask_to_box(masks),
        iou_preds=torch.from_numpy(lv.pred_iou),
        index=torch.arange(len(lv)),
    )
    data = SamAutomaticMaskGenerator.postprocess_small_regions(data, 6, 0.5)
    order = torch.argsort(data["index"]).tolist()  # SAM keeps NMS order; ours keeps input order
    want = [rle_to_mask(data["rles"][i]) for i in order]

    out = postprocess_small_regions(lv, 6, 0.5)
    assert len(want) < len(lv)  # the case does suppress masks
    assert same_masks(out, want)
    np.testing.assert_array_equal(out.pred_iou, data["iou_preds"].numpy()[order])


# ---------------------------------------------------------------------------------- apply_mask_nms


def test_mask_nms_drops_empty_masks_and_applies_the_configured_thresholds():
    big = rect(0, 10, 0, 10)  # 100 px
    near = rect(0, 10, 0, 9)  # 90 px inside big: IoU 0.9
    dot = rect(4, 6, 4, 6)  # 4 px inside big: 1 - (4/100)·1 = 0.96 inner value
    far = rect(12, 20, 20, 30)
    none = np.zeros((H, W), bool)
    lv = level([none, big, near, dot, far], [1.0, 0.9, 0.85, 0.9, 0.9])  # stability 1
    c = dict(mask_nms_iou_thresh=0.8, mask_nms_score_thresh=0.7, mask_nms_inner_thresh=0.5)
    # the empty mask, though best ranked, carries nothing; near (IoU 0.9 > 0.8 with big) and dot
    # (0.96 > 1 - 0.5) go
    assert same_masks(apply_mask_nms(lv, cfg(**c)), [big, far])
    # IoU threshold 0.95: near stays; inner threshold 0.03 (0.96 <= 0.97): dot stays
    assert same_masks(apply_mask_nms(lv, cfg(**{**c, "mask_nms_iou_thresh": 0.95})), [big, near, far])
    assert same_masks(apply_mask_nms(lv, cfg(**{**c, "mask_nms_inner_thresh": 0.03})), [big, dot, far])
    # a one-pixel mask is not empty: alone, it stays
    dot_alone = np.zeros((H, W), bool)
    dot_alone[15, 5] = True
    lv1 = level([none, big, dot_alone], [1.0, 0.9, 0.9])
    assert same_masks(apply_mask_nms(lv1, cfg(**c)), [big, dot_alone])
    # the tile size changes only the time
    assert same_masks(apply_mask_nms(lv, cfg(**c, mask_nms_tile_px=3)), [big, far])


def test_mask_nms_ranks_and_thresholds_pred_iou_times_stability():
    a, b, c = rect(0, 5, 0, 5), rect(0, 5, 10, 15), rect(10, 15, 0, 5)
    # scores: a 0.9 · 0.75 = 0.675 (not above 0.7, though its pred_iou is); b 0.75 · 1 = 0.75;
    # c 0.625 · 1 (dropped)
    lv = level([a, b, c], [0.9, 0.75, 0.625], [0.75, 1.0, 1.0])
    out = apply_mask_nms(lv, cfg(mask_nms_score_thresh=0.7))
    assert same_masks(out, [b]) and out.stability.tolist() == [1.0]
    # and the ranking: two duplicates, the one of higher product stays whatever its pred_iou
    d = level([a, a.copy()], [1.0, 0.875], [0.5, 1.0])  # products 0.5, 0.875
    assert same_masks(apply_mask_nms(d, cfg(mask_nms_score_thresh=0.0)), [a])
    kept = apply_mask_nms(d, cfg(mask_nms_score_thresh=0.0))
    assert kept.pred_iou.tolist() == [0.875]
