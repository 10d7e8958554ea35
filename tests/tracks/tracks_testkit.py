"""Helpers of the tracks tests: masks made from the tiny synthetic scene's ground truth."""

from gt_masks_testkit import first_frames, gt_frame_masks, gt_ids, write_gt_masks

__all__ = ["first_frames", "gt_frame_masks", "gt_ids", "write_gt_masks"]
