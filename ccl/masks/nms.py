"""Mask NMS of LangSplat's preprocessing (its `mask_nms`), vectorised, with the per-pair reference.

LangSplat's semantics, per level, masks ranked by score = pred_iou × stability (descending; ties keep
input order here, LangSplat's torch sort leaves them unspecified):

- a mask is dropped if its IoU with ANY higher-ranked mask (kept or not: this is not greedy NMS)
  is above `iou_thresh`;
- a mask is dropped if its score is not above `score_thresh`;
- "inner" pairs: for masks p ranked above q, with fractions f_p = |p∩q|/|p| and f_q = |p∩q|/|q|:
  if f_p < 0.5 and f_q ≥ 0.85 (q lies inside p), q gets inner value 1 − f_p·f_q;
  if f_p ≥ 0.85 and f_q < 0.5 (p lies inside q), p gets that value. A mask is dropped if its largest
  inner value exceeds 1 − `inner_thresh`. LangSplat gathers the second case from
  ``tril(inner, diagonal=1)``, which also sees the first super-diagonal; kept here (it changes
  nothing but the all-dropped fallback below).
- if a criterion (score, inner-upper, inner-lower) would drop every mask, it keeps the top 3 instead
  (LangSplat's intent; its ``keep[index, 0] = True`` raises on the 1-D tensors it has).

Divisions by an empty area or union count as 0 (LangSplat gets NaN there). Ratios are computed in
float64 from exact integer counts, so the fast path and the reference take bit-identical decisions.

The fast path computes every pairwise intersection as matrix products of the flattened masks, tile
by tile (memory ≈ M × `tile_px`² × 4 bytes), each tile only over the masks whose box meets it.
"""

from __future__ import annotations

import numpy as np

INNER_OUTSIDE_FRAC = 0.5  # the containing mask is covered by less than this fraction …
INNER_INSIDE_FRAC = 0.85  # … and the contained mask lies at least this much inside it
FALLBACK_TOP_K = 3


def pairwise_intersections(
    masks: np.ndarray, *, tile_px: int = 128, boxes_xyxy: np.ndarray | None = None
) -> np.ndarray:
    """[M, H, W] bool → [M, M] int64 pixel counts of every pairwise intersection (diagonal = areas).

    The image is cut into square tiles of side `tile_px`; in each, the masks whose box meets the tile
    are flattened into a float32 matrix A and A·Aᵀ adds their intersections there (exact: a tile holds
    far fewer than 2^24 pixels). Memory ≈ M × tile_px² × 4 bytes; a mask costs only in the tiles it
    touches. `boxes_xyxy` (inclusive, as `boxes_from_masks`) is computed when not given.
    """
    masks = np.asarray(masks, dtype=bool)
    m, h, w = masks.shape
    inter = np.zeros((m, m), np.int64)
    if m == 0 or h * w == 0:
        return inter
    if boxes_xyxy is None:
        from ccl.io.masks_h5 import boxes_from_masks

        boxes_xyxy = boxes_from_masks(masks)
    boxes = np.asarray(boxes_xyxy).astype(np.int64)
    nonempty = _nonempty(boxes, masks)
    side = max(1, min(int(tile_px), 4096))
    for y0 in range(0, h, side):
        y1 = min(h, y0 + side)  # exclusive
        in_rows = nonempty & (boxes[:, 1] < y1) & (boxes[:, 3] >= y0)
        for x0 in range(0, w, side):
            x1 = min(w, x0 + side)
            act = np.flatnonzero(in_rows & (boxes[:, 0] < x1) & (boxes[:, 2] >= x0))
            if act.size == 0:
                continue
            a = masks[act, y0:y1, x0:x1].reshape(act.size, -1).astype(np.float32)
            inter[np.ix_(act, act)] += np.rint(a @ a.T).astype(np.int64)
    return inter


def _nonempty(boxes: np.ndarray, masks: np.ndarray) -> np.ndarray:
    # A zero box is either empty or a single pixel at (0, 0): only those need a look at the pixels.
    nonempty = boxes.any(axis=1)
    zero = np.flatnonzero(~nonempty)
    nonempty[zero] = masks[zero, 0, 0]
    return nonempty


