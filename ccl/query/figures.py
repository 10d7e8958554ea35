"""Relevance-map figures: a query's map over the image (`overlay`) and a grid of them with the predicted
and ground-truth outlines (`frame_figure`). Drawn by `ccl query` here and by evaluation (ccl.eval) for the
report, so one query's map looks the same in both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ccl.io import atomic_path


def overlay(image: np.ndarray, heat: np.ndarray, *, mask: np.ndarray | None = None) -> np.ndarray:
    """Image [H, W, 3] uint8 dimmed to 30 %, heat [H, W] in [0, 1] drawn with turbo where > 0.

    LangSplat's composite: the colormap where the map is active, the image × 0.3 elsewhere.
    """
    from matplotlib import colormaps

    img = np.asarray(image, dtype=np.float32) / 255.0
    heat = np.clip(np.asarray(heat, dtype=np.float32), 0, 1)
    colour = colormaps["turbo"](heat)[..., :3].astype(np.float32)
    active = heat > 0 if mask is None else np.asarray(mask, bool)
    out = img * 0.3
    out[active] = 0.35 * img[active] + 0.65 * colour[active]
    return (out * 255).round().astype(np.uint8)


def frame_figure(
    path: str | Path,
    image: np.ndarray,
    panels: Sequence[tuple[str, np.ndarray, np.ndarray | None, np.ndarray | None, str]],
    *,
    title: str = "",
    max_cols: int = 4,
) -> Path:
    """A grid of panels (query, heat [H, W], predicted mask, ground-truth mask, subtitle) → PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = max(1, len(panels))
    cols = min(max_cols, n)
    rows = math.ceil(n / cols)
    h, w = image.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows * h / w + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (query, heat, pred, gt, sub) in zip(axes.ravel(), panels, strict=False):
        ax.imshow(overlay(image, heat))
        if gt is not None and np.any(gt):
            ax.contour(np.asarray(gt, float), levels=[0.5], colors=["lime"], linewidths=1.0)
        if pred is not None and np.any(pred):
            ax.contour(
                np.asarray(pred, float), levels=[0.5], colors=["white"], linewidths=1.0, linestyles="--"
            )
        ax.set_title(f"{query}\n{sub}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)
