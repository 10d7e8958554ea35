"""What evaluate_lerf_ovs / evaluate_3dovs put in every row, the figures' callback, the scene summary, the
CSV file and the messages (survivors of bench.mutation on eval/run.py). Expected IoUs are set arithmetic
on the hand-made bands, not the product's IoU helpers."""

from __future__ import annotations

import csv
import io
import logging
import math
import re

import numpy as np
import pytest
from test_eval_run import BAND, BandSource, H, W, _camera, _emb, _label, _run

from ccl.eval import (
    EvalConfig,
    LabelWarning,
    evaluate_3dovs,
    evaluate_lerf_ovs,
    resolve_queries,
    rows_to_csv,
    summarize,
)
from ccl.eval.ovs3d import OvsFrameLabels
from ccl.eval.run import aspect_matches
from ccl.query import QueryConfig


def _band_iou(a, b):
    """IoU of two full-height column bands [a0, a1) and [b0, b1)."""
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


class PerScaleSource:
    """A field per scale: the cup's band in sp is BAND, wp has no cup, `all` has it 20 columns right.
    Asked for a scale it does not have, it fails (as a missing field file would)."""

    scales = ("sp", "wp", "all")
    bands = {"sp": BAND, "wp": None, "all": (BAND[0] + 20, BAND[1] + 20)}

    def prototypes(self, scale):
        return {s: np.eye(2, 4, dtype=np.float32) for s in self.scales}[scale]

    def class_map(self, scale, camera):
        band = self.bands[scale]
        m = np.zeros((camera.height, camera.width), np.int64)
        if band is not None:
            m[:, band[0] : band[1]] = 1
        return m


def test_each_scale_set_is_scored_on_its_own_fields():
    rows = _run([_label("frame_00000", ["cup"])], source=PerScaleSource())
    assert [(r.scales, r.scale, r.loc_scale) for r in rows] == [("sp+wp", "sp", "sp"), ("all", "all", "all")]
    assert rows[0].iou == pytest.approx(1.0)
    assert rows[1].iou == pytest.approx(_band_iou(BAND, PerScaleSource.bands["all"]))


def _views(shift=10):
    masks = np.zeros((2, H, W), bool)  # classes (table, cup); the cup's truth is BAND shifted right
    masks[1, :, BAND[0] + shift : BAND[1] + shift] = True
    masks[0] = ~masks[1]
    return [OvsFrameLabels("frame_00005", 1, "/seg/01", ("table", "cup"), masks)]  # type: ignore[arg-type]


def _3dovs(views, source, mode="paper"):
    qcfg = QueryConfig(mode=mode)
    return evaluate_3dovs(views, [_camera("frame_00005")], source, _emb(qcfg),
                          scene="bed", variant="base", seed=4, query_cfg=qcfg)  # fmt: skip


def test_3dovs_rows_carry_the_run_the_view_the_scale_and_the_iou():
    rows = _3dovs(_views(), PerScaleSource())
    cup_truth = (BAND[0] + 10, BAND[1] + 10)
    want = {}
    for scales, painted in (("sp+wp", BAND), ("all", PerScaleSource.bands["all"])):
        scale = scales.split("+")[0]
        want[(scales, "cup")] = (scale, _band_iou(painted, cup_truth))
        # the table is all but the bands: |¬a ∧ ¬b| / |¬a ∨ ¬b| = (W − |a ∪ b|) / (W − |a ∩ b|)
        inter = max(0, min(painted[1], cup_truth[1]) - max(painted[0], cup_truth[0]))
        union = (painted[1] - painted[0]) + (cup_truth[1] - cup_truth[0]) - inter
        want[(scales, "table")] = (scale, (W - union) / (W - inter))
    assert len(rows) == 4
    for r in rows:
        scale, iou = want[(r.scales, r.query)]
        assert (r.scene, r.variant, r.seed, r.frame, r.protocol, r.mode) == (
            "bed",
            "base",
            4,
            "frame_00005",
            "3dovs",
            "paper",
        )
        assert (r.scale, r.loc_scale) == (scale, "")
        assert r.iou == pytest.approx(iou)
        assert math.isnan(r.loc_hit) and math.isnan(r.threshold)
    table = list(csv.DictReader(io.StringIO(rows_to_csv(rows))))
    assert [(t["scales"], t["query"], t["loc_hit"], t["threshold"]) for t in table] == [
        ("sp+wp", "table", "", ""),
        ("sp+wp", "cup", "", ""),
        ("all", "table", "", ""),
        ("all", "cup", "", ""),
    ]


def test_csv_lines_end_in_a_newline_only():
    text = rows_to_csv(_run([_label("frame_00000", ["cup"])]))
    assert "\r" not in text and text.count("\n") == 2


def test_3dovs_masks_of_another_size_are_refused_naming_both_sizes():
    masks = np.zeros((2, 50, 100), bool)
    views = [OvsFrameLabels("frame_00005", 1, "/seg/01", ("table", "cup"), masks)]  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=re.escape("/seg/01: masks are 100x50 but the sp render is 160x60 (w x h)")
    ):
        _3dovs(views, BandSource())


def test_the_figure_callback_gets_each_frame_once_with_the_rows_results():
    seen = []
    qcfg = QueryConfig(mode="paper")
    labels = [_label("frame_00000", ["cup"], shift=10), _label("frame_00010", ["cup", "table"])]
    cams = [_camera("frame_00000"), _camera("frame_00010")]
    rows = evaluate_lerf_ovs(
        labels, cams, BandSource(("sp", "wp", "all")), _emb(qcfg), scene="toy", variant="full", seed=0,
        query_cfg=qcfg, eval_cfg=EvalConfig(), on_frame=lambda *a: seen.append(a),
    )  # fmt: skip
    assert [(f, cam.name, s) for f, cam, s, _ in seen] == [
        ("frame_00000", "frame_00000", ("sp", "wp")),
        ("frame_00010", "frame_00010", ("sp", "wp")),
    ]
    multi = [r for r in rows if r.scales == "sp+wp"]
    got = [(q, res.iou) for *_, results in seen for q, res, _ in results]
    assert got == [(r.query, r.iou) for r in multi]
    for (*_, results), label in zip(seen, labels, strict=True):
        for q, _, gt in results:
            assert gt is label.categories[q].mask


