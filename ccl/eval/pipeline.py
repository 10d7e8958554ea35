"""Rule evaluate (and `ccl evaluate`): a variant's language fields → results/{scene}/eval/{variant}/.

Writes `queries.csv` (one row per (frame, query) and scale set, docs/contracts.md "Evaluation"),
`summary.json` (mIoU and localization accuracy per scale set, with the parameters and the text model)
and `figures/{frame}.png` (query overlays of the first `eval.n_figures` evaluated frames).
Every input is checked before the text encoder or a field is loaded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ccl.config import as_params
from ccl.eval.config import EvalConfig
from ccl.eval.figures import frame_figure, resize_image
from ccl.eval.labels import read_lerf_label_dir
from ccl.eval.ovs3d import frame_of_index, read_3dovs_view, read_classes, view_folders
from ccl.eval.run import (
    PROTOCOLS,
    evaluate_3dovs,
    evaluate_lerf_ovs,
    resolve_queries,
    rows_to_csv,
    summarize,
)
from ccl.io import atomic_write_json, atomic_write_text
from ccl.query import QueryConfig, text_embeddings

log = logging.getLogger(__name__)


@dataclass
class LanguageFieldSource:
    """Class maps and prototypes of one variant's language fields, one per scale (loaded lazily)."""

    fields: Mapping[str, Path]  # scale -> results/{scene}/gaussians/{variant}/{scale}.safetensors
    codebooks: Mapping[str, Path]  # scale -> results/{scene}/codebook/{variant}/{scale}.h5
    scene: str | None = None
    device: str = "cpu"
    _fields: dict[str, Any] = field(default_factory=dict, repr=False)
    _protos: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if set(self.fields) != set(self.codebooks):
            raise ValueError(
                f"scales of the language fields {sorted(self.fields)} and codebooks {sorted(self.codebooks)} differ"
            )
        for p in [*self.fields.values(), *self.codebooks.values()]:
            if not Path(p).is_file():
                raise FileNotFoundError(f"{p}: not found (an input of evaluation; run the workflow up to it)")

    @property
    def scales(self) -> tuple[str, ...]:
        order = ("sp", "wp", "all")
        return tuple(sorted(self.fields, key=lambda s: order.index(s) if s in order else len(order)))

    def prototypes(self, scale: str) -> np.ndarray:
        if scale not in self._protos:
            self._protos[scale] = read_prototypes(self.codebooks[scale])
        return self._protos[scale]

    def language_field(self, scale: str):
        if scale not in self._fields:
            from ccl.splat.checkpoint import load_language_field

            f = load_language_field(self.fields[scale], scene=self.scene)
            n = self.prototypes(scale).shape[0]
            if f.n_classes != n:
                raise ValueError(
                    f"{self.fields[scale]} decodes into {f.n_classes} classes but {self.codebooks[scale]} has "
                    f"{n} prototypes: they are of different runs; rerun the workflow"
                )
            self._fields[scale] = _to_device(f, self.device)
        return self._fields[scale]

    def class_map(self, scale: str, camera) -> np.ndarray:
        from ccl.splat.render import render_class_map

        return render_class_map(self.language_field(scale), camera)


def _to_device(f: Any, device: str) -> Any:
    if device == "cpu":
        return f
    from ccl.splat.checkpoint import LanguageField

    return LanguageField(f.gaussians.to(device), f.features.to(device), f.decoder.to(device), f.header)


def read_prototypes(path: str | os.PathLike) -> np.ndarray:
    """The codebook's `prototypes` [N, D] float32 (docs/contracts.md, "Codebook")."""
    from ccl.io.h5 import open_h5_for_read

    with open_h5_for_read(path, kind="codebook") as f:
        if "prototypes" not in f:
            raise ValueError(f"{path}: codebook file has no 'prototypes' dataset")
        return np.asarray(f["prototypes"][()], dtype=np.float32)


def text_model_info(features_cfg: Any) -> dict:
    """What encoded the queries, for summary.json (backend, model name, `simulated`)."""
    info = {k: v for k, v in as_params(features_cfg).items() if k in ("backend", "model", "pretrained")}
    info["simulated"] = info.get("backend") == "sim"
    return info


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
            "config.yaml entry"
        )
    scene = load_scene_from_manifest(manifest, cfg=scene_cfg)
    source = LanguageFieldSource(
        {s: Path(p) for s, p in fields.items()}, {s: Path(p) for s, p in codebooks.items()},
        scene=m.name, device=device,
    )  # fmt: skip

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

    summary = {
        "scene": m.name,
        "variant": variant,
        "seed": int(seed),
        "protocol": m.protocol,
        "mode": query_cfg.mode,
        "queries": list(queries),
        "scales": list(source.scales),
        "results": summarize(rows),
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
