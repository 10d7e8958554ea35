"""Small pure functions of the tracks stage: mask/track IoUs and label matching."""

from __future__ import annotations

import numpy as np

# Row v = the 8 bits of byte value v, most significant first (np.packbits order): [256, 8] int64.
_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.int64)


def iou_matrix(segmentation: np.ndarray, propagated: np.ndarray, n_masks: int | None = None) -> np.ndarray:
    """IoU of every mask of a frame with every propagated mask, all pairs at once → [M, K] float32.

    `segmentation` [H, W] int (mask index, -1 none) holds M non-overlapping masks; `propagated` [K, H, W]
    bool may overlap. The intersections are the matrix product one-hot(segmentation)ᵀ · propagated,
    computed without the [M, H·W] one-hot: the K propagated bits of each pixel are packed into bytes
    (8 tracks per byte plane), a histogram over (mask, byte value) counts each pair once per plane, and
    that [M, 256] histogram times the [256, 8] table of bits gives the [M, 8] intersections of those 8
    tracks. Work O(H·W·K/8) plus O(M·256·K/8); exact integers, so it equals the per-pair reference.
    """
    seg = np.asarray(segmentation).reshape(-1)
    prop = np.ascontiguousarray(propagated, dtype=bool)
    k = int(prop.shape[0])
    prop = prop.reshape(k, -1) if k else prop.reshape(0, seg.size)
    if prop.shape[1] != seg.size:
        raise ValueError(f"propagated masks have {prop.shape[1]} pixels, the segmentation {seg.size}")
    m = int(seg.max(initial=-1)) + 1 if n_masks is None else int(n_masks)
    if m == 0 or k == 0:
        return np.zeros((m, k), dtype=np.float32)
    slot = np.where(seg >= 0, seg + 1, 0).astype(np.int64)  # row 0 collects the pixels of no mask
    base = slot * 256
    n_planes = (k + 7) // 8
    inter = np.empty((m + 1, n_planes * 8), dtype=np.int64)
    for b in range(n_planes):
        plane = np.zeros(seg.size, dtype=np.uint8)
        for j, track in enumerate(prop[8 * b : 8 * b + 8]):
            plane |= track.view(np.uint8) << np.uint8(7 - j)
        hist = np.bincount(base + plane, minlength=(m + 1) * 256).reshape(m + 1, 256)
        inter[:, 8 * b : 8 * b + 8] = hist @ _BYTE_BITS
    inter = inter[1:, :k]  # [M, K]
    area_m = np.bincount(slot, minlength=m + 1)[1:]
    area_k = prop.sum(axis=1, dtype=np.int64)
    union = area_m[:, None] + area_k[None, :] - inter
    return (inter / np.maximum(union, 1)).astype(np.float32)  # union 0 ⇒ inter 0 ⇒ IoU 0


def iou_matrix_per_pair(segmentation: np.ndarray, propagated: np.ndarray, n_masks: int) -> np.ndarray:
    """Reference: the IoU of each (mask, propagated mask) pair computed on its own → [M, K] float32."""
    seg = np.asarray(segmentation)
    out = np.zeros((n_masks, len(propagated)), dtype=np.float32)
    for i in range(n_masks):
        a = seg == i
        for j, b in enumerate(propagated):
            union = np.count_nonzero(a | b)
            out[i, j] = np.count_nonzero(a & b) / union if union else 0.0
    return out


def match_labels(
    iou: np.ndarray, iou_thresh: float, track_ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each mask takes the track of its highest IoU if that IoU > iou_thresh, else -1.

    `iou` [M, K]; `track_ids` [K] int (default 0..K-1). Several masks may take the same track (a track
    split into pieces). Ties go to the lowest column. → (labels [M] int32, best_iou [M] float32).
    """
    iou = np.asarray(iou, dtype=np.float32)
    m, k = iou.shape
    if k == 0:
        return np.full(m, -1, dtype=np.int32), np.zeros(m, dtype=np.float32)
    ids = np.arange(k) if track_ids is None else np.asarray(track_ids)
    best = iou.argmax(axis=1)
    best_iou = iou[np.arange(m), best]
    labels = np.where(best_iou > iou_thresh, ids[best], -1).astype(np.int32)
    return labels, best_iou.astype(np.float32)


def masks_of(segmentation: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The boolean masks `indices` of a segmentation → [len(indices), H, W] bool."""
    seg = np.asarray(segmentation)
    idx = np.asarray(indices, dtype=np.int64)
    return seg[None, :, :] == idx[:, None, None]
