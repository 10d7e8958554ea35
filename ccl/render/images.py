"""A field's views as images: colour to uint8, decoded classes in a fixed palette, relevance over the
view's own colour, and image files written atomically with what made them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}  # -o suffix -> PIL format


def class_colours(class_map: np.ndarray) -> np.ndarray:
    """Class (prototype index) map [H, W] -> [H, W, 3] uint8 in a fixed palette, so a class has the same
    colour in every view and run: tab20's colours for 0-19, then hues a golden-ratio turn apart; -1 black."""
    import colorsys

    from matplotlib import colormaps

    idx = np.asarray(class_map, dtype=np.int64)
    n = max(int(idx.max(initial=0)) + 1, 20)
    palette = np.array(
        [
            *colormaps["tab20"].colors,
            *(colorsys.hsv_to_rgb((k * 0.6180339887) % 1.0, 0.7, 0.9) for k in range(20, n)),
        ]
    )  # [n, 3] in [0, 1]
    rgb = np.rint(palette[np.maximum(idx, 0)] * 255).astype(np.uint8)
    rgb[idx < 0] = 0
    return rgb


def colour_to_uint8(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] float colour in [0, 1] -> uint8 (rounded)."""
    return np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def write_view_image(out: Path, image: np.ndarray, *, made_by: dict[str, Any]) -> Path:
    """PNG (with `made_by` as a text chunk) or JPEG (as its comment), written atomically."""
    from PIL import Image, PngImagePlugin

    from ccl.io import atomic_path

    fmt = IMAGE_SUFFIXES[out.suffix.lower()]
    note = json.dumps(made_by, sort_keys=True)
    with atomic_path(out) as tmp:
        img = Image.fromarray(image)
        if fmt == "PNG":
            info = PngImagePlugin.PngInfo()
            info.add_text("ccl", note)
            img.save(tmp, format=fmt, pnginfo=info)
        else:
            img.save(tmp, format=fmt, quality=95, comment=note)
    return out
