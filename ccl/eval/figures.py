"""Evaluation's figures: the relevance-map grid of ccl.query.figures (the one `ccl query` draws), over the
image resized to the ground truth's size."""

from __future__ import annotations

import numpy as np

from ccl.query.figures import frame_figure, overlay

__all__ = ["frame_figure", "overlay", "resize_image"]


def resize_image(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Image [H, W, 3] -> [hw[0], hw[1], 3] (area averaging), the ground truth's size; as it is if it has it."""
    if image.shape[:2] == tuple(hw):
        return image
    import cv2

    return cv2.resize(image, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
