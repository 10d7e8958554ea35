"""LERF-OVS label parsing on the real files, and the defined behaviour for bad polygons."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from ccl.eval import LabelWarning, polygon_to_mask, read_lerf_label_dir, read_lerf_labels
from ccl.eval.labels import is_self_intersecting, shoelace_area

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "lerf_ovs_labels"  # real files: README there
REAL = {
    # scene/file: (height, width, objects, categories)
    "figurines/frame_00152.json": (728, 986, 11, 11),
    "ramen/frame_00060.json": (731, 988, 8, 8),
    "teatime/frame_00129.json": (730, 988, 7, 7),
    "waldo_kitchen/frame_00066.json": (725, 985, 4, 4),
    "waldo_kitchen/frame_00089.json": (725, 985, 7, 3),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_label_files_parse(name):
    path = FIXTURES / name
    assert b"\r\n" in path.read_bytes()  # the real files are CRLF
    h, w, n_objects, n_categories = REAL[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error", LabelWarning)  # the real files need no special handling
        fl = read_lerf_labels(path)
    assert (fl.height, fl.width) == (h, w)
    assert fl.frame == path.stem
    assert len(fl.categories) == n_categories
    assert sum(c.boxes_xyxy.shape[0] for c in fl.categories.values()) == n_objects
    raw = json.loads(path.read_text())
    for k, obj in enumerate(raw["objects"]):
        # the rasterised polygon covers its shoelace area, plus at most its boundary pixels
        pts = np.asarray(obj["segmentation"], dtype=np.float64)
        area = polygon_to_mask((h, w), pts).sum()
        perimeter = np.linalg.norm(np.diff(np.vstack([pts, pts[:1]]), axis=0), axis=1).sum()
        assert obj["area"] == pytest.approx(shoelace_area(pts), rel=1e-6), k
        assert obj["area"] - 1 <= area <= obj["area"] + perimeter + 2, (k, area, obj["area"])


def test_repeated_category_is_unioned_and_keeps_every_box():
    path = FIXTURES / "waldo_kitchen/frame_00089.json"
    raw = json.loads(path.read_text())
    knives = [o for o in raw["objects"] if o["category"] == "knife"]
    assert len(knives) == 5
    fl = read_lerf_labels(path)
    union = np.zeros((fl.height, fl.width), bool)
    for o in knives:
        union |= polygon_to_mask((fl.height, fl.width), o["segmentation"]).astype(bool)
    np.testing.assert_array_equal(fl.categories["knife"].mask, union)
    np.testing.assert_array_equal(fl.categories["knife"].boxes_xyxy, [o["bbox"] for o in knives])


def test_names_as_released_and_iscrowd_mix():
    fl = read_lerf_labels(FIXTURES / "figurines/frame_00152.json")
    assert "rubics cube" in fl.categories  # spelled as released, not corrected
    raw = json.loads((FIXTURES / "figurines/frame_00152.json").read_text())
    assert {repr(o["iscrowd"]) for o in raw["objects"]} >= {"0", "False"}


def _write(tmp_path, objects, *, name="frame_00003", h=40, w=50):
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps({"info": {"name": f"{name}.jpg", "height": h, "width": w}, "objects": objects}))
    return p


def _obj(cat, pts, bbox=None):
    pts = np.asarray(pts, float)
    box = bbox if bbox is not None else [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()]
    return {"category": cat, "segmentation": pts.tolist(), "bbox": box, "iscrowd": 0}


def test_vertices_are_truncated_to_int32_as_langsplat_does():
    # x in [2.9, 10.9] truncates to [2, 10]: cv2.fillPoly includes both edges -> 9 columns
    mask = polygon_to_mask((20, 20), [[2.9, 3.7], [10.9, 3.7], [10.9, 8.2], [2.9, 8.2]])
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (2, 10, 3, 8)
    assert mask.sum() == 9 * 6


def test_empty_polygon_is_skipped_with_a_warning_naming_file_and_index(tmp_path):
    square = [[10, 10], [30, 10], [30, 30], [10, 30]]
    p = _write(tmp_path, [_obj("cup", square), {"category": "cup", "segmentation": [], "bbox": [0, 0, 1, 1]},
                          {"category": "ghost", "segmentation": [[1, 1], [5, 5]], "bbox": [1, 1, 5, 5]}])  # fmt: skip
    with pytest.warns(LabelWarning) as rec:
        fl = read_lerf_labels(p)
    msgs = [str(r.message) for r in rec]
    assert any("objects[1]" in m and str(p) in m and "empty polygon" in m for m in msgs), msgs
    assert any("objects[2]" in m and "ghost" in m for m in msgs), msgs
    assert list(fl.categories) == ["cup"]  # ghost had only an empty polygon: no ground truth, no row
    assert fl.categories["cup"].boxes_xyxy.shape == (1, 4)  # the empty polygon's box is not kept


def test_self_intersecting_polygon_is_filled_by_cv2_with_a_warning(tmp_path):
    bowtie = [[10, 10], [30, 30], [30, 10], [10, 30]]  # two triangles meeting at (20, 20)
    assert is_self_intersecting(bowtie)
    assert not is_self_intersecting([[10, 10], [30, 10], [30, 30], [10, 30]])
    p = _write(tmp_path, [_obj("bow", bowtie)])
    with pytest.warns(LabelWarning, match=r"objects\[0\].*self-intersecting"):
        fl = read_lerf_labels(p)
    mask = fl.categories["bow"].mask
    np.testing.assert_array_equal(mask, polygon_to_mask((40, 50), bowtie).astype(bool))
    assert mask[20, 12] and mask[20, 28]  # both triangles' interiors (left and right) are filled
    assert not mask[12, 20] and not mask[28, 20]  # the gaps above and below the crossing are not


def test_malformed_files_name_the_problem(tmp_path):
    bad = tmp_path / "frame_00001.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="frame_00001.json: not valid JSON"):
        read_lerf_labels(bad)
    bad.write_text(json.dumps({"objects": []}))
    with pytest.raises(ValueError, match="'info'.*height"):
        read_lerf_labels(bad)
    p = _write(tmp_path, [{"category": "x", "segmentation": [1, 2, 3, 4, 5, 6], "bbox": [0, 0, 1, 1]}])
    with pytest.raises(ValueError, match=r"objects\[0\].*\[n_vertices, 2\]"):
        read_lerf_labels(p)
    with pytest.raises(FileNotFoundError, match="no \\*.json"):
        read_lerf_label_dir(tmp_path / "empty") if (tmp_path / "empty").mkdir() is None else None


def test_frame_name_comes_from_info_name(tmp_path):
    p = _write(tmp_path, [_obj("cup", [[1, 1], [9, 1], [9, 9]])], name="frame_00007")
    renamed = p.with_name("copy.json")
    p.rename(renamed)
    with pytest.warns(LabelWarning, match="differs from the file name"):
        fl = read_lerf_labels(renamed)
    assert fl.frame == "frame_00007"


def test_touching_edges_are_not_crossings():
    # a traced contour going out along a one-pixel spike and back: edges overlap but never cross
    spike = [[0, 0], [10, 0], [10, 5], [20, 5], [10, 5], [10, 10], [0, 10]]
    assert not is_self_intersecting(spike)
    assert is_self_intersecting([[0, 0], [10, 10], [10, 0], [0, 10]])


def test_a_binary_label_file_names_the_file(tmp_path):
    path = tmp_path / "frame_00001.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" * 8)
    with pytest.raises(ValueError, match=r"frame_00001.json: not a text file .*not UTF-8"):
        read_lerf_labels(path)
