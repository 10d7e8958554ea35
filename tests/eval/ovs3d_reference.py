"""The 3D-OVS evaluation written a second time, for tests only, from the 3D-OVS reference code
(Kunhao-Liu/3D-OVS: dataLoader/llff.py `read_classes_names` / `read_segmentation_maps`, renderer.py
`evaluation_segmentation_test`), independently of ccl.eval.ovs3d, so the two can be compared.

What the reference does, step by step:
- class names: every line of segmentations/classes.txt, stripped, then sorted;
- ground truth: for every sub-folder of segmentations/ (its name is the view's image index) and every
  class, `<class>.png` opened as 8-bit grey, resized with PIL NEAREST to the render size, divided by
  255.0 and cast to int8 (so only pure white is 1), flattened: [H*W, C] per view;
- prediction: per pixel, the argmax of the softmax over the classes' relevancy (the first class on a
  tie), one-hot over the classes: [H*W, C];
- IoU: sklearn's `jaccard_score(gt, one_hot, average=None)` on those multilabel matrices, i.e. per class
  column |gt ∧ pred| / |gt ∨ pred|, 0 where the union is empty (sklearn's zero_division default);
- the scene's mIoU: the mean over every view's per-class IoUs.
"""

from __future__ import annotations

import os

import numpy as np


def classes(seg_dir: str) -> list[str]:
    with open(os.path.join(seg_dir, "classes.txt")) as f:
        names = [line.strip() for line in f.readlines()]
    names.sort()
    return names


def ground_truth(seg_dir: str, names: list[str], render_wh: tuple[int, int]) -> dict[int, np.ndarray]:
    """{view index: [H*W, C] int8}."""
    from PIL import Image

    out = {}
    for folder in os.listdir(seg_dir):
        if not os.path.isdir(os.path.join(seg_dir, folder)):
            continue
        columns = []
        for name in names:
            img = Image.open(os.path.join(seg_dir, folder, f"{name}.png")).convert("L")
            if img.size != tuple(render_wh):
                img = img.resize(tuple(render_wh), Image.NEAREST)
            columns.append((np.array(img) / 255.0).astype(np.int8).flatten())
        out[int(folder)] = np.stack(columns, axis=0).transpose(1, 0)
    return out


def view_ious(relevancy_chw: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """relevancy [C, H, W], gt [H*W, C] -> [C] IoU."""
    n_classes = relevancy_chw.shape[0]
    logits = relevancy_chw.reshape(n_classes, -1).T.astype(np.float64)  # [N, C]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    one_hot = np.eye(n_classes, dtype=np.int8)[p.argmax(axis=1)]
    ious = np.zeros(n_classes)
    for c in range(n_classes):
        inter = np.sum((gt[:, c] == 1) & (one_hot[:, c] == 1))
        union = np.sum((gt[:, c] == 1) | (one_hot[:, c] == 1))
        ious[c] = inter / union if union else 0.0
    return ious


def scene_miou(per_view: list[np.ndarray]) -> float:
    return float(np.mean(per_view))