def test_the_configured_threshold_is_the_one_applied():
    label = [_label("frame_00000", ["cup"])]
    loose = _run(label, ecfg=EvalConfig(mask_thresh=0.4))[0]
    strict = _run(label, ecfg=EvalConfig(mask_thresh=0.95))[0]
    assert loose.iou == pytest.approx(1.0) and strict.threshold == 0.95
    # at 0.95 only the band's middle, where the 30×30 mean is nearly the band itself, passes
    assert strict.iou < 0.9


def test_a_frame_without_an_evaluated_query_is_skipped_and_logged(caplog):
    labels = [_label("frame_00000", ["chair"]), _label("frame_00010", ["cup"])]
    with caplog.at_level(logging.INFO, logger="ccl.eval.run"):
        rows = _run(labels)
    assert [(r.frame, r.query) for r in rows] == [("frame_00010", "cup")]
    assert "/labels/frame_00000.json: no evaluated query in this frame; skipped" in caplog.messages


def test_missing_cameras_are_named_with_the_scene_and_the_rule():
    labels = [_label(f"frame_{i:05d}", ["cup"]) for i in range(100, 110)]
    with pytest.raises(ValueError) as e:
        _run(labels)
    msg = str(e.value)
    assert msg.startswith("scene 'toy': label frames ['frame_00100'")
    assert "'frame_00107'" in msg and "'frame_00108'" not in msg  # the first 8 only
    assert "(cameras: ['frame_00000', 'frame_00005', 'frame_00010']…)" in msg
    assert "by image stem (frame_00060.json ↔ image frame_00060.*)" in msg
    masks = np.zeros((2, H, W), bool)
    views = [OvsFrameLabels("frame_00099", 1, "/seg/01", ("table", "cup"), masks)]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^scene 'bed': label frames \['frame_00099'\]"):
        _3dovs(views, BandSource())


def test_another_aspect_is_refused_naming_the_label_file_and_what_to_check():
    with pytest.raises(ValueError) as e:
        _run([_label("frame_00000", ["cup"], h=H, w=W + 40)])
    assert str(e.value).startswith("/labels/frame_00000.json: the label is 200x60")
    assert "the label cannot be of this view at another resolution; check that the label folder belongs to " \
           "this scene and that the images were not cropped" in str(e.value)  # fmt: skip


def test_every_query_of_a_frame_is_resized_to_the_label():
    rows = _run([_label("frame_00000", ["cup", "table"], h=2 * H, w=2 * W, shift=20)])
    assert [r.query for r in rows] == ["cup", "table"]
    assert rows[0].iou == pytest.approx(_band_iou((80, 160), (100, 180)), abs=0.02)
    # the table is predicted everywhere but the cup's band (2W − 80 columns); its label, 200..300, lies inside
    assert rows[1].iou == pytest.approx(100 / (2 * W - 80), abs=0.02)


@pytest.mark.parametrize("src, dst, same", [((100, 200), (200, 400), True), ((100, 200), (102, 200), False),
                                            ((200, 100), (200, 102), False), ((365, 494), (731, 988), True)])  # fmt: skip
def test_two_rows_or_columns_more_are_not_rounding(src, dst, same):
    # one pixel of rounding per side at the source's scale: 731 -> 365 is; 100 -> 102 rows is not
    assert aspect_matches(src, dst) is same


def test_summary_counts_the_scales_and_averages_the_rows():
    labels = [_label("frame_00000", ["cup"], shift=10), _label("frame_00010", ["cup", "table"])]
    rows = _run(labels, source=PerScaleSource())
    s = summarize(rows)
    multi = [r for r in rows if r.scales == "sp+wp"]
    assert s["sp+wp"]["miou"] == pytest.approx(sum(r.iou for r in multi) / len(multi))
    assert s["sp+wp"]["scale_counts"] == {"sp": sum(r.scale == "sp" for r in multi)}
    assert s["all"]["scale_counts"] == {"all": 3}
    ovs = summarize(_3dovs(_views(), PerScaleSource()))
    assert ovs["sp+wp"]["loc_acc"] is None  # 3D-OVS has no boxes


def test_query_warnings_are_label_warnings_pointing_past_the_evaluator():
    with pytest.warns(LabelWarning) as rec:
        resolve_queries(["cup", "table"], ["cup", "mug"], where="labels/")
    assert [r.category for r in rec] == [LabelWarning, LabelWarning]
    # stacklevel: the warning names the line that asked (here this file; under mutmut its trampoline),
    # never a line of ccl/eval/run.py itself
    assert not any(r.filename.endswith("run.py") for r in rec)
    assert "(eval.queries lists the queries; leave it empty to evaluate every label category)" in str(
        rec[0].message
    )


def test_the_progress_line_names_the_scene_and_counts_frames(capsys):
    _run([_label("frame_00000", ["cup"]), _label("frame_00010", ["cup"])])
    _3dovs(_views(), BandSource())
    err = capsys.readouterr().err
    assert re.search(r"evaluate toy/full: 100%.*2/2 .*(frame/s|s/frame)", err)
    assert re.search(r"evaluate bed/base: 100%.*1/1 .*(frame/s|s/frame)", err)
