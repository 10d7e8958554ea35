"""The 3D-OVS protocol (Liu et al. 2023, Kunhao-Liu/3D-OVS: dataLoader/llff.py, renderer.py).

Labels: a `segmentations/` folder with `classes.txt` (one class per line; sorted, as 3D-OVS sorts
them) and one folder per evaluated view named by its index in the sorted image list ("00", "03", …),
holding `<class>.png` per class (white = the class). Masks are read as 8-bit grey, resized with PIL
NEAREST to the render size (3D-OVS evaluates at its training resolution), and kept where
value / 255 truncates to 1 (i.e. pure white), as `(np.array(img) / 255.0).astype(np.int8)` does.

Prediction: per pixel the argmax over the scene's classes (no background class). Per view and class
IoU = |pred_c ∧ gt_c| / |pred_c ∨ gt_c|, 0 when both are empty (sklearn's jaccard_score with
average=None, zero_division's default); the scene's mIoU is the mean over (view, class) pairs.
Multi-scale fields: each class's scale is chosen per view by the highest smoothed peak (as LERF-OVS),
then the argmax runs over the classes' relevance at their chosen scales. The `room` scene is reported
apart from the mean in the tables.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ccl.query.ops import choose_scale

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class OvsFrameLabels:
    frame: str  # camera name of the view (image stem)
    index: int  # the folder's number: index in the lexicographically sorted image list
    path: Path  # the view's folder
    classes: tuple[str, ...]  # C class names, sorted
    masks: np.ndarray  # [C, H, W] bool at the render size


def read_classes(folder: str | Path) -> tuple[str, ...]:
    path = Path(folder) / "classes.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (a 3D-OVS segmentations folder has classes.txt)")
    classes = sorted(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not classes:
        raise ValueError(f"{path}: no class names")
    return tuple(classes)


def view_folders(folder: str | Path) -> list[tuple[int, Path]]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: 3D-OVS segmentations folder not found (scene entry `labels`)")
    views = sorted((int(p.name), p) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    if not views:
        raise FileNotFoundError(f"{folder}: no view folders (named by image index, e.g. 00/, 03/)")
    return views


def read_3dovs_view(view: Path, index: int, frame: str, classes: tuple[str, ...], size_wh: tuple[int, int]):
    """One view's class masks [C, H, W] at size_wh (w, h)."""
    from PIL import Image

    masks = []
    for c in classes:
        path = view / f"{c}.png"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing mask of class {c!r} (classes.txt lists it)")
        img = Image.open(path).convert("L")
        if img.size != tuple(size_wh):
            img = img.resize(tuple(size_wh), Image.NEAREST)
        masks.append((np.array(img) / 255.0).astype(np.int8) == 1)
    return OvsFrameLabels(frame, index, view, classes, np.stack(masks))


def frame_of_index(index: int, image_names: list[str], *, where: str) -> str:
    """3D-OVS view folder index -> camera name: the index-th image in lexicographic file-name order."""
    order = sorted(image_names)
    if not 0 <= index < len(order):
        raise ValueError(
            f"{where}: view folder {index:02d} but the scene has {len(order)} images "
            "(3D-OVS folders are indices into the sorted image list)"
        )
    return Path(order[index]).stem


def class_ious(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """pred [H, W] class index, gt [C, H, W] bool -> [C] IoU (0 when a class is in neither)."""
    n = gt.shape[0]
    out = np.zeros(n, dtype=np.float64)
    for c in range(n):
        p = pred == c
        union = np.logical_or(p, gt[c]).sum()
        out[c] = np.logical_and(p, gt[c]).sum() / union if union else 0.0
    return out


@dataclass(frozen=True, eq=False)
class OvsResult:
    ious: np.ndarray  # [C] float64
    scale_index: np.ndarray  # [C] int64, scale chosen per class
    pred: np.ndarray  # [H, W] int64 class index


def evaluate_view(relevance: np.ndarray, gt: np.ndarray) -> OvsResult:
    """relevance [L, C, H, W] (or [C, H, W]) and gt [C, H, W] -> per-class IoU of the argmax map."""
    relevance = np.asarray(relevance, dtype=np.float32)
    if relevance.ndim == 3:
        relevance = relevance[None]
    n_scales, n_classes = relevance.shape[:2]
    chosen = np.array([choose_scale(relevance[:, c]) if n_scales > 1 else 0 for c in range(n_classes)])
    stacked = relevance[chosen, np.arange(n_classes)]  # [C, H, W]
    pred = stacked.argmax(axis=0)
    return OvsResult(class_ious(pred, gt), chosen, pred)
