"""Crop geometry and boxes of the features stage."""

from __future__ import annotations

import numpy as np
import pytest

from ccl.features.ops import l2_normalize, mask_boxes, masked_crop, normalize_query


def test_mask_boxes_equal_a_direct_scan():
    rng = np.random.default_rng(0)
    seg = rng.integers(-1, 9, (23, 31)).astype(np.int32)
    seg[seg == 4] = -1  # an index with no pixel
    boxes = mask_boxes(seg, 9)
    for i in range(9):
        ys, xs = np.nonzero(seg == i)
        want = [-1] * 4 if ys.size == 0 else [xs.min(), ys.min(), xs.max(), ys.max()]
        np.testing.assert_array_equal(boxes[i], want)
    assert mask_boxes(seg, 0).shape == (0, 4)


def test_corner_mask_is_padded_square_with_the_object_centred():
    img = np.full((40, 50, 3), 200, np.uint8)
    mask = np.zeros((40, 50), bool)
    mask[0:3, 0:7] = True  # a 3 x 7 object in the top-left corner
    img[0:3, 0:7] = [10, 20, 30]
    img[3, 0] = [99, 99, 99]  # inside the box's neighbourhood but outside the mask
    crop = masked_crop(img, mask, (0, 0, 6, 2), crop_size=7)  # side 7: no resize, exact geometry
    assert crop.shape == (7, 7, 3) and crop.dtype == np.uint8
    want = np.zeros((7, 7, 3), np.uint8)
    want[2:5, 0:7] = [10, 20, 30]  # top = (7 - 3) // 2 = 2, left = 0
    np.testing.assert_array_equal(crop, want)


def test_background_inside_the_box_is_zeroed_and_resize_keeps_the_centre():
    img = np.full((20, 20, 3), 255, np.uint8)
    mask = np.zeros((20, 20), bool)
    mask[16:20, 12:20] = True  # 4 x 8 in the bottom-right corner, an L-shaped hole removed:
    mask[16, 12] = False
    crop = masked_crop(img, mask, (12, 16, 19, 19), crop_size=32)
    assert crop.shape == (32, 32, 3)
    ys, xs = np.nonzero(crop[:, :, 0] > 127)
    assert abs(ys.mean() - 15.5) < 1.0 and abs(xs.mean() - 15.5) < 1.0  # centred after padding
    assert crop[:6].max() == 0 and crop[-6:].max() == 0  # the padding rows (bilinear bleeds ~2 rows)
    assert crop[9, 0, 0] < 128 < crop[9, 8, 0]  # the pixel cut out of the mask stays dark


@pytest.mark.parametrize("h,w", [(1, 1), (5, 2), (300, 17)])
def test_crop_is_always_the_requested_square(h, w):
    img = np.random.default_rng(1).integers(0, 255, (320, 40, 3), dtype=np.uint8)
    mask = np.zeros((320, 40), bool)
    mask[:h, :w] = True
    assert masked_crop(img, mask, (0, 0, w - 1, h - 1), crop_size=24).shape == (24, 24, 3)


def test_l2_normalize_and_query_form():
    x = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(x, [[0.6, 0.8], [0.0, 0.0]])
    assert x.dtype == np.float32
    assert normalize_query("  Red   Mug ") == "red mug"
