"""Evaluate a scene's language fields: one CSV row per (frame, query) and scale set.

`evaluate_lerf_ovs` and `evaluate_3dovs` work on plain inputs (label objects, cameras, a source of
class maps and prototypes, text embeddings) so they are testable without a trained field;
`evaluate_scene` (rule evaluate, `ccl evaluate`) wires them to the workflow's files.

Resolution. LERF-OVS is evaluated at the label's resolution, as LangSplat does (its renders are the
label's size, and the protocol's 30×30 box and 7×7 window are in those pixels): relevance maps rendered
at the camera's size are resized bilinearly to the label size when the aspect ratios agree (to within
one pixel of rounding, e.g. a downscaled scene); otherwise a ValueError names both sizes. 3D-OVS is
evaluated at the render size, its masks resized with NEAREST (as 3D-OVS does).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass, fields
from typing import Protocol

import numpy as np

from ccl.eval.config import EvalConfig
from ccl.eval.labels import FrameLabels, LabelWarning
from ccl.eval.lerf_ovs import QueryResult, evaluate_query
from ccl.eval.ovs3d import OvsFrameLabels, evaluate_view
from ccl.query import QueryConfig, TextEmbeddings, prototype_relevance, relevance_maps, scale_sets
from ccl.runlog import progress

log = logging.getLogger(__name__)

PROTOCOLS = ("lerf_ovs", "3dovs")


@dataclass(frozen=True)
class QueryRow:
    """One row of queries.csv (docs/contracts.md, "Evaluation")."""

    scene: str
    variant: str
    seed: int
    frame: str  # camera / image stem
    query: str
    protocol: str  # lerf_ovs | 3dovs
    mode: str  # relevance mode: paper | langsplat
    scales: str  # candidate scales, "+"-joined ("sp+wp", "all")
    scale: str  # scale chosen for the IoU (highest smoothed peak)
    loc_scale: str  # scale chosen for localization ("" for 3dovs)
    iou: float
    loc_hit: float  # 1.0 / 0.0; NaN for 3dovs (no boxes)
    threshold: float  # eval.mask_thresh on the normalised map; NaN for 3dovs (argmax, no threshold)
    # The scales of `scales` whose codebook had degenerate supervision (a pair term of the variant had
    # no pairs and was off: ccl.codebook.supervision), "+"-joined; "" = none. evaluate_scene fills it
    # from the codebooks; the evaluators, which see no codebook file, leave it "".
    supervision_degenerate_scales: str = ""


CSV_COLUMNS = tuple(f.name for f in fields(QueryRow))


def rows_to_csv(rows: Sequence[QueryRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in astuple(r)])
    return buf.getvalue()


class FieldSource(Protocol):
    """What evaluation needs from the trained language fields of one variant."""

    scales: tuple[str, ...]

    def prototypes(self, scale: str) -> np.ndarray:  # [N, D] float32
        ...

    def class_map(self, scale: str, camera) -> np.ndarray:  # [H, W] int, −1 = no class
        ...


def resolve_queries(categories: Sequence[str], configured: Sequence[str], *, where: str) -> tuple[str, ...]:
    """The queries to evaluate: the label categories, or eval.queries ∩ categories with warnings.

    LERF-OVS's queries are its label categories. With `eval.queries` set, a label category no query
    names is not evaluated, and a query no label names has no ground truth: both are listed in a
    warning (never a silent row of zeros).
    """
    cats = list(dict.fromkeys(categories))
    if not configured:
        return tuple(cats)
    configured = list(configured)
    unnamed = [c for c in cats if c not in configured]
    unknown = [q for q in configured if q not in cats]
    if unnamed:
        warnings.warn(
            f"{where}: label categories no query names are not evaluated: {unnamed} "
            "(eval.queries lists the queries; leave it empty to evaluate every label category)",
            LabelWarning,
            stacklevel=2,
        )
    if unknown:
        warnings.warn(
            f"{where}: queries no label file names have no ground truth and are skipped: {unknown}",
            LabelWarning,
            stacklevel=2,
        )
    kept = tuple(q for q in configured if q in cats)
    if not kept:
        raise ValueError(
            f"{where}: none of eval.queries {configured} is a label category; categories: {cats}"
        )
    return kept


def aspect_matches(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> bool:
    """Same view at another resolution: one scale factor for both sides, up to one source pixel of
    rounding on each (an odd side downscaled by 2 is floored: 731 → 365)."""
    (sh, sw), (dh, dw) = src_hw, dst_hw
    fh, fw = dh / sh, dw / sw
    return abs(fh - fw) <= max(fh, fw) * (1.0 / sh + 1.0 / sw)


def to_label_size(maps: np.ndarray, label_hw: tuple[int, int], *, where: str) -> np.ndarray:
    """Relevance maps [..., h, w] -> [..., H, W] at the label's size (bilinear), or ValueError."""
    h, w = maps.shape[-2:]
    if (h, w) == tuple(label_hw):
        return maps
    if not aspect_matches((h, w), label_hw):
        raise ValueError(
            f"{where}: the label is {label_hw[1]}x{label_hw[0]} (w x h) but the render is {w}x{h}: the aspect "
            "ratios differ, so the label cannot be of this view at another resolution; check that the label "
            "folder belongs to this scene and that the images were not cropped"
        )
    import cv2

    flat = maps.reshape(-1, h, w)
    out = np.stack([cv2.resize(m, (label_hw[1], label_hw[0]), interpolation=cv2.INTER_LINEAR) for m in flat])
    return out.reshape(*maps.shape[:-2], *label_hw)


