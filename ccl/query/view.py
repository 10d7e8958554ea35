"""Queries on a results/{scene} folder: a 2D overlay of one view (`ccl query`) and the Gaussians chosen
by text in 3D (`ccl query3d`, the paper's appendix D: no rasterization; each Gaussian's own 8-dim
feature is decoded by the MLP, its prototype compared with the text, thresholded)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccl.query.config import QueryConfig
from ccl.query.fields import SCALE_ORDER, LanguageFieldSource, scene_fields
from ccl.query.ops import choose_scale, validate_queries
from ccl.query.relevance import (
    GaussianSelection,
    prototype_relevance,
    relevance_maps,
    select_gaussians,
    text_embeddings,
)
from ccl.results_tree import RunFolders, as_run

log = logging.getLogger(__name__)


def pick_camera(cameras: Sequence[Any], frame: str | int) -> Any:
    """A camera by name ("frame_00060") or by the number in its name (60 ↔ frame_00060)."""
    frame = str(frame)
    for c in cameras:
        if c.name == frame:
            return c
    if frame.isdigit():
        hits = [c for c in cameras if (m := re.search(r"(\d+)$", c.name)) and int(m.group(1)) == int(frame)]
        if len(hits) == 1:
            return hits[0]
    names = [c.name for c in cameras]
    raise ValueError(
        f"--frame {frame}: no such view; give a frame name or the number in it "
        f"(views: {names[:3]} … {names[-2:]}, {len(names)} in all)"
    )


def _scene_and_manifest(scene_dir: Path, scene_cfg: Any):
    from ccl.scene import load_scene_from_manifest, read_manifest

    manifest = scene_dir / "scene.json"
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{manifest}: not found; give a results/<scene> folder the workflow has written"
        )
    return read_manifest(manifest), load_scene_from_manifest(manifest, cfg=scene_cfg)


def language_source(
    run: RunFolders | str | os.PathLike,
    variant: str,
    *,
    scale: str = "auto",
    scene: str | None = None,
    device: str = "cpu",
) -> LanguageFieldSource:
    """The variant's language fields (and their codebooks) of a run (ccl.results_tree: a RunFolders, or a
    folder naming one) that `scale` picks.

    `auto`: every scale but `all` (or `all` when it is the only one), each query then read at the one
    whose smoothed relevance peaks highest; a scale name: that field alone (ValueError if there is none).
    `scene` (the manifest's name) makes each field's header checked against it.
    """
    fields, codebooks = scene_fields(run, variant)
    have = sorted(fields, key=lambda s: SCALE_ORDER.index(s) if s in SCALE_ORDER else len(SCALE_ORDER))
    if scale == "auto":
        scales = tuple(s for s in have if s != "all") or tuple(have)
    elif scale in fields:
        scales = (scale,)
    else:
        raise ValueError(f"--scale {scale}: no language field of that scale; have {have}")
    return LanguageFieldSource(
        {s: fields[s] for s in scales}, {s: codebooks[s] for s in scales}, scene=scene, device=device
    )


@dataclass(frozen=True)
class ViewRelevance:
    """The relevance of text queries in one view, at every scale of a LanguageFieldSource."""

    queries: tuple[str, ...]
    scales: tuple[str, ...]  # the source's, finest first
    maps: np.ndarray  # [L, Q, H, W] float32 in [0, 1], L = len(scales), Q = len(queries)
    chosen: tuple[int, ...]  # [Q] index into scales each query is read at (highest smoothed peak)

    def heat(self, k: int) -> np.ndarray:
        """Query k's map at its chosen scale, [H, W] float32."""
        return self.maps[self.chosen[k], k]


def view_relevance(
    source: LanguageFieldSource,
    camera: Any,
    queries: Sequence[str],
    *,
    query_cfg: QueryConfig,
    features_cfg: Any,
    device: str = "cpu",
) -> ViewRelevance:
    """Each query's relevance map in `camera`'s view, per scale, and the scale each is read at.

    The decoded class map of every scale with each prototype's relevance painted on it; in paper mode
    the softmax runs over the queries and the negatives (`query.negatives`), so a pixel that matches
    none of the queries is not forced onto one of them. `ccl query` and `ccl render` draw these.
    """
    queries = tuple(validate_queries(queries, where="query text"))
    emb = text_embeddings(queries, cfg=query_cfg, features_cfg=features_cfg, device=device)
    maps = np.stack(
        [
            relevance_maps(
                source.class_map(s, camera),
                prototype_relevance(source.prototypes(s), emb, cfg=query_cfg, with_negatives=True),
            )
            for s in source.scales
        ]
    )  # [L, Q, H, W]
    chosen = tuple(choose_scale(maps[:, k]) if len(source.scales) > 1 else 0 for k in range(len(queries)))
    return ViewRelevance(queries, source.scales, maps, chosen)


@dataclass(frozen=True)
class ImageQueryResult:
    path: Path
    frame: str
    scales: dict[str, str]  # query -> scale chosen
    selected_fraction: dict[str, float]  # query -> share of pixels above the threshold


FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")  # what `query_image` writes (matplotlib)
PLY_SUFFIXES = (".ply",)


def check_out_suffix(out: str | os.PathLike, accepted: Sequence[str]) -> Path:
    """`out` if its suffix is one of `accepted`, else ValueError naming them (before any work)."""
    out = Path(out)
    if out.suffix.lower() not in accepted:
        got = f"suffix {out.suffix!r}" if out.suffix else "no suffix"
        raise ValueError(
            f"-o {out}: {got}; the file type comes from the suffix, accepted: {', '.join(accepted)}"
        )
    return out


def query_image(
    run: RunFolders | str | os.PathLike,
    queries: Sequence[str],
    *,
    frame: str | int,
    out: str | os.PathLike,
    variant: str = "full",
    scale: str = "auto",
    query_cfg: QueryConfig,
    features_cfg: Any,
    scene_cfg: Any,
    device: str = "cpu",
) -> ImageQueryResult:
    """Relevance of each query in one view (`view_relevance`: with the negatives in paper mode, each query
    at its own scale under `auto`), drawn over the image with the pixels above the threshold outlined."""
    from ccl.query.figures import frame_figure
    from ccl.scene import load_image

    check_out_suffix(out, FIGURE_SUFFIXES)
    queries = validate_queries(queries, where="query text")
    run = as_run(run)
    m, scene = _scene_and_manifest(run.scene_dir, scene_cfg)
    source = language_source(run, variant, scale=scale, scene=m.name, device=device)
    cam = pick_camera(scene.cameras, frame)
    rel = view_relevance(source, cam, queries, query_cfg=query_cfg, features_cfg=features_cfg, device=device)
    image = load_image(cam, cfg=scene_cfg)
    panels, scales, frac = [], {}, {}
    for k, q in enumerate(rel.queries):
        scale_k, heat = rel.scales[rel.chosen[k]], rel.heat(k)
        mask = heat > query_cfg.threshold
        scales[q], frac[q] = scale_k, float(mask.mean())
        subtitle = f"{scale_k} · max {heat.max():.2f} · {100 * frac[q]:.1f}% > {query_cfg.threshold:g}"
        panels.append((q, heat, mask, None, subtitle))
        log.info("%s: scale %s, %.1f%% of pixels above %.2f", q, scale_k, 100 * frac[q], query_cfg.threshold)
    path = frame_figure(out, image, panels, title=f"{m.name} · {variant} · {cam.name} ({query_cfg.mode})")
    return ImageQueryResult(path, cam.name, scales, frac)


@dataclass(frozen=True)
class GaussianQueryResult:
    path: Path
    scale: str
    n_selected: int
    n_gaussians: int
    max_relevance: float
    format: str = "points"


def decode_gaussian_classes(field: Any) -> np.ndarray:
    """Each Gaussian's own feature [G, F] through the decoder: the prototype index it picks [G]."""
    import torch

    with torch.no_grad():
        return field.decoder(field.features).argmax(dim=-1).cpu().numpy()


def gaussian_colours(gaussians: Any) -> np.ndarray:
    """Degree-0 (view-independent) colour of every Gaussian, [G, 3] uint8."""
    from ccl.splat.model import SH_C0

    sh0 = gaussians.sh0.detach().cpu().numpy()[:, 0, :]
    return np.clip(np.rint((SH_C0 * sh0 + 0.5) * 255), 0, 255).astype(np.uint8)


# `ccl query3d --format`: what the PLY holds
PLY_FORMATS = {
    "points": "x y z, red green blue: a point per Gaussian (MeshLab, CloudCompare, Open3D, Blender)",
    "3dgs": "the Gaussians themselves in 3DGS's layout (SuperSplat and every 3DGS viewer)",
}
CONTEXT_GREY = 60  # colour (uint8) of the Gaussians written around a selection with `context`


def check_ply_format(format: str) -> str:
    if format not in PLY_FORMATS:
        raise ValueError(
            f"--format {format}: unknown; accepted: "
            + "; ".join(f"{k} ({v})" for k, v in PLY_FORMATS.items())
        )
    return format


@dataclass(frozen=True, eq=False)
class ChosenGaussians:
    """Appendix D's answer on a LanguageFieldSource: the scale read and the Gaussians chosen there."""

    scale: str  # the scale whose Gaussians reach the highest relevance
    field: Any  # the LanguageField of that scale
    selection: GaussianSelection
    visible: np.ndarray  # [G] bool, opacity >= min_opacity
    chosen: np.ndarray  # [G] bool, selected and visible
    max_relevance: float  # highest relevance of any Gaussian at that scale

    @property
    def n_chosen(self) -> int:
        return int(self.chosen.sum())


def choose_gaussians(
    source: LanguageFieldSource, emb: Any, *, query_cfg: QueryConfig, min_opacity: float = 0.0
) -> ChosenGaussians:
    """The Gaussians whose decoded prototype is relevant to the embedded text (`emb`), at the scale of
    `source` whose Gaussians reach the highest relevance; those below `min_opacity` left out."""
    best = None
    for s in source.scales:
        f = source.language_field(s)
        sel = select_gaussians(decode_gaussian_classes(f), source.prototypes(s), emb, cfg=query_cfg)
        peak = float(sel.relevance.max()) if sel.relevance.size else 0.0
        if best is None or peak > best[2]:
            best = (s, f, peak, sel)
    assert best is not None
    s, f, peak, sel = best
    opacity = 1.0 / (1.0 + np.exp(-f.gaussians.opacity_logits.detach().cpu().numpy()))
    visible = opacity >= min_opacity
    return ChosenGaussians(s, f, sel, visible, sel.selected & visible, peak)


def write_chosen_gaussians(
    out: str | os.PathLike,
    chosen: ChosenGaussians,
    *,
    format: str = "points",
    context: bool = False,
    made_by: dict[str, Any] | None = None,
) -> Path:
    """The chosen Gaussians as a PLY (`PLY_FORMATS`), atomically. With `context` the other visible
    Gaussians are written too, in dark grey (3dgs: their SH set to that grey, view-independent).

    3dgs refuses an empty selection (a viewer would open nothing), naming the highest relevance and the
    threshold to lower; points writes it (with context: the scene alone) after a warning.
    """
    from ccl.io import atomic_path
    from ccl.scene.ply import write_ply_points

    check_ply_format(format)
    gaussians = chosen.field.gaussians
    keep = chosen.visible if context else chosen.chosen
    if not chosen.chosen.any():
        what = (
            f"no Gaussian above threshold {chosen.selection.threshold:.2f} (highest relevance "
            f"{chosen.max_relevance:.3f} at scale {chosen.scale}) for {list(chosen.selection.queries)}"
        )
        if format == "3dgs":
            raise ValueError(
                f"{out}: {what}; nothing was written: lower --threshold below {chosen.max_relevance:.3f} "
                "or try other words"
            )
        log.warning("query3d %s; the PLY has %s", what, "only context points" if context else "no points")
    if format == "points":
        rgb = gaussian_colours(gaussians)
        if context:
            rgb = np.where(chosen.chosen[:, None], rgb, np.uint8(CONTEXT_GREY))
        xyz = gaussians.means.detach().cpu().numpy()
        with atomic_path(out) as tmp:
            write_ply_points(tmp, xyz[keep], rgb[keep], binary=True)
        return Path(out)
    from ccl.io.gaussians_ply import write_gaussians_ply

    if context:
        import torch

        from ccl.splat.model import Gaussians, rgb_to_sh0

        dim = ~torch.from_numpy(chosen.chosen)
        grey = torch.from_numpy(rgb_to_sh0(np.full((1, 3), CONTEXT_GREY / 255.0)))  # [1, 1, 3]
        sh0, shn = gaussians.sh0.detach().clone(), gaussians.shN.detach().clone()
        sh0[dim] = grey.to(sh0)
        shn[dim] = 0.0
        gaussians = Gaussians(
            gaussians.means, gaussians.quats, gaussians.log_scales, gaussians.opacity_logits, sh0, shn
        )
    return write_gaussians_ply(out, gaussians, keep=keep, made_by=made_by)


def query_gaussians(
    run: RunFolders | str | os.PathLike,
    queries: Sequence[str],
    *,
    out: str | os.PathLike,
    variant: str = "full",
    scale: str = "auto",
    query_cfg: QueryConfig,
    features_cfg: Any,
    min_opacity: float = 0.0,
    context: bool = False,
    format: str = "points",
    device: str = "cpu",
) -> GaussianQueryResult:
    """Appendix D: the Gaussians whose decoded prototype is relevant to the text, written as a PLY:
    `format` "points" (x y z float, red green blue uchar: MeshLab, CloudCompare, Open3D and Blender open
    it) or "3dgs" (the Gaussians in 3DGS's layout, ccl.io.gaussians_ply: SuperSplat opens it).

    `auto` scale: the scale whose Gaussians reach the highest relevance. With `context`, the other
    Gaussians are written too, in dark grey, so the selection is seen in its scene.
    """
    from ccl.io.provenance import file_record

    check_out_suffix(out, PLY_SUFFIXES)
    check_ply_format(format)
    queries = validate_queries(queries, where="query text")
    source = language_source(run, variant, scale=scale, device=device)
    emb = text_embeddings(queries, cfg=query_cfg, features_cfg=features_cfg, device=device)
    chosen = choose_gaussians(source, emb, query_cfg=query_cfg, min_opacity=min_opacity)
    made_by = None  # the points layout has no place for it
    if format == "3dgs":
        made_by = {
            "command": "ccl query3d", "queries": list(queries), "variant": variant, "scale": chosen.scale,
            "mode": query_cfg.mode, "threshold": query_cfg.threshold, "min_opacity": min_opacity,
            "context": context, "field": file_record(source.fields[chosen.scale]),
        }  # fmt: skip
    path = write_chosen_gaussians(out, chosen, format=format, context=context, made_by=made_by)
    n = len(chosen.chosen)
    log.info(
        "query3d %s: %d of %d Gaussians (scale %s) -> %s",
        list(queries),
        chosen.n_chosen,
        n,
        chosen.scale,
        out,
    )
    return GaussianQueryResult(path, chosen.scale, chosen.n_chosen, n, chosen.max_relevance, format)
