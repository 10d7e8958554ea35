"""evaluate_lerf_ovs / evaluate_3dovs on hand-made fields: rows, resolution rule and bad input."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from ccl.eval import (
    CSV_COLUMNS,
    EvalConfig,
    LabelWarning,
    evaluate_3dovs,
    evaluate_lerf_ovs,
    resolve_queries,
    rows_to_csv,
    summarize,
)
from ccl.eval.labels import CategoryLabel, FrameLabels
from ccl.eval.ovs3d import OvsFrameLabels
from ccl.query import QueryConfig, from_arrays
from ccl.scene import Camera

H, W = 60, 160
BAND = (40, 80)  # columns of the "cup" class in every render


def _camera(name, w=W, h=H):
    K = np.array([[100.0, 0, w / 2], [0, 100.0, h / 2], [0, 0, 1]])
    return Camera(
        name=name, image_path=f"/nonexistent/{name}.png", width=w, height=h, K=K, world_to_camera=np.eye(4)
    )


class BandSource:
    """Two prototypes (0 = table, 1 = cup); the cup fills a full-height band of every render."""

    def __init__(self, scales=("sp", "wp"), size=(H, W)):
        self.scales = tuple(scales)
        self.size = size

    def prototypes(self, scale):
        return np.eye(2, 4, dtype=np.float32)

    def class_map(self, scale, camera):
        h, w = camera.height, camera.width
        m = np.zeros((h, w), np.int64)
        m[:, int(BAND[0] * w / W) : int(BAND[1] * w / W)] = 1
        return m


def _emb(cfg):
    return from_arrays(["table", "cup"], np.eye(2, 4, dtype=np.float32), np.eye(4, dtype=np.float32)[2:],
                       cfg=QueryConfig(negatives=("object", "stuff")))  # fmt: skip


def _label(frame, cats, *, h=H, w=W, shift=0):
    out = {}
    for c in cats:
        mask = np.zeros((h, w), bool)
        if c == "cup":
            x0, x1 = int(BAND[0] * w / W) + shift, int(BAND[1] * w / W) + shift
        else:
            x0, x1 = int(100 * w / W), int(150 * w / W)
        mask[:, x0:x1] = True
        out[c] = CategoryLabel(c, mask, np.array([[x0, 0, x1 - 1, h - 1]], float))
    return FrameLabels(frame=frame, path=f"/labels/{frame}.json", height=h, width=w, categories=out)  # type: ignore[arg-type]


def _run(labels, source=None, cameras=None, qcfg=None, ecfg=None):
    qcfg = qcfg or QueryConfig(mode="paper")
    cameras = cameras or [_camera("frame_00000"), _camera("frame_00005"), _camera("frame_00010")]
    return evaluate_lerf_ovs(
        labels, cameras, source or BandSource(), _emb(qcfg),
        scene="toy", variant="full", seed=3, query_cfg=qcfg, eval_cfg=ecfg or EvalConfig(),
    )  # fmt: skip


@pytest.mark.parametrize("mode", ["paper", "langsplat"])
def test_one_row_per_frame_and_query_present_in_the_frame(mode):
    labels = [_label("frame_00000", ["cup"], shift=10), _label("frame_00010", ["cup", "table"])]
    rows = _run(labels, qcfg=QueryConfig(mode=mode))
    assert [(r.frame, r.query) for r in rows] == [
        ("frame_00000", "cup"),
        ("frame_00010", "cup"),
        ("frame_00010", "table"),
    ]
    cup0 = rows[0]
    assert cup0.iou == pytest.approx(30 / 50)  # band of 40 shifted by 10: (40 − 10) / (40 + 10)
    assert rows[1].iou == pytest.approx(1.0)
    assert (cup0.scene, cup0.variant, cup0.seed, cup0.protocol, cup0.mode) == (
        "toy",
        "full",
        3,
        "lerf_ovs",
        mode,
    )
    assert cup0.scales == "sp+wp" and cup0.scale == "sp" and cup0.loc_hit == 1.0 and cup0.threshold == 0.4
    s = summarize(rows)["sp+wp"]
    assert s["n_pairs"] == 3 and s["loc_acc"] == pytest.approx(np.mean([r.loc_hit for r in rows]))


def test_csv_has_the_contract_columns():
    rows = _run([_label("frame_00000", ["cup"])])
    table = list(csv.reader(io.StringIO(rows_to_csv(rows))))
    assert tuple(table[0]) == CSV_COLUMNS
    assert CSV_COLUMNS[:6] == ("scene", "variant", "seed", "frame", "query", "protocol")
    assert len(table) == 2


def test_single_merged_scale_is_its_own_set():
    rows = _run([_label("frame_00000", ["cup"])], source=BandSource(("sp", "wp", "all")))
    assert [(r.scales, r.scale) for r in rows] == [("sp+wp", "sp"), ("all", "all")]


def test_label_at_twice_the_render_size_is_evaluated_at_the_label_size():
    # LangSplat evaluates at the label's resolution: the render's relevance is resized up to it.
    labels = [_label("frame_00000", ["cup"], h=2 * H, w=2 * W, shift=20)]
    rows = _run(labels)
    assert rows[0].iou == pytest.approx(60 / 100, abs=0.02)  # band 80 wide shifted by 20, ± resampling


def test_label_of_another_aspect_ratio_is_refused_naming_both_sizes():
    labels = [_label("frame_00000", ["cup"], h=H, w=W + 40)]
    with pytest.raises(ValueError, match=r"label is 200x60.*render is 160x60.*aspect"):
        _run(labels)


def test_label_frame_without_camera_is_refused():
    with pytest.raises(ValueError, match=r"frame_00099.*no camera"):
        _run([_label("frame_00099", ["cup"])])


def test_configured_queries_vs_label_categories_warns_and_lists_them():
    with pytest.warns(LabelWarning) as rec:
        q = resolve_queries(["cup", "table", "rubics cube"], ["cup", "mug"], where="labels/")
    msgs = " ".join(str(r.message) for r in rec)
    assert q == ("cup",)
    assert "['table', 'rubics cube']" in msgs and "['mug']" in msgs
    assert resolve_queries(["cup", "table", "cup"], [], where="x") == ("cup", "table")
    with pytest.raises(ValueError, match="none of eval.queries"), pytest.warns(LabelWarning):
        resolve_queries(["cup"], ["mug"], where="x")


def test_3dovs_rows_per_view_and_class():
    masks = np.zeros((2, H, W), bool)
    masks[1, :, BAND[0] : BAND[1]] = True
    masks[0] = ~masks[1]
    views = [OvsFrameLabels("frame_00005", 1, "/seg/01", ("table", "cup"), masks)]  # type: ignore[arg-type]
    qcfg = QueryConfig(mode="paper")
    rows = evaluate_3dovs(views, [_camera("frame_00005")], BandSource(), _emb(qcfg),
                          scene="bed", variant="base", seed=0, query_cfg=qcfg)  # fmt: skip
    assert [(r.query, r.iou, r.protocol) for r in rows] == [("table", 1.0, "3dovs"), ("cup", 1.0, "3dovs")]
    assert np.isnan(rows[0].loc_hit) and np.isnan(rows[0].threshold)
    assert ",," in rows_to_csv(rows).splitlines()[1] or rows_to_csv(rows).splitlines()[1].endswith(",")


def test_downscaled_render_of_an_odd_sized_label_counts_as_the_same_aspect():
    from ccl.eval import to_label_size

    maps = np.zeros((1, 365, 494), np.float32)  # 988 x 731 downscaled by 2 (731 / 2 floored)
    assert to_label_size(maps, (731, 988), where="x").shape == (1, 731, 988)
    with pytest.raises(ValueError, match="label is 988x700"):
        to_label_size(maps, (700, 988), where="x")
