"""Small ops against their references (SAM's and torchvision's), and merging levels into a scale."""

from __future__ import annotations

import numpy as np
import pytest

from ccl.io.masks_h5 import LevelMasks, RawFrameMasks, boxes_from_masks
from ccl.masks.ops import box_nms, merge_levels, remove_small_regions


def random_masks(seed: int, m: int = 12, h: int = 30, w: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((m, h, w), bool)
    for i in range(m):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        masks[i, y0 : y0 + rng.integers(1, h), x0 : x0 + rng.integers(1, w)] = True
        masks[i] &= rng.random((h, w)) < 0.9  # holes and islands
    masks[0] = False  # an empty mask
    return masks


def test_boxes_match_sams_batched_mask_to_box():
    import torch
    from segment_anything.utils.amg import batched_mask_to_box

    masks = random_masks(0)
    masks[1] = False
    masks[1, 0, 0] = True  # one pixel at the origin: box of zeros, yet not empty
    want = batched_mask_to_box(torch.from_numpy(masks)).numpy()
    np.testing.assert_array_equal(boxes_from_masks(masks), want.astype(np.float32))


def test_box_nms_matches_torchvision():
    import torch
    from torchvision.ops import nms

    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 50, (60, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 30, (60, 2))], axis=1).astype(np.float32)
    scores = rng.permutation(60).astype(np.float32)  # distinct: torchvision's tie order is unspecified
    for thresh in (0.3, 0.7):
        want = nms(torch.from_numpy(boxes), torch.from_numpy(scores), thresh).numpy()
        np.testing.assert_array_equal(box_nms(boxes, scores, thresh), want)


@pytest.mark.parametrize("mode", ["holes", "islands"])
def test_remove_small_regions_matches_sam(mode):
    from segment_anything.utils.amg import remove_small_regions as sam_remove

    for seed in range(5):
        mask = np.random.default_rng(seed).random((40, 50)) < 0.5
        got, changed = remove_small_regions(mask, 6, mode)
        want, want_changed = sam_remove(mask, 6, mode)
        np.testing.assert_array_equal(got, want)
        assert changed == want_changed


def frame(subpart=(), part=(), whole=(), scores=None, shape=(20, 20)) -> RawFrameMasks:
    def level(ms, sc):
        if not len(ms):
            return LevelMasks.empty(*shape)
        return LevelMasks.from_masks(np.stack(ms), np.asarray(sc, np.float32), np.ones(len(ms), np.float32))

    scores = scores or {}
    return RawFrameMasks(
        "f",
        level(subpart, scores.get("subpart", [0.9] * len(subpart))),
        level(part, scores.get("part", [0.9] * len(part))),
        level(whole, scores.get("whole", [0.9] * len(whole))),
    )


def rect(y0, y1, x0, x1, shape=(20, 20)):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_sp_smaller_keeps_nested_subparts_and_wp_larger_lets_the_whole_cover_its_parts():
    handle, mug = rect(5, 10, 5, 10), rect(0, 15, 0, 15)
    body = rect(0, 15, 0, 15) & ~handle
    fr = frame(subpart=[handle], part=[mug, body], whole=[rect(0, 20, 0, 20)])
    sp = merge_levels(fr, scale="sp", rule="smaller", min_area=1)
    # handle (level 0) on top, body owns the rest of the mug, mug itself is left with nothing: dropped
    assert sp.level.tolist() == [0, 1] and sp.area.tolist() == [25, 225 - 25]
    wp = merge_levels(fr, scale="wp", rule="larger", min_area=1)
    assert wp.level.tolist() == [2] and wp.area.tolist() == [400]
    wp_small = merge_levels(fr, scale="wp", rule="smaller", min_area=1)
    assert sorted(wp_small.area.tolist()) == [25, 175, 200]  # handle→mug, body, rest of the whole


def test_score_rule_gives_the_pixel_to_the_higher_score():
    a, b = rect(0, 10, 0, 10), rect(5, 15, 5, 15)
    fr = frame(part=[a, b], scores={"part": [0.8, 0.95]})
    m = merge_levels(fr, scale="sp", rule="score", min_area=1)
    assert m.area.tolist() == [75, 100] and (m.segmentation[5:10, 5:10] == 1).all()


