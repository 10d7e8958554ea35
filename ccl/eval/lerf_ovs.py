"""The LERF-OVS protocol, step for step as LangSplat's evaluation runs it.

Reference: minghanqin/LangSplat, eval/evaluate_iou_loc.py (`activate_stream`, `lerf_localization`,
`evaluate`) and eval/utils.py (`smooth`). For one frame, one query, and relevance maps at L scales:

IoU (`activate_stream`), per scale:
  1. smoothed = 0.5 · (cv2.filter2D(relev, 30×30 mean) + relev)      (border: BORDER_REFLECT_101)
  2. out = smoothed − min(smoothed); out = out / (max(out) + 1e-9)    (min-max normalisation)
  3. out = clip(out · 2 − 1, 0, 1)                                   (the "clip(2x − 1)")
  4. mask = out > mask_thresh (0.4)
  5. mask = smooth(mask): 7×7 majority vote, ties → 0, with LangSplat's window
     rows max(0, i−3) : min(i+4, h−1) (the last row and column are never inside a window)
  6. IoU = |mask ∧ gt| / |mask ∨ gt|
  Only the scale of the highest max(smoothed) (first on ties; `ccl.query.ops.choose_scale`) is scored:
  its IoU is the query's.
Localization (`lerf_localization`), on the raw relevance:
  1. box = cv2.filter2D(relev, 30×30 mean) per scale (no 0.5 mix here)
  2. scale = argmax over scales of max(box); every pixel equal to that maximum is a candidate
  3. hit if any candidate (x = column, y = row) lies in any of the category's boxes, bounds inclusive.
Scene: mIoU = mean over (frame, query) pairs; localization accuracy = hits / pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ccl.query.ops import box_filter, choose_scale, smoothed_relevance

MAJORITY_RADIUS = 3  # LangSplat eval/utils.py smooth(): `scale = 3` (a 7×7 window)
DEFAULT_MASK_THRESH = 0.4  # LangSplat evaluate_iou_loc.py: `--mask_thresh` default 0.4


def normalise(smoothed: np.ndarray) -> np.ndarray:
    """Steps 2-3: min-max normalisation then clip(2x − 1, 0, 1) (float32, as LangSplat's tensors)."""
    out = np.asarray(smoothed, dtype=np.float32)
    out = out - out.min()
    out = out / (out.max() + np.float32(1e-9))
    out = out * np.float32(1.0 - (-1.0)) + np.float32(-1.0)
    return np.clip(out, 0, 1)


def majority_smooth(mask: np.ndarray, radius: int = MAJORITY_RADIUS) -> np.ndarray:
    """LangSplat's `smooth` (utils.py), vectorised: per pixel the majority value of its window.

    The window of pixel (i, j) is rows max(0, i−r) : min(i+r+1, h−1) and the same for columns, the
    upper bound clipped to h−1 (not h) exactly as LangSplat writes it; `argmax(bincount(...))` gives 0
    on a tie. An empty window (images of height or width 1) gives 0 where LangSplat would fail.
    """
    mask = np.asarray(mask)
    h, w = mask.shape
    ones = (mask != 0).astype(np.int64)
    integral = np.zeros((h + 1, w + 1), dtype=np.int64)
    integral[1:, 1:] = ones.cumsum(0).cumsum(1)
    i = np.arange(h)
    j = np.arange(w)
    r0, r1 = np.maximum(0, i - radius), np.minimum(i + radius + 1, h - 1)
    c0, c1 = np.maximum(0, j - radius), np.minimum(j + radius + 1, w - 1)
    r1 = np.maximum(r1, r0)
    c1 = np.maximum(c1, c0)
    count = integral[r1][:, c1] - integral[r0][:, c1] - integral[r1][:, c0] + integral[r0][:, c0]
    area = (r1 - r0)[:, None] * (c1 - c0)[None, :]
    return (2 * count > area).astype(mask.dtype if mask.dtype != bool else np.uint8)


def iou(gt: np.ndarray, pred: np.ndarray) -> float:
    """|gt ∧ pred| / |gt ∨ pred|; NaN when both are empty (the caller never lets that happen)."""
    inter = np.logical_and(gt, pred).sum()
    union = np.logical_or(gt, pred).sum()
    return float(inter / union) if union else float("nan")


def point_in_boxes(points_xy: np.ndarray, boxes_xyxy: np.ndarray) -> bool:
    """Any point (x, y) inside any box, bounds inclusive, box corners in either order (LangSplat)."""
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    x_min, x_max = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    y_min, y_max = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    x, y = pts[:, 0:1], pts[:, 1:2]
    inside = (x >= x_min) & (x <= x_max) & (y >= y_min) & (y <= y_max)
    return bool(inside.any())


@dataclass(frozen=True, eq=False)
class Localization:
    hit: bool
    scale_index: int  # scale whose box-filtered relevance peaks highest
    peaks_xy: np.ndarray  # [P, 2] int64, every pixel (x, y) at that peak


def localize(relevance: np.ndarray, boxes_xyxy: np.ndarray) -> Localization:
    """LangSplat `lerf_localization` for one query: relevance [L, H, W], the category's boxes [K, 4]."""
    relevance = np.asarray(relevance, dtype=np.float32)
    filtered = [box_filter(m) for m in relevance]
    scores = np.array([f.max() for f in filtered])
    head = int(np.argmax(scores))
    rows, cols = np.nonzero(filtered[head] == scores[head])
    peaks = np.stack([cols, rows], axis=1).astype(np.int64)
    return Localization(point_in_boxes(peaks, boxes_xyxy), head, peaks)


@dataclass(frozen=True, eq=False)
class QueryResult:
    """One (frame, query) of the LERF-OVS protocol."""

    iou: float
    scale_index: int  # scale chosen for the IoU (highest peak of 0.5·(box + raw))
    loc_hit: bool
    loc_scale_index: int  # scale chosen for localization (highest peak of the box-filtered map)
    mask: np.ndarray  # [H, W] uint8, the predicted mask at the chosen scale
    normalised: np.ndarray  # [H, W] float32, clip(2·minmax − 1) at the chosen scale (for figures)


def evaluate_query(
    relevance: np.ndarray,
    gt_mask: np.ndarray,
    boxes_xyxy: np.ndarray,
    *,
    mask_thresh: float = DEFAULT_MASK_THRESH,
) -> QueryResult:
    """The LERF-OVS protocol for one query: relevance [L, H, W] at the label's resolution."""
    relevance = np.asarray(relevance, dtype=np.float32)
    if relevance.ndim == 2:
        relevance = relevance[None]
    gt_mask = np.asarray(gt_mask, dtype=bool)
    assert relevance.shape[1:] == gt_mask.shape, (relevance.shape, gt_mask.shape)
    chosen = choose_scale(relevance)  # the one scale choice, shared with queries and 3D-OVS
    out = normalise(smoothed_relevance(relevance[chosen]))
    mask = majority_smooth((out > mask_thresh).astype(np.uint8))
    loc = localize(relevance, boxes_xyxy)
    return QueryResult(iou(gt_mask, mask), chosen, loc.hit, loc.scale_index, mask, out)