def mask_nms(
    masks: np.ndarray,
    scores: np.ndarray,
    *,
    iou_thresh: float,
    score_thresh: float,
    inner_thresh: float,
    tile_px: int = 128,
    boxes_xyxy: np.ndarray | None = None,
) -> np.ndarray:
    """[M, H, W] bool masks, [M] scores → [M] bool, the masks LangSplat's mask NMS keeps (module doc)."""
    scores = np.asarray(scores, np.float64).ravel()  # a float32 score compared as its exact value
    n = scores.shape[0]
    assert masks.shape[0] == n, (masks.shape, scores.shape)
    if n == 0:
        return np.zeros(0, bool)
    order = np.argsort(-scores, kind="stable")
    inter = pairwise_intersections(masks, tile_px=tile_px, boxes_xyxy=boxes_xyxy)[np.ix_(order, order)]
    area = np.diag(inter)
    # int64 counts divided give float64 ratios. A union or an area is 0 only where the intersection
    # is, so dividing by max(·, 1) makes those ratios 0.
    iou = inter / np.maximum(area[:, None] + area[None, :] - inter, 1)
    frac_row = inter / np.maximum(area, 1)[:, None]  # frac_row[p, q] = |p∩q| / |p|
    frac_col = frac_row.T  # frac_col[p, q] = |p∩q| / |q|
    upper = np.triu(np.ones((n, n), bool), k=1)  # p ranked above q
    value = 1.0 - frac_col * frac_row
    inner = np.zeros((n, n))
    q_in_p = upper & (frac_row < INNER_OUTSIDE_FRAC) & (frac_col >= INNER_INSIDE_FRAC)
    p_in_q = upper & (frac_row >= INNER_INSIDE_FRAC) & (frac_col < INNER_OUTSIDE_FRAC)
    inner[q_in_p] = value[q_in_p]
    inner.T[p_in_q] = value[p_in_q]
    iou_max = np.where(upper, iou, 0.0).max(axis=0)
    inner_u_max = np.where(upper, inner, 0.0).max(axis=0)  # LangSplat's triu(inner, 1)
    inner_l_max = np.tril(inner, k=1).max(axis=0)
    keep_sorted = _combine(
        iou_max <= iou_thresh,
        scores[order] > float(score_thresh),
        inner_u_max <= 1.0 - inner_thresh,
        inner_l_max <= 1.0 - inner_thresh,
    )
    keep = np.zeros(n, bool)
    keep[order[keep_sorted]] = True
    return keep


def _combine(
    keep_iou: np.ndarray, keep_conf: np.ndarray, keep_u: np.ndarray, keep_l: np.ndarray
) -> np.ndarray:
    """LangSplat's final step, in ranked order: each all-false criterion falls back to the top 3."""
    top = np.arange(keep_iou.shape[0]) < FALLBACK_TOP_K
    for crit in (keep_conf, keep_u, keep_l):
        if not crit.any():
            crit |= top
    return keep_iou & keep_conf & keep_u & keep_l


def mask_nms_reference(
    masks: np.ndarray, scores: np.ndarray, *, iou_thresh: float, score_thresh: float, inner_thresh: float
) -> np.ndarray:
    """The same decision, one pair at a time as LangSplat's preprocess.py computes it (the test oracle)."""
    scores = [float(s) for s in np.ravel(scores)]
    n = len(scores)
    order = sorted(range(n), key=lambda i: -scores[i])  # sorted() is stable: ties keep input order
    ranked = [masks[i] for i in order]  # counted and combined as truth values, whatever the dtype
    area = [int(np.count_nonzero(m)) for m in ranked]
    iou_m = [[0.0] * n for _ in range(n)]
    inner_m = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i, n):
            inter = int(np.count_nonzero(np.logical_and(ranked[i], ranked[j])))
            union = int(np.count_nonzero(np.logical_or(ranked[i], ranked[j])))
            iou_m[i][j] = inter / union if union else 0.0
            fi = inter / area[i] if area[i] else 0.0
            fj = inter / area[j] if area[j] else 0.0
            if fi < INNER_OUTSIDE_FRAC and fj >= INNER_INSIDE_FRAC:
                inner_m[i][j] = 1.0 - fj * fi
            if fi >= INNER_INSIDE_FRAC and fj < INNER_OUTSIDE_FRAC:
                inner_m[j][i] = 1.0 - fj * fi
    # iou_matrix.triu_(1).max(0); triu(inner, 1).max(0); tril(inner, 1).max(0)
    iou_max = [max([iou_m[i][j] for i in range(j)], default=0.0) for j in range(n)]
    inner_u = [max([inner_m[i][j] for i in range(j)], default=0.0) for j in range(n)]
    inner_l = [max(inner_m[i][j] for i in range(max(0, j - 1), n)) for j in range(n)]  # never empty
    keep_iou = np.array([v <= iou_thresh for v in iou_max], bool)
    keep_conf = np.array([scores[k] > score_thresh for k in order], bool)
    keep_u = np.array([v <= 1.0 - inner_thresh for v in inner_u], bool)
    keep_l = np.array([v <= 1.0 - inner_thresh for v in inner_l], bool)
    for crit in (keep_conf, keep_u, keep_l):  # an all-false criterion keeps the top 3 instead
        if not crit.any():
            crit[: min(FALLBACK_TOP_K, n)] = True
    keep_sorted = keep_iou & keep_conf & keep_u & keep_l
    keep = np.zeros(n, bool)
    for rank, k in enumerate(order):
        keep[k] = keep_sorted[rank]
    return keep