def test_a_sliver_below_min_area_is_dropped_and_its_pixels_go_underneath():
    big, sliver = rect(0, 20, 0, 20), rect(0, 20, 10, 11)  # the sliver (20 px) sits on top under "smaller"
    fr = frame(part=[big, sliver])
    kept = merge_levels(fr, scale="sp", rule="smaller", min_area=21)
    assert kept.n_masks == 1 and kept.area.tolist() == [400] and (kept.segmentation == 0).all()
    both = merge_levels(fr, scale="sp", rule="smaller", min_area=20)
    assert both.area.tolist() == [380, 20]


def test_no_mask_gives_an_empty_frame():
    m = merge_levels(frame(), scale="all", rule="smaller", min_area=1)
    assert m.n_masks == 0 and (m.segmentation == -1).all() and m.boxes_xyxy.shape == (0, 4)


def _claim(rule: str, area: int, score: float, index: int) -> tuple:
    """The documented contested-pixel rule as a sort key, the strongest claim first: `smaller` the
    smaller mask, `larger` the larger, `score` the higher pred_iou × stability; ties under smaller and
    larger to the higher score, under score to the smaller mask; then to the lower index."""
    by_area = area if rule == "smaller" else -area
    return (-score, area, index) if rule == "score" else (by_area, -score, index)


def _merge_reference(masks, area, score, min_area, rule):
    """Pixel by pixel: the strongest claim among the masks left covering it; every mask left owning
    fewer than `min_area` pixels dropped together, and the map repainted, until none is."""
    alive = [i for i in range(len(masks)) if area[i] > 0]
    while True:
        seg = np.full(masks.shape[1:], -1)
        for y, x in np.ndindex(*seg.shape):
            claims = [_claim(rule, int(area[i]), float(score[i]), i) for i in alive if masks[i, y, x]]
            if claims:
                seg[y, x] = min(claims)[2]
        small = [i for i in alive if (seg == i).sum() < min_area]
        if not small:
            return alive, seg
        alive = [i for i in alive if i not in small]


@pytest.mark.parametrize("rule", ["smaller", "larger", "score"])
@pytest.mark.parametrize("scale", ["sp", "wp", "all"])
def test_merge_invariants_and_the_winner_of_every_pixel(rule, scale):
    # Rectangles of four sizes (equal areas are common) with two scores (equal scores are common), so
    # that every tie of the rule decides pixels: area, then score, then index.
    rng = np.random.default_rng(7)
    n, h, w = 18, 24, 30
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        mh, mw = rng.choice([6, 10]), rng.choice([8, 12])
        y0, x0 = rng.integers(0, h - mh + 1), rng.integers(0, w - mw + 1)
        masks[i, y0 : y0 + mh, x0 : x0 + mw] = True
    lv = np.arange(n) % 3
    pred = rng.choice([0.8, 0.9], n).astype(np.float32)
    names = ("subpart", "part", "whole")
    fr = frame(
        *[[masks[i] for i in np.flatnonzero(lv == k)] for k in range(3)],
        scores={nm: pred[lv == k].tolist() for k, nm in enumerate(names)},
        shape=(h, w),
    )
    min_area = 15
    m = merge_levels(fr, scale=scale, rule=rule, min_area=min_area)

    counts = np.bincount(m.segmentation.reshape(-1) + 1, minlength=m.n_masks + 1)[1:]
    np.testing.assert_array_equal(m.area, counts)
    assert (m.area >= min_area).all()
    np.testing.assert_array_equal(m.boxes_xyxy, boxes_from_masks(m.masks()))
    allowed = {"sp": {0, 1}, "wp": {1, 2}, "all": {0, 1, 2}}[scale]
    np.testing.assert_array_equal(m.score, m.pred_iou * m.stability)

    # The reference, from the rule: masks of the scale's levels in level order, then raw order.
    order = np.concatenate([np.flatnonzero(lv == k) for k in sorted(allowed)])
    area = masks[order].reshape(len(order), -1).sum(1)
    alive, seg = _merge_reference(masks[order], area, pred[order], min_area, rule)
    remap = {old: new for new, old in enumerate(alive)}
    want = np.vectorize(lambda i: remap.get(int(i), -1))(seg)
    np.testing.assert_array_equal(m.segmentation, want)
    np.testing.assert_array_equal(m.level, lv[order][alive])
    np.testing.assert_array_equal(m.pred_iou, pred[order][alive])
