"""Small pure functions of the features stage: mask boxes, masked square crops, normalisation."""

from __future__ import annotations

import numpy as np


def mask_boxes(segmentation: np.ndarray, n_masks: int) -> np.ndarray:
    """Tight inclusive boxes [x0, y0, x1, y1] of the pixels of each mask → [M, 4] int64 (-1 if empty)."""
    seg = np.asarray(segmentation)
    h, w = seg.shape
    boxes = np.full((n_masks, 4), -1, dtype=np.int64)
    if n_masks == 0:
        return boxes
    flat = seg.reshape(-1)
    inside = np.flatnonzero(flat >= 0)
    lab = flat[inside]
    ys, xs = np.divmod(inside, w)
    big = np.iinfo(np.int64).max
    x0 = np.full(n_masks, big)
    y0 = np.full(n_masks, big)
    x1 = np.full(n_masks, -1)
    y1 = np.full(n_masks, -1)
    np.minimum.at(x0, lab, xs)
    np.minimum.at(y0, lab, ys)
    np.maximum.at(x1, lab, xs)
    np.maximum.at(y1, lab, ys)
    present = x1 >= 0
    boxes[present] = np.stack([x0, y0, x1, y1], axis=1)[present]
    return boxes


def masked_crop(image: np.ndarray, mask: np.ndarray, box_xyxy, crop_size: int) -> np.ndarray:
    """The crop CLIP sees for one mask → [crop_size, crop_size, 3] uint8.

    The mask is applied (pixels outside it set to 0), the result cropped to the inclusive box, padded
    with zeros to a square of side max(h, w) with the crop centred (top = (side - h) // 2,
    left = (side - w) // 2), and resized to crop_size (area averaging when shrinking, bilinear when
    enlarging). This is LangSplat's preprocessing of SAM masks for CLIP.
    """
    import cv2

    x0, y0, x1, y1 = (int(v) for v in box_xyxy)
    patch = image[y0 : y1 + 1, x0 : x1 + 1] * mask[y0 : y1 + 1, x0 : x1 + 1, None].astype(image.dtype)
    h, w = patch.shape[:2]
    side = max(h, w)
    square = np.zeros((side, side, image.shape[2]), dtype=image.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    square[top : top + h, left : left + w] = patch
    if side == crop_size:
        return square
    interp = cv2.INTER_AREA if side > crop_size else cv2.INTER_LINEAR
    return cv2.resize(square, (crop_size, crop_size), interpolation=interp)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (float32); an all-zero row stays zero."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, eps)


def normalize_query(text: str) -> str:
    """The form a text query is matched in: lower case, single spaces, no surrounding blanks."""
    return " ".join(str(text).lower().split())
