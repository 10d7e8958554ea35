"""LERF-OVS label files, read the way LangSplat's evaluation reads them.

Reference: minghanqin/LangSplat, eval/evaluate_iou_loc.py (`eval_gt_lerfdata`) and eval/utils.py
(`polygon_to_mask`, `stack_mask`). One JSON per evaluated frame (labelme-like):

    {"info": {"name": "frame_00060.jpg", "width": 988, "height": 731, ...},
     "objects": [{"category": "egg", "segmentation": [[x, y], ...], "bbox": [x1, y1, x2, y2],
                  "area": ..., "iscrowd": 0 | false, "group": ..., "layer": ..., "note": ...}, ...]}

What the real files do (tested on five of them, tests/fixtures/lerf_ovs_labels): CRLF line
endings; `iscrowd` 0 or false (ignored, as LangSplat does); float coordinates; a category repeated in
one frame (its polygons are unioned and its boxes stacked); names as released ("rubics cube").

Rasterisation is LangSplat's: vertices cast to int32 (truncation toward zero), `cv2.fillPoly(mask,
[points], 1)` (OpenCV's scan-line fill: a self-intersecting polygon is filled by the even-odd rule).
Defined behaviour for bad polygons (a warning names the file and the object index, never a silent
zero): fewer than 3 distinct vertices or all on one line → skipped; self-intersecting (edges that
cross) → rasterised as cv2 does, with a warning.

The frame a label belongs to is the stem of `info.name` (`frame_00060`), matched by name to the camera
whose image has that stem. LangSplat instead indexes its renders with `int(stem.split('_')[-1]) - 1`
(frame_00060 ↔ the 60th training image in sorted order), which is the same view when the images are
named frame_00001, frame_00002, … without gaps, as in LERF's scenes.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class LabelWarning(UserWarning):
    """A label file has something the protocol skips or handles specially (named in the message)."""


@dataclass(frozen=True, eq=False)
class CategoryLabel:
    """Ground truth of one category in one frame (all its objects unioned)."""

    name: str
    mask: np.ndarray  # [H, W] bool, union of the category's rasterised polygons
    boxes_xyxy: (
        np.ndarray
    )  # [K, 4] float64, the objects' `bbox` (x_min, y_min, x_max, y_max), one per polygon


@dataclass(frozen=True, eq=False)
class FrameLabels:
    """One label file: the categories of one evaluated frame, at the label's resolution."""

    frame: str  # image stem from info.name, "frame_00060"; matched to the camera of that name
    path: Path
    height: int
    width: int
    categories: dict[str, CategoryLabel] = field(default_factory=dict)  # first-appearance order


def _warn(msg: str) -> None:
    warnings.warn(msg, LabelWarning, stacklevel=3)


