"""The 3D-OVS protocol: label folders, the per-pixel argmax and IoUs known by construction."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ccl.eval.ovs3d import (
    class_ious,
    evaluate_view,
    frame_of_index,
    read_3dovs_view,
    read_classes,
    view_folders,
)


def test_argmax_iou_known_by_construction():
    h, w = 10, 20
    rel = np.zeros((2, h, w), np.float32)
    rel[0, :, :10] = 0.9  # class 0 wins on the left half, class 1 on the right half
    rel[1, :, 10:] = 0.9
    gt = np.zeros((2, h, w), bool)
    gt[0, :, :12] = True  # ground truth: class 0 on 60 %, class 1 on 40 %
    gt[1, :, 12:] = True
    res = evaluate_view(rel, gt)
    np.testing.assert_allclose(res.ious, [10 / 12, 8 / 10])


def test_class_absent_from_prediction_and_truth_scores_zero():
    # sklearn's jaccard_score(average=None) convention, which 3D-OVS's evaluation inherits
    pred = np.zeros((4, 4), int)
    gt = np.zeros((2, 4, 4), bool)
    gt[0] = True
    np.testing.assert_allclose(class_ious(pred, gt), [1.0, 0.0])


def test_scale_chosen_per_class():
    rel = np.zeros((2, 2, 60, 60), np.float32)  # [L, C, H, W]
    rel[0, 0, 10:50, 10:50] = 0.9  # class 0 peaks at scale 0
    rel[1, 1, 10:50, 10:50] = 0.95  # class 1 peaks at scale 1
    res = evaluate_view(rel, np.zeros((2, 60, 60), bool))
    assert res.scale_index.tolist() == [0, 1]


def test_label_folder_is_read_as_3dovs_does(tmp_path):
    seg = tmp_path / "segmentations"
    (seg / "03").mkdir(parents=True)
    (seg / "classes.txt").write_text("teddy bear\nbanana\n")
    a = np.zeros((8, 12), np.uint8)
    a[:, :6] = 255
    a[0, 0] = 128  # grey: (128 / 255) truncates to 0, not the class
    Image.fromarray(a).save(seg / "03" / "banana.png")
    Image.fromarray(255 - a).save(seg / "03" / "teddy bear.png")
    classes = read_classes(seg)
    assert classes == ("banana", "teddy bear")  # sorted, as 3D-OVS sorts them
    [(index, folder)] = view_folders(seg)
    frame = frame_of_index(index, ["10.jpg", "00.jpg", "01.jpg", "02.jpg", "03.jpg"], where="t")
    assert frame == "03"  # the 4th name in sorted order
    view = read_3dovs_view(folder, index, frame, classes, (6, 4))  # resized NEAREST to 6 x 4
    assert view.masks.shape == (2, 4, 6)
    assert view.masks[0, :, :3].all() and not view.masks[0, :, 3:].any()
    full = read_3dovs_view(folder, index, frame, classes, (12, 8))
    assert not full.masks[0, 0, 0] and full.masks[0, 1, 0]


def test_missing_class_mask_and_bad_index_are_named(tmp_path):
    seg = tmp_path / "segmentations"
    (seg / "00").mkdir(parents=True)
    (seg / "classes.txt").write_text("cup\n")
    with pytest.raises(FileNotFoundError, match="cup.png"):
        read_3dovs_view(seg / "00", 0, "00", ("cup",), (4, 4))
    with pytest.raises(ValueError, match="view folder 05.*2 images"):
        frame_of_index(5, ["a.jpg", "b.jpg"], where="x")


def test_class_scale_is_the_highest_smoothed_peak_not_the_highest_raw_peak():
    import cv2

    rel = np.zeros((2, 2, 60, 60), np.float32)  # [L, C, H, W]
    rel[0, 0, 5, 5] = 1.0  # class 0, scale 0: a lone spike (raw peak 1, smoothed ≈ 0.5006)
    rel[1, 0, 10:50, 10:50] = 0.8  # class 0, scale 1: a plateau (raw and smoothed peak 0.8)
    rel[:, 1, 20:40, 20:40] = 0.6  # class 1: the same at both scales (first on the tie)
    # LangSplat's rule, written out: the peak of 0.5 · (30×30 mean + raw), first on ties
    kernel = np.ones((30, 30)) / 900
    peaks = [[float((0.5 * (cv2.filter2D(m, -1, kernel) + m)).max()) for m in rel[:, c]] for c in range(2)]
    want = [int(np.argmax(p)) for p in peaks]
    assert want == [1, 0] and int(np.argmax(rel[:, 0].reshape(2, -1).max(axis=1))) == 0
    assert evaluate_view(rel, np.zeros((2, 60, 60), bool)).scale_index.tolist() == want
