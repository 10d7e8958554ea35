"""The masks stage's small ops at their edges: box IoU of touching, degenerate and integer boxes, box NMS
at its threshold and with one box, small-region cleanup when nothing or everything is small, and
merging a frame with one mask, a one-pixel mask, a mask left with nothing, or nothing left."""

from __future__ import annotations

import numpy as np
import pytest

from ccl.io.masks_h5 import LevelMasks, RawFrameMasks
from ccl.masks.ops import (
    box_iou_matrix,
    box_nms,
    merge_levels,
    paint_order,
    paint_segmentation,
    remove_small_regions,
)


def _rect(y0, y1, x0, x1, shape=(8, 8)):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def _part_level_frame(masks, pred_iou, stability, name="frame_007"):
    """A raw frame whose part level holds `masks` (the other levels empty)."""
    h, w = masks[0].shape
    part = LevelMasks.from_masks(np.stack(masks), np.float32(pred_iou), np.float32(stability))
    return RawFrameMasks(name, LevelMasks.empty(h, w), part, LevelMasks.empty(h, w))


def test_box_iou_of_touching_degenerate_unit_and_integer_boxes():
    boxes = np.array([[0, 0, 2, 2], [2, 0, 4, 2], [5, 5, 5, 5], [5, 5, 5, 5], [6, 6, 7, 7], [6, 6, 7, 7]])
    iou = box_iou_matrix(boxes)  # integer boxes, as a caller may hold them
    assert iou[0, 1] == 0.0  # touching along an edge: no overlap
    assert iou[2, 3] == 0.0  # zero-area boxes: union 0, IoU 0 (not NaN)
    assert iou[4, 5] == 1.0  # identical unit boxes: union 1
    np.testing.assert_array_equal(iou, box_iou_matrix(boxes.astype(np.float32)))


def test_box_nms_keeps_an_overlap_exactly_at_the_threshold_and_a_lone_box():
    boxes = np.array([[0, 0, 4, 1], [0, 0, 2, 1]], np.float32)  # IoU 2 / 4
    assert box_nms(boxes, np.array([0.9, 0.8]), 0.5).tolist() == [0, 1]
    assert box_nms(boxes, np.array([0.9, 0.8]), 0.49).tolist() == [0]
    assert box_nms(boxes[:1], np.array([0.9]), 0.5).tolist() == [0]
    empty = box_nms(np.zeros((0, 4), np.float32), np.zeros(0), 0.5)
    assert empty.shape == (0,) and empty.dtype == np.int64


def test_remove_small_regions_reports_no_change_on_a_clean_mask():
    mask = _rect(2, 6, 2, 6)
    cleaned, changed = remove_small_regions(mask, 3, "islands")
    assert not changed and np.array_equal(cleaned, mask)


def test_remove_small_regions_keeps_the_largest_island_when_all_are_small():
    mask = _rect(0, 1, 0, 2) | _rect(4, 7, 4, 5)  # islands of 2 and 3 px, both below 10
    cleaned, changed = remove_small_regions(mask, 10, "islands")
    assert changed and np.array_equal(cleaned, _rect(4, 7, 4, 5))


def test_paint_order_names_an_unknown_rule():
    with pytest.raises(
        ValueError, match=r"^unknown contested-pixel rule 'biggest'; rules: smaller, larger, score$"
    ):
        paint_order(np.array([3]), np.array([0.5]), "biggest")


def test_paint_segmentation_is_int32():
    seg = paint_segmentation(_rect(0, 2, 0, 2)[None], np.array([[0, 0, 1, 1]]), np.array([0]))
    assert seg.dtype == np.int32 and seg[0, 0] == 0 and seg[3, 3] == -1


def test_merging_one_mask_keeps_it_with_its_name_score_and_box():
    fr = _part_level_frame([_rect(2, 5, 1, 7)], [0.8], [0.5])
    m = merge_levels(fr, scale="sp", rule="smaller", min_area=1)
    assert m.name == "frame_007" and m.n_masks == 1 and m.area.tolist() == [18]
    assert m.score.tolist() == [pytest.approx(0.4)]  # pred_iou × stability
    assert m.boxes_xyxy.tolist() == [[1, 2, 6, 4]]


def test_a_one_pixel_mask_survives_min_area_one():
    fr = _part_level_frame([_rect(0, 8, 0, 8), _rect(3, 4, 3, 4)], [0.9, 0.9], [0.9, 0.9])
    m = merge_levels(fr, scale="sp", rule="smaller", min_area=1)
    assert m.area.tolist() == [63, 1]


def test_the_last_mask_left_with_no_pixel_is_dropped():
    # under "larger" the big mask covers the small one, which owns nothing and is the last index
    fr = _part_level_frame([_rect(0, 8, 0, 8), _rect(3, 5, 3, 5)], [0.9, 0.9], [0.9, 0.9])
    m = merge_levels(fr, scale="sp", rule="larger", min_area=1)
    assert m.n_masks == 1 and m.area.tolist() == [64]


def test_a_frame_whose_masks_are_all_too_small_is_empty_with_its_name_and_size():
    fr = _part_level_frame([_rect(0, 1, 0, 3, shape=(5, 6))], [0.9], [0.9])
    m = merge_levels(fr, scale="sp", rule="smaller", min_area=4)
    assert m.name == "frame_007" and m.n_masks == 0 and m.segmentation.shape == (5, 6)


def test_a_frame_without_masks_merges_to_an_empty_frame_with_its_name_and_size():
    empty = RawFrameMasks("frame_008", LevelMasks.empty(5, 6), LevelMasks.empty(5, 6), LevelMasks.empty(5, 6))
    m = merge_levels(empty, scale="all", rule="smaller", min_area=1)
    assert m.name == "frame_008" and m.n_masks == 0 and m.segmentation.shape == (5, 6)