def polygon_to_mask(shape_hw: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """LangSplat eval/utils.py `polygon_to_mask`: int32 vertices, cv2.fillPoly with 1 -> [H, W] uint8."""
    import cv2

    pts = np.asarray(points, dtype=np.float64).astype(np.int32).reshape(-1, 2)
    mask = np.zeros(shape_hw, dtype=np.uint8)
    cv2.fillPoly(mask, [pts], 1)
    return mask


def shoelace_area(points: np.ndarray) -> float:
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x, y = p[:, 0], p[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def is_degenerate(points: np.ndarray) -> bool:
    """Fewer than 3 vertices, or all on one line: a polygon that encloses no area."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(np.unique(p, axis=0)) < 3:
        return True
    centred = p - p.mean(axis=0)
    return bool(np.linalg.matrix_rank(centred, tol=1e-9 * max(1.0, float(np.abs(p).max()))) < 2)


def is_self_intersecting(points: np.ndarray) -> bool:
    """True when two non-adjacent edges of the closed polygon cross (a proper crossing).

    Edges that only touch or run along each other (a traced contour going out and back along a
    one-pixel-wide part) are not counted: cv2's fill of such a polygon is what its outline suggests,
    whereas crossing edges make the even-odd fill leave the overlap of the loops empty.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    keep = np.ones(len(p), bool)
    keep[1:] = np.any(p[1:] != p[:-1], axis=1)  # drop repeated consecutive vertices
    p = p[keep]
    if len(p) > 1 and np.all(p[0] == p[-1]):
        p = p[:-1]
    n = len(p)
    if n < 4:
        return False
    a, b = p, np.roll(p, -1, axis=0)  # edge i: a[i] -> b[i]
    i, j = np.triu_indices(n, k=2)
    nonadjacent = ~((i == 0) & (j == n - 1))
    i, j = i[nonadjacent], j[nonadjacent]

    def orient(p1, p2, p3):
        return np.sign(
            (p2[:, 0] - p1[:, 0]) * (p3[:, 1] - p1[:, 1]) - (p2[:, 1] - p1[:, 1]) * (p3[:, 0] - p1[:, 0])
        )

    A, B, C, D = a[i], b[i], a[j], b[j]
    o1, o2, o3, o4 = orient(A, B, C), orient(A, B, D), orient(C, D, A), orient(C, D, B)
    return bool(np.any((o1 * o2 < 0) & (o3 * o4 < 0)))


def _points(obj: dict, where: str) -> np.ndarray:
    seg = obj.get("segmentation")
    if seg is None:
        raise ValueError(f"{where}: no 'segmentation' field (expected a list of [x, y] vertices)")
    try:
        pts = np.asarray(seg, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: 'segmentation' is not a list of [x, y] vertices ({e})") from None
    if pts.size == 0:
        return pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(
            f"{where}: 'segmentation' has shape {list(pts.shape)}, expected [n_vertices, 2] "
            "(LERF-OVS polygons are lists of [x, y] pairs)"
        )
    if not np.all(np.isfinite(pts)):
        raise ValueError(f"{where}: 'segmentation' has non-finite coordinates")
    return pts


def read_lerf_labels(path: str | Path) -> FrameLabels:
    """Parse one LERF-OVS label JSON; polygons rasterised and unioned per category."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: label file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: not a text file (byte {e.start} is not UTF-8): a LERF-OVS label is JSON text; replace it "
            "with the released file, or remove it from the labels folder"
        ) from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    info = data.get("info") if isinstance(data, dict) else None
    if not isinstance(info, dict) or "height" not in info or "width" not in info:
        raise ValueError(
            f"{path}: expected an 'info' object with 'height' and 'width' (LERF-OVS label format)"
        )
    h, w = int(info["height"]), int(info["width"])
    if h <= 0 or w <= 0:
        raise ValueError(f"{path}: info.height/width must be positive, got {h} x {w}")
    name = info.get("name")
    frame = Path(str(name)).stem if name else path.stem
    if frame != path.stem:
        _warn(
            f"{path}: info.name {name!r} differs from the file name; the frame is {frame!r} (LangSplat uses info.name)"
        )
    objects = data.get("objects")
    if not isinstance(objects, list):
        raise ValueError(f"{path}: expected an 'objects' list")

    masks: dict[str, np.ndarray] = {}
    boxes: dict[str, list[np.ndarray]] = {}
    for k, obj in enumerate(objects):
        where = f"{path}: objects[{k}]"
        if not isinstance(obj, dict) or not isinstance(obj.get("category"), str):
            raise ValueError(f"{where}: expected an object with a 'category' string")
        label = obj["category"]
        pts = _points(obj, where)
        if is_degenerate(pts):
            _warn(f"{where} ({label!r}): empty polygon ({len(pts)} vertices, no enclosed area): skipped")
            continue
        if is_self_intersecting(pts):
            _warn(
                f"{where} ({label!r}): self-intersecting polygon, rasterised by cv2.fillPoly's even-odd fill"
            )
        mask = polygon_to_mask((h, w), pts)
        bbox = obj.get("bbox")
        if bbox is None:
            box = np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])
            log.debug("%s: no bbox, using the polygon's extent %s", where, box)
        else:
            box = np.asarray(bbox, dtype=np.float64).reshape(-1)
            if box.shape != (4,):
                raise ValueError(f"{where}: 'bbox' must be [x1, y1, x2, y2], got {bbox!r}")
        if label in masks:
            masks[label] = masks[label] | mask.astype(bool)  # LangSplat stack_mask: union
        else:
            masks[label] = mask.astype(bool)
        boxes.setdefault(label, []).append(box)

    cats = {
        c: CategoryLabel(c, masks[c], np.stack(boxes[c]).astype(np.float64).reshape(-1, 4)) for c in masks
    }
    for c, cat in cats.items():
        if not cat.mask.any():
            _warn(f"{path}: category {c!r} covers no pixel after rasterisation (polygon outside the image?)")
    return FrameLabels(frame=frame, path=path, height=h, width=w, categories=cats)


def label_files(folder: str | Path, protocol: str) -> list[Path]:
    """The files of a scene's labels folder that its protocol's evaluation reads: LERF-OVS's
    frame_XXXXX.json, 3D-OVS's classes.txt and <view>/<class>.png. They are inputs of the workflow's
    evaluation, so that editing, adding or removing one reruns exactly the evaluation and the tables."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    if protocol == "lerf_ovs":
        return sorted(folder.glob("*.json"))
    classes = [folder / "classes.txt"] if (folder / "classes.txt").is_file() else []
    return classes + sorted(p for p in folder.glob("*/*.png") if p.parent.name.isdigit())


def read_lerf_label_dir(folder: str | Path) -> list[FrameLabels]:
    """Every *.json label file of a folder, sorted by frame name; an empty folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: label folder not found (scene entry `labels`)")
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise FileNotFoundError(f"{folder}: no *.json label files (LERF-OVS labels are frame_XXXXX.json)")
    frames = [read_lerf_labels(p) for p in paths]
    names = [f.frame for f in frames]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{folder}: several label files name the same frame(s) {dupes}")
    return sorted(frames, key=lambda f: f.frame)