def camera_by_name(cameras: Sequence, names: Sequence[str], *, where: str) -> dict:
    by_name = {c.name: c for c in cameras}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(
            f"{where}: label frames {missing[:8]} have no camera of that name in the scene "
            f"(cameras: {list(by_name)[:5]}…); labels are matched to training views by image stem "
            "(frame_00060.json ↔ image frame_00060.*)"
        )
    return {n: by_name[n] for n in names}


# (frame, camera, scale set, [(query, result, ground-truth mask)]) for figures
FigureCallback = Callable[[str, object, tuple[str, ...], list[tuple[str, QueryResult, np.ndarray]]], None]


def evaluate_lerf_ovs(
    labels: Sequence[FrameLabels],
    cameras: Sequence,
    source: FieldSource,
    emb: TextEmbeddings,
    *,
    scene: str,
    variant: str,
    seed: int,
    query_cfg: QueryConfig,
    eval_cfg: EvalConfig,
    on_frame: FigureCallback | None = None,
) -> list[QueryRow]:
    """LangSplat's LERF-OVS protocol on every label frame, for every scale set of `source`."""
    cams = camera_by_name(cameras, [f.frame for f in labels], where=f"scene {scene!r}")
    qindex = {q: i for i, q in enumerate(emb.queries)}
    proto_rel = {s: prototype_relevance(source.prototypes(s), emb, cfg=query_cfg) for s in source.scales}
    sets = scale_sets(source.scales)
    rows: list[QueryRow] = []
    for fl in progress(labels, desc=f"evaluate {scene}/{variant}", total=len(labels), unit="frame"):
        cam = cams[fl.frame]
        frame_queries = [q for q in fl.categories if q in qindex]  # the label file's order, as LangSplat
        if not frame_queries:
            log.info("%s: no evaluated query in this frame; skipped", fl.path)
            continue
        cols = [qindex[q] for q in frame_queries]
        maps = {}
        for s in source.scales:
            rel = relevance_maps(source.class_map(s, cam), proto_rel[s])[cols]  # [Qf, h, w]
            maps[s] = to_label_size(rel, (fl.height, fl.width), where=str(fl.path))
        for scale_set in sets:
            stack = np.stack([maps[s] for s in scale_set])  # [L, Qf, H, W]
            results = []
            for k, q in enumerate(frame_queries):
                cat = fl.categories[q]
                res = evaluate_query(stack[:, k], cat.mask, cat.boxes_xyxy, mask_thresh=eval_cfg.mask_thresh)
                results.append((q, res, cat.mask))
                rows.append(
                    QueryRow(
                        scene,
                        variant,
                        int(seed),
                        fl.frame,
                        q,
                        "lerf_ovs",
                        query_cfg.mode,
                        "+".join(scale_set),
                        scale_set[res.scale_index],
                        scale_set[res.loc_scale_index],
                        res.iou,
                        float(res.loc_hit),
                        float(eval_cfg.mask_thresh),
                    )
                )
            if on_frame is not None and scale_set == sets[0]:
                on_frame(fl.frame, cam, scale_set, results)
    return rows


def evaluate_3dovs(
    views: Sequence[OvsFrameLabels],
    cameras: Sequence,
    source: FieldSource,
    emb: TextEmbeddings,
    *,
    scene: str,
    variant: str,
    seed: int,
    query_cfg: QueryConfig,
) -> list[QueryRow]:
    """3D-OVS: per-pixel argmax over the scene's classes; a row per (view, class)."""
    cams = camera_by_name(cameras, [v.frame for v in views], where=f"scene {scene!r}")
    proto_rel = {s: prototype_relevance(source.prototypes(s), emb, cfg=query_cfg) for s in source.scales}
    rows: list[QueryRow] = []
    for v in progress(views, desc=f"evaluate {scene}/{variant}", total=len(views), unit="frame"):
        cam = cams[v.frame]
        maps = {s: relevance_maps(source.class_map(s, cam), proto_rel[s]) for s in source.scales}
        for s, m in maps.items():
            if m.shape[-2:] != v.masks.shape[-2:]:
                raise ValueError(
                    f"{v.path}: masks are {v.masks.shape[-1]}x{v.masks.shape[-2]} but the {s} render is "
                    f"{m.shape[-1]}x{m.shape[-2]} (w x h)"
                )
        for scale_set in scale_sets(source.scales):
            res = evaluate_view(np.stack([maps[s] for s in scale_set]), v.masks)
            for c, q in enumerate(emb.queries):
                rows.append(
                    QueryRow(
                        scene,
                        variant,
                        int(seed),
                        v.frame,
                        q,
                        "3dovs",
                        query_cfg.mode,
                        "+".join(scale_set),
                        scale_set[int(res.scale_index[c])],
                        "",
                        float(res.ious[c]),
                        float("nan"),
                        float("nan"),
                    )
                )
    return rows


def summarize(rows: Sequence[QueryRow]) -> dict:
    """mIoU and localization accuracy per scale set (the scene's numbers, for logs and summary.json)."""
    out: dict[str, dict] = {}
    for s in dict.fromkeys(r.scales for r in rows):
        sel = [r for r in rows if r.scales == s]
        hits = [r.loc_hit for r in sel if not math.isnan(r.loc_hit)]
        out[s] = {
            "n_pairs": len(sel),
            "miou": float(np.mean([r.iou for r in sel])) if sel else float("nan"),
            "loc_acc": float(np.mean(hits)) if hits else None,
            "scale_counts": {k: sum(r.scale == k for r in sel) for k in dict.fromkeys(r.scale for r in sel)},
        }
    return out
