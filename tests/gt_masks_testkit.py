"""Masks made from a synthetic scene's ground truth, shared by the tracks and features tests."""

from __future__ import annotations

import dataclasses

import numpy as np


def gt_frame_masks(
    scene, *, layer: str = "part_id", level: int = 1, empty: tuple[str, ...] = (), background: bool = False
):
    """One `FrameMasks` per frame: every id of a ground-truth layer is a mask (ids in increasing order),
    then, with `background`, one mask of the background (whole_id < 0), as SAM gives at the whole level."""
    from ccl.io.masks_h5 import FrameMasks, boxes_from_masks
    from ccl.synthetic.gt import GroundTruth, gt_path

    gt = GroundTruth(gt_path(scene), scene.frame_names)
    try:
        for cam in scene.cameras:
            lay = getattr(gt.frame(cam.name), layer)
            ids = np.unique(lay[lay >= 0])
            if cam.name in empty:
                ids = ids[:0]
            seg = np.full(lay.shape, -1, np.int32)
            for i, v in enumerate(ids):
                seg[lay == v] = i
            m = len(ids)
            if background and cam.name not in empty:
                seg[gt.frame(cam.name).whole_id < 0] = m
                m += 1
            masks = seg[None] == np.arange(m, dtype=np.int32)[:, None, None]
            ones = np.ones(m, np.float32)
            yield FrameMasks(
                name=cam.name,
                segmentation=seg,
                score=ones,
                pred_iou=ones.copy(),
                stability=ones.copy(),
                area=masks.reshape(m, lay.size).sum(axis=1).astype(np.int64),
                boxes_xyxy=boxes_from_masks(masks),
                level=np.full(m, level, np.int8),
            )
    finally:
        gt.close()


def gt_ids(scene, layer: str = "part_id") -> list[np.ndarray]:
    """The ids of a ground-truth layer present in each frame, as `gt_frame_masks` orders its masks."""
    from ccl.synthetic.gt import GroundTruth, gt_path

    gt = GroundTruth(gt_path(scene), scene.frame_names)
    try:
        out = []
        for cam in scene.cameras:
            lay = getattr(gt.frame(cam.name), layer)
            out.append(np.unique(lay[lay >= 0]))
        return out
    finally:
        gt.close()


def write_gt_masks(scene, path, **kwargs):
    from ccl.io.masks_h5 import write_masks

    return write_masks(
        path,
        gt_frame_masks(scene, **kwargs),
        frame_names=scene.frame_names,
        scale="sp",
        params={"test": "ground-truth masks"},
        model={"backend": "test", "simulated": True},
    )


def first_frames(scene, n: int):
    """The scene cut to its first n frames (same folder, same gt.h5)."""
    return dataclasses.replace(scene, cameras=scene.cameras[:n])
