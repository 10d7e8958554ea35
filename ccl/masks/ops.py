"""Small pure functions of the masks stage: per-level filtering, box NMS, merging levels into a scale.

The real backend runs SAM's own filters inside its generation loop (they need the mask logits);
`filter_candidates` applies the same thresholds, box NMS and small-region cleanup to candidates that
come without logits (the simulator). Both then go through `apply_mask_nms`, and `merge_levels`
builds every merged scale.
"""

from __future__ import annotations

import numpy as np

from ccl.io.masks_h5 import LEVELS, FrameMasks, LevelMasks, RawFrameMasks
from ccl.masks.config import MasksConfig
from ccl.masks.nms import mask_nms

SCALE_LEVELS: dict[str, tuple[str, ...]] = {
    "sp": ("subpart", "part"),
    "wp": ("part", "whole"),
    "all": LEVELS,
}


def box_iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """[M, 4] xyxy → [M, M] IoU, areas as torchvision computes them ((x1 − x0)·(y1 − y0))."""
    b = np.asarray(boxes, np.float64)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(b[:, None, :2], b[None, :, :2])
    rb = np.minimum(b[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area[:, None] + area[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """Greedy NMS (torchvision.ops.nms semantics): [K] int64 indices kept, by descending score (real or
    bool: True ranks above False)."""
    n = len(scores)
    if n == 0:
        return np.zeros(0, np.int64)
    iou = box_iou_matrix(boxes)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    suppressed = np.zeros(n, bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_thresh
    return np.asarray(keep, np.int64)


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """SAM's `remove_small_regions` (utils/amg.py), without importing torch: (mask, changed).

    mode "holes" fills holes smaller than `area_thresh`; "islands" removes components smaller than it
    (keeping the largest when all are).
    """
    import cv2

    assert mode in ("holes", "islands"), mode
    holes = mode == "holes"
    working = (holes ^ mask).astype(np.uint8)
    n_labels, regions, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[:, -1][1:]
    small = [i + 1 for i, s in enumerate(sizes) if s < area_thresh]
    if not small:
        return mask, False
    fill = [0, *small]
    if not holes:
        fill = [i for i in range(n_labels) if i not in fill] or [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill), True


def postprocess_small_regions(level: LevelMasks, min_area: int, nms_thresh: float) -> LevelMasks:
    """SAM's postprocessing: clean holes and islands, then box NMS preferring masks left unchanged."""
    if len(level) == 0 or min_area <= 0:
        return level
    masks, unchanged = [], []
    for m in level.masks:
        m, c1 = remove_small_regions(m, min_area, "holes")
        m, c2 = remove_small_regions(m, min_area, "islands")
        masks.append(m)
        unchanged.append(not (c1 or c2))
    cleaned = LevelMasks.from_masks(np.stack(masks), level.pred_iou, level.stability)
    keep = box_nms(cleaned.boxes_xyxy, np.asarray(unchanged), nms_thresh)  # unchanged (True) first
    return cleaned.select(np.sort(keep))


def filter_candidates(level: LevelMasks, cfg: MasksConfig) -> LevelMasks:
    """SAM's per-level filters for candidates given without logits: predicted IoU > thresh, stability
    ≥ thresh, box NMS by predicted IoU, then small-region cleanup (the automatic generator's order)."""
    keep = np.ones(len(level), bool)
    if cfg.pred_iou_thresh > 0:
        keep &= level.pred_iou > cfg.pred_iou_thresh
    if cfg.stability_score_thresh > 0:
        keep &= level.stability >= cfg.stability_score_thresh
    level = level.select(keep)
    level = level.select(np.sort(box_nms(level.boxes_xyxy, level.pred_iou, cfg.box_nms_thresh)))
    return postprocess_small_regions(
        level, cfg.min_mask_region_area, max(cfg.box_nms_thresh, cfg.crop_nms_thresh)
    )


def apply_mask_nms(level: LevelMasks, cfg: MasksConfig) -> LevelMasks:
    """LangSplat's mask NMS on one level, then empty masks dropped (they carry nothing)."""
    level = level.select(level.area > 0)
    keep = mask_nms(
        level.masks,
        level.score,
        iou_thresh=cfg.mask_nms_iou_thresh,
        score_thresh=cfg.mask_nms_score_thresh,
        inner_thresh=cfg.mask_nms_inner_thresh,
        tile_px=cfg.mask_nms_tile_px,
        boxes_xyxy=level.boxes_xyxy,
    )
    return level.select(keep)


def paint_order(area: np.ndarray, score: np.ndarray, rule: str) -> np.ndarray:
    """Indices from the weakest to the strongest claim on a contested pixel (painted in this order, so
    the strongest ends on top). Ties under smaller / larger: the higher score, then the earlier index
    wins; under score: the smaller mask, then the earlier index."""
    idx = np.arange(len(area))
    area = np.asarray(area, np.int64)
    score = np.asarray(score, np.float64)
    if rule == "smaller":
        keys = (-idx, score, -area)
    elif rule == "larger":
        keys = (-idx, score, area)
    elif rule == "score":
        keys = (-idx, -area, score)
    else:
        raise ValueError(f"unknown contested-pixel rule {rule!r}; rules: smaller, larger, score")
    return np.lexsort(keys)  # the last key is the primary one


def paint_segmentation(masks: np.ndarray, boxes_xyxy: np.ndarray, order: np.ndarray) -> np.ndarray:
    """[M, H, W] bool masks painted in `order` (later on top) → [H, W] int32 index map, −1 = none."""
    h, w = masks.shape[1:]
    seg = np.full((h, w), -1, np.int32)
    boxes = np.asarray(boxes_xyxy).astype(np.int64)
    for i in order:
        x0, y0, x1, y1 = boxes[i]
        crop = seg[y0 : y1 + 1, x0 : x1 + 1]
        crop[masks[i, y0 : y1 + 1, x0 : x1 + 1]] = i
    return seg


def merge_levels(frame: RawFrameMasks, *, scale: str, rule: str, min_area: int) -> FrameMasks:
    """The levels of `scale` merged into one non-overlapping segmentation by the contested-pixel `rule`.

    A mask left with fewer than `min_area` (≥ 1) pixels is dropped and the map repainted without it,
    so its pixels go to the next mask underneath; repeated until every mask left owns ≥ `min_area`.
    Masks keep their level order (then raw order); index i of the result owns the pixels == i.
    """
    names = SCALE_LEVELS[scale]
    levels = [frame.level(n) for n in names]
    h, w = frame.shape_hw
    n = sum(len(lv) for lv in levels)
    if n == 0:
        return FrameMasks.empty(frame.name, h, w)
    masks = np.concatenate([lv.masks for lv in levels])
    pred_iou = np.concatenate([lv.pred_iou for lv in levels])
    stability = np.concatenate([lv.stability for lv in levels])
    area = np.concatenate([lv.area for lv in levels])
    boxes = np.concatenate([lv.boxes_xyxy for lv in levels])
    level = np.concatenate(
        [np.full(len(lv), LEVELS.index(nm), np.int8) for nm, lv in zip(names, levels, strict=True)]
    )
    score = (pred_iou * stability).astype(np.float32)

    alive = np.flatnonzero(area > 0)
    while True:
        order = alive[paint_order(area[alive], score[alive], rule)]
        seg = paint_segmentation(masks, boxes, order)
        owned = np.bincount(seg.reshape(-1) + 1, minlength=n + 1)[1:]
        small = owned[alive] < max(1, min_area)
        if not small.any():
            break
        alive = alive[~small]

    alive = np.sort(alive)
    if alive.size == 0:
        return FrameMasks.empty(frame.name, h, w)
    remap = np.full(n + 1, -1, np.int32)  # old index + 1 → new index
    remap[alive + 1] = np.arange(alive.size, dtype=np.int32)
    seg = remap[seg + 1]
    new_boxes = np.zeros((alive.size, 4), np.float32)
    for j, i in enumerate(alive):
        x0, y0, x1, y1 = boxes[i].astype(np.int64)
        own = seg[y0 : y1 + 1, x0 : x1 + 1] == j
        ys, xs = np.nonzero(own.any(axis=1))[0], np.nonzero(own.any(axis=0))[0]
        new_boxes[j] = (x0 + xs[0], y0 + ys[0], x0 + xs[-1], y0 + ys[-1])
    return FrameMasks(
        name=frame.name,
        segmentation=seg,
        score=score[alive],
        pred_iou=pred_iou[alive],
        stability=stability[alive],
        area=owned[alive].astype(np.int64),
        boxes_xyxy=new_boxes,
        level=level[alive],
    )
