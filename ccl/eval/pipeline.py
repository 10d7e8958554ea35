"""Rule evaluate (and `ccl evaluate`): a variant's language fields → results/{scene}/seed{N}/eval/{variant}/.

Writes `queries.csv` (one row per (frame, query) and scale set, docs/contracts.md "Evaluation"),
`summary.json` (mIoU and localization accuracy per scale set, with the parameters and the text model)
and `figures/{frame}.png` (query overlays of the first `eval.n_figures` evaluated frames).
Every input is checked before the text encoder or a field is loaded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ccl.config import as_params, config_source
from ccl.eval.config import EvalConfig
from ccl.eval.figures import frame_figure, resize_image
from ccl.eval.labels import read_lerf_label_dir
from ccl.eval.ovs3d import frame_of_index, read_3dovs_view, read_classes, view_folders
from ccl.eval.run import (
    PROTOCOLS,
    QueryRow,
    evaluate_3dovs,
    evaluate_lerf_ovs,
    resolve_queries,
    rows_to_csv,
    summarize,
)
from ccl.io import atomic_write_json, atomic_write_text
from ccl.query import QueryConfig, text_embeddings
from ccl.query.fields import LanguageFieldSource

log = logging.getLogger(__name__)


def text_model_info(features_cfg: Any) -> dict:
    """What encoded the queries, for summary.json (backend, model name, `simulated`)."""
    info = {k: v for k, v in as_params(features_cfg).items() if k in ("backend", "model_name", "pretrained")}
    info["simulated"] = info.get("backend") == "sim"
    return info


def codebook_supervision(codebooks: Mapping[str, str | os.PathLike]) -> dict[str, dict]:
    """Per scale, whether its codebook's fit had degenerate supervision (`degenerate`: True, False, or
    None = unknown; `terms_without_pairs`, `why`, `likely_cause`; ccl.codebook.supervision), from the
    files' attributes."""
    from ccl.codebook.supervision import read_codebook_supervision

    out = {s: read_codebook_supervision(p) for s, p in codebooks.items()}
    for record in out.values():
        if record["degenerate"] is None:
            log.warning("%s; the tables cannot mark it", record["why"])
    return out


def mark_degenerate_supervision(rows: Sequence[QueryRow], supervision: Mapping[str, dict]) -> list[QueryRow]:
    """`rows` with `supervision_degenerate_scales`: the scales of each row's scale set whose codebook
    had degenerate supervision (`supervision` from `codebook_supervision`)."""
    degenerate = {s for s, r in supervision.items() if r["degenerate"] is True}
    return [
        dataclasses.replace(
            r, supervision_degenerate_scales="+".join(s for s in r.scales.split("+") if s in degenerate)
        )
        for r in rows
    ]


