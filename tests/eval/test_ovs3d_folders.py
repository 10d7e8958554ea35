"""The 3D-OVS label folder as a user lays it out: which folders are views, which view is which image,
colour masks, the predicted class map, and what a wrong folder is told (survivors of bench.mutation)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ccl.eval.ovs3d import evaluate_view, frame_of_index, read_3dovs_view, read_classes, view_folders


def test_only_numbered_folders_are_views(tmp_path):
    seg = tmp_path / "segmentations"
    for name in ("03", "00", "notes"):  # a stray sub-folder without a number is not a view
        (seg / name).mkdir(parents=True)
    (seg / "07").write_text("a file named like a view is not one")
    (seg / "classes.txt").write_text("cup\n")
    assert view_folders(seg) == [(0, seg / "00"), (3, seg / "03")]


def test_wrong_or_empty_folders_are_named(tmp_path):
    seg = tmp_path / "segmentations"
    with pytest.raises(FileNotFoundError, match=r"segmentations: 3D-OVS segmentations folder not found"):
        view_folders(seg)
    seg.mkdir()
    with pytest.raises(FileNotFoundError, match=r"classes.txt: not found"):
        read_classes(seg)
    (seg / "classes.txt").write_text("\n  \n")
    with pytest.raises(ValueError, match=r"classes.txt: no class names"):
        read_classes(seg)
    with pytest.raises(FileNotFoundError, match=r"segmentations: no view folders"):
        view_folders(seg)


def test_first_and_last_image_index_and_one_past_the_end():
    names = ["b.png", "c.png", "a.png"]  # sorted: a, b, c
    assert frame_of_index(0, names, where="x") == "a"
    assert frame_of_index(2, names, where="x") == "c"
    with pytest.raises(
        ValueError,
        match=r"view folder 03 but the scene has 3 images \(3D-OVS folders are indices into the sorted image list\)$",
    ):
        frame_of_index(3, names, where="x")


def test_colour_mask_is_read_as_grey_and_the_view_knows_its_frame(tmp_path):
    # A mask saved as RGB (white class on black) reads as the same class mask as its grey version.
    view = tmp_path / "05"
    view.mkdir()
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:2, :] = 255
    rgb[3, 0] = (255, 255, 0)  # yellow is not white: grey 226, not the class
    Image.fromarray(rgb).save(view / "cup.png")
    labels = read_3dovs_view(view, 5, "frame_05", ("cup",), (6, 4))
    want = np.zeros((1, 4, 6), bool)
    want[0, :2] = True
    np.testing.assert_array_equal(labels.masks, want)
    assert (labels.frame, labels.index, labels.path, labels.classes) == ("frame_05", 5, view, ("cup",))


def test_predicted_class_map_is_the_per_pixel_argmax():
    rng = np.random.default_rng(3)
    rel = rng.random((3, 5, 7)).astype(np.float32)  # [C, H, W]
    res = evaluate_view(rel, np.zeros((3, 5, 7), bool))
    want = np.empty((5, 7), int)
    for i in range(5):
        for j in range(7):
            want[i, j] = max(range(3), key=lambda c: rel[c, i, j])
    np.testing.assert_array_equal(res.pred, want)
