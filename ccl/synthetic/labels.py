"""LERF-OVS label files of the synthetic scene's evaluation frames, from the ground-truth whole masks.

The format is the released one (see tests/fixtures/lerf_ovs_labels): `info` {name, width,
height, depth, note} and `objects` [{category, group, segmentation: [[x, y], ...], area, layer, bbox
[xmin, ymin, xmax, ymax], iscrowd, note}], with float coordinates in pixel-index units and the
polygon's shoelace area. An object seen in several pieces gives one polygon per piece, all with its
category, as the released files do.
"""

from __future__ import annotations

import numpy as np

from ccl.synthetic.ops import shoelace_area

MIN_PIECE_PX = 20  # visible pieces smaller than this get no polygon


def mask_polygons(mask: np.ndarray, *, min_pixels: int = MIN_PIECE_PX) -> list[np.ndarray]:
    """Outer contours [K, 2] float64 (x, y) of the connected pieces of a boolean mask [H, W]."""
    import cv2

    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    polys = []
    for c in range(1, n):
        if stats[c, cv2.CC_STAT_AREA] < min_pixels:
            continue
        piece = (comp == c).astype(np.uint8)
        contours, _ = cv2.findContours(piece, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        # One piece has one outer contour; keep the longest should cv2 ever split it.
        contour = max(contours, key=len)
        if len(contour) >= 3:
            polys.append(contour[:, 0, :].astype(np.float64))
    return polys


def frame_label(image_name: str, whole_id: np.ndarray, category_of_object: list[str]) -> dict:
    """The LERF-OVS JSON dict of one frame from its whole-object id map [H, W] (-1 = no object)."""
    h, w = whole_id.shape
    objects = []
    for obj in np.unique(whole_id[whole_id >= 0]):
        for poly in mask_polygons(whole_id == obj):
            objects.append(
                {
                    "category": category_of_object[int(obj)],
                    "group": int(obj) + 1,
                    "segmentation": poly.tolist(),
                    "area": shoelace_area(poly),
                    "layer": float(len(objects) + 1),
                    "bbox": [
                        float(poly[:, 0].min()),
                        float(poly[:, 1].min()),
                        float(poly[:, 0].max()),
                        float(poly[:, 1].max()),
                    ],
                    "iscrowd": 0,
                    "note": "",
                }
            )
    return {
        "info": {"name": image_name, "width": int(w), "height": int(h), "depth": 3, "note": ""},
        "objects": objects,
    }
