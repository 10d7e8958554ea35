"""Mask NMS on the inputs a caller may hand it: no mask at all, masks as 0/255 images instead of bool,
float32 scores against a threshold given as a Python float, and empty masks. Both the vectorised path
and the per-pair reference must give the answer worked out by hand."""

from __future__ import annotations

import numpy as np

from ccl.masks import mask_nms, mask_nms_reference, pairwise_intersections

KW = dict(iou_thresh=0.8, score_thresh=0.5, inner_thresh=0.5)


def _rect(y0, y1, x0, x1, shape=(6, 8)):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_no_masks_give_an_empty_bool_decision_on_both_paths():
    masks, scores = np.zeros((0, 6, 8), bool), np.zeros(0, np.float32)
    for keep in (mask_nms(masks, scores, **KW), mask_nms_reference(masks, scores, **KW)):
        assert keep.dtype == bool and keep.shape == (0,)


def test_masks_given_as_0_255_images_count_pixels_not_values():
    a = _rect(0, 2, 0, 3)  # 6 px
    b = _rect(1, 3, 2, 4)  # 4 px, meeting a in one pixel (row 1, column 2)
    images = np.stack([a, b]).astype(np.uint8) * 255
    np.testing.assert_array_equal(pairwise_intersections(images), [[6, 1], [1, 4]])
    np.testing.assert_array_equal(pairwise_intersections(images, tile_px=2), [[6, 1], [1, 4]])
    # a duplicate of a at 0/255 is dropped (IoU 1), as it is as bool
    dup = np.stack([a, a, b]).astype(np.uint8) * 255
    for keep in (mask_nms(dup, [0.9, 0.8, 0.7], **KW), mask_nms_reference(dup, [0.9, 0.8, 0.7], **KW)):
        assert keep.tolist() == [True, False, True]


def test_a_float32_score_just_above_the_threshold_is_kept():
    # float32(0.1) is 0.10000000149…, above the threshold 0.1 (0.1000000000000000055…); compared in
    # float32 the threshold would round to the same float32 and the score would not be above it
    masks = np.stack([_rect(0, 3, 0, 4), _rect(3, 6, 4, 8)])
    scores = np.array([0.9, 0.1], np.float32)
    kw = {**KW, "score_thresh": 0.1}
    assert mask_nms(masks, scores, **kw).tolist() == [True, True]
    assert mask_nms_reference(masks, scores, **kw).tolist() == [True, True]
    # just below: float32(0.3) is 0.30000001192…, and 0.30000002 is above it
    kw = {**KW, "score_thresh": 0.30000002}
    assert mask_nms(masks, np.array([0.9, 0.3], np.float32), **kw).tolist() == [True, False]


def test_two_empty_masks_are_no_duplicates_of_each_other():
    # their union is 0: IoU 0 (LangSplat: NaN, which no threshold exceeds either), and no inner pair
    none = np.zeros((6, 8), bool)
    masks = np.stack([none, none, _rect(0, 6, 0, 8)])
    for keep in (mask_nms(masks, [0.9, 0.8, 0.7], **KW), mask_nms_reference(masks, [0.9, 0.8, 0.7], **KW)):
        assert keep.tolist() == [True, True, True]