def evaluate_scene(
    out_dir: str | os.PathLike,
    *,
    manifest: str | os.PathLike,
    fields: Mapping[str, str | os.PathLike],
    codebooks: Mapping[str, str | os.PathLike],
    variant: str,
    seed: int,
    query_cfg: QueryConfig,
    eval_cfg: EvalConfig,
    features_cfg: Any,
    scene_cfg: Any,
    device: str = "cpu",
) -> dict:
    """Evaluate one variant of one scene with the scene's protocol; returns the summary."""
    from ccl.scene import load_image, load_scene_from_manifest, read_manifest

    out_dir = Path(out_dir)
    m = read_manifest(manifest)
    if m.protocol not in PROTOCOLS:
        raise ValueError(
            f"{m.path}: scene {m.name!r} has protocol {m.protocol!r}; evaluation needs one of {list(PROTOCOLS)} "
            "(the workflow does not evaluate `protocol: none` scenes)"
        )
    if m.labels is None:
        raise ValueError(
            f"{m.path}: scene {m.name!r} has protocol {m.protocol} but no labels folder; set `labels:` in its "
            f"entry of {config_source()}"
        )
    scene = load_scene_from_manifest(manifest, cfg=scene_cfg)
    if any((Path(manifest).parent / "features").glob("*.h5")):  # a workflow results folder: check by them
        from ccl.query.fields import check_text_encoder_agrees, scene_text_encoder

        check_text_encoder_agrees(
            scene_text_encoder(Path(manifest).parent), as_params(features_cfg),
            scene_dir=Path(manifest).parent, config="the evaluation's features settings (config: features)",
        )  # fmt: skip
    source = LanguageFieldSource(
        {s: Path(p) for s, p in fields.items()}, {s: Path(p) for s, p in codebooks.items()},
        scene=m.name, device=device,
    )  # fmt: skip
    supervision = codebook_supervision(codebooks)

    where = f"{m.labels}"
    if m.protocol == "lerf_ovs":
        labels = read_lerf_label_dir(m.labels)
        categories = [c for fl in labels for c in fl.categories]
        queries = resolve_queries(categories, eval_cfg.queries, where=where)
        # cameras are checked by name before the encoder loads
        from ccl.eval.run import camera_by_name

        camera_by_name(scene.cameras, [fl.frame for fl in labels], where=f"scene {m.name!r}")
    else:
        classes = read_classes(m.labels)
        queries = resolve_queries(classes, eval_cfg.queries, where=where)
        image_names = [c.image_path.name for c in scene.cameras]
        by_name = {c.name: c for c in scene.cameras}
        views = []
        for index, folder in view_folders(m.labels):
            frame = frame_of_index(index, image_names, where=str(folder))
            cam = by_name[frame]
            views.append(read_3dovs_view(folder, index, frame, tuple(queries), (cam.width, cam.height)))

    log.info("scene %s, variant %s: %d queries %s", m.name, variant, len(queries), list(queries))
    emb = text_embeddings(queries, cfg=query_cfg, features_cfg=features_cfg, device=device)

    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    drawn: list[str] = []

    def on_frame(frame, cam, scale_set, results):
        if len(drawn) >= eval_cfg.n_figures:
            return
        hw = results[0][1].mask.shape
        image = resize_image(load_image(cam, cfg=scene_cfg), hw)
        panels = [
            (q, r.normalised, r.mask, gt, f"IoU {r.iou:.2f} · {scale_set[r.scale_index]}")
            for q, r, gt in results
        ]
        frame_figure(
            fig_dir / f"{frame}.png",
            image,
            panels,
            title=f"{m.name} · {variant} · {frame} ({query_cfg.mode})",
        )
        drawn.append(frame)

    common = dict(scene=m.name, variant=variant, seed=seed, query_cfg=query_cfg)
    if m.protocol == "lerf_ovs":
        rows = evaluate_lerf_ovs(
            labels, scene.cameras, source, emb, eval_cfg=eval_cfg, on_frame=on_frame, **common
        )
    else:
        rows = evaluate_3dovs(views, scene.cameras, source, emb, **common)
    if not rows:
        raise ValueError(f"{where}: no (frame, query) pair to evaluate; check the labels and eval.queries")
    rows = mark_degenerate_supervision(rows, supervision)
    degenerate = [s for s, r in supervision.items() if r["degenerate"] is True]
    if degenerate:
        log.warning(
            "%s/%s: the codebooks of scales %s had degenerate supervision (their pair terms had no pairs and "
            "were off); their rows carry supervision_degenerate_scales and the tables mark the variant",
            m.name, variant, "+".join(degenerate),
        )  # fmt: skip

    summary = {
        "scene": m.name,
        "variant": variant,
        "seed": int(seed),
        "protocol": m.protocol,
        "mode": query_cfg.mode,
        "queries": list(queries),
        "scales": list(source.scales),
        "results": summarize(rows),
        "supervision": supervision,
        "params": {"query": as_params(query_cfg), "eval": as_params(eval_cfg)},
        "text_model": text_model_info(features_cfg),
        "figures": [f"figures/{f}.png" for f in drawn],
    }
    for s, r in summary["results"].items():
        log.info(
            "%s/%s [%s]: mIoU %.4f over %d pairs, localization %s",
            m.name, variant, s, r["miou"], r["n_pairs"],
            "n/a" if r["loc_acc"] is None else f"{r['loc_acc']:.4f}",
        )  # fmt: skip
    atomic_write_json(out_dir / "summary.json", summary)
    atomic_write_text(out_dir / "queries.csv", rows_to_csv(rows))
    return summary
