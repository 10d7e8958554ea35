"""ccl's 3D-OVS protocol against an independent statement of it (ovs3d_reference.py, written from the
3D-OVS reference code), on random relevance maps and real-format label folders: equal to 1e-6."""

from __future__ import annotations

import numpy as np
import pytest
from ovs3d_reference import classes as ref_classes
from ovs3d_reference import ground_truth, scene_miou, view_ious
from PIL import Image

from ccl.eval.ovs3d import evaluate_view, read_3dovs_view, read_classes, view_folders

NAMES = ["teddy bear", "banana", "sofa", "red mug"]  # classes.txt order is not sorted


def _label_folder(root, rng, *, views, mask_hw, grey_values=True):
    """segmentations/: classes.txt and one folder per view with <class>.png, as 3D-OVS ships them;
    masks drawn at `mask_hw` (other than the render size: both sides resize) with blobs, and with
    near-white grey where `grey_values` (only pure white counts)."""
    seg = root / "segmentations"
    seg.mkdir()
    (seg / "classes.txt").write_text("\n".join(NAMES) + "\n")
    h, w = mask_hw
    for v in views:
        (seg / f"{v:02d}").mkdir()
        for name in NAMES:
            m = np.zeros((h, w), np.uint8)
            for _ in range(rng.integers(0, 3)):  # 0 blobs sometimes: a class absent from a view
                cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(3, 10)
                yy, xx = np.mgrid[:h, :w]
                m[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 255
            if grey_values:
                m[rng.random((h, w)) < 0.02] = 254
            Image.fromarray(m).save(seg / f"{v:02d}" / f"{name}.png")
    return seg


@pytest.mark.parametrize("seed, mask_hw", [(0, (48, 64)), (1, (96, 128)), (2, (37, 50))])
def test_per_class_ious_and_scene_miou_agree_with_the_reference(tmp_path, seed, mask_hw):
    rng = np.random.default_rng(seed)
    render_hw = (48, 64)
    seg = _label_folder(tmp_path, rng, views=(0, 3, 5), mask_hw=mask_hw)
    assert list(read_classes(seg)) == ref_classes(str(seg))
    names = list(read_classes(seg))
    ref_gt = ground_truth(str(seg), names, (render_hw[1], render_hw[0]))
    ccl_mious, ref_mious = [], []
    for index, folder in view_folders(seg):
        labels = read_3dovs_view(
            folder, index, f"frame_{index:05d}", tuple(names), (render_hw[1], render_hw[0])
        )
        relevance = rng.random((len(names), *render_hw)).astype(np.float32)
        relevance[:, :4, :4] = 0.5  # ties: both take the first class
        ours = evaluate_view(relevance, labels.masks).ious
        theirs = view_ious(relevance, ref_gt[index])
        np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)
        ccl_mious.append(ours)
        ref_mious.append(theirs)
    assert abs(float(np.mean(ccl_mious)) - scene_miou(ref_mious)) < 1e-6


def test_a_class_in_neither_prediction_nor_truth_counts_zero_in_both(tmp_path):
    rng = np.random.default_rng(3)
    seg = _label_folder(tmp_path, rng, views=(0,), mask_hw=(48, 64), grey_values=False)
    names = list(read_classes(seg))
    for name in names:  # empty truth everywhere
        Image.fromarray(np.zeros((48, 64), np.uint8)).save(seg / "00" / f"{name}.png")
    relevance = np.zeros((len(names), 48, 64), np.float32)
    relevance[0] = 1.0  # every pixel predicts class 0
    labels = read_3dovs_view(seg / "00", 0, "frame_00000", tuple(names), (64, 48))
    ours = evaluate_view(relevance, labels.masks).ious
    theirs = view_ious(relevance, ground_truth(str(seg), names, (64, 48))[0])
    np.testing.assert_array_equal(ours, theirs)
    assert list(ours) == [0.0] * len(names)
