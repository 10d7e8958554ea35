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
from ccl.query.relevance import prototype_relevance, relevance_maps, select_gaussians, text_embeddings

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
    scene_dir: str | os.PathLike,
    variant: str,
    *,
    scale: str = "auto",
    scene: str | None = None,
    device: str = "cpu",
) -> LanguageFieldSource:
    """The variant's language fields (and their codebooks) of a results/{scene} folder that `scale` picks.

    `auto`: every scale but `all` (or `all` when it is the only one), each query then read at the one
    whose smoothed relevance peaks highest; a scale name: that field alone (ValueError if there is none).
    `scene` (the manifest's name) makes each field's header checked against it.
    """
    fields, codebooks = scene_fields(Path(scene_dir), variant)
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
    scene_dir: str | os.PathLike,
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
    m, scene = _scene_and_manifest(Path(scene_dir), scene_cfg)
    source = language_source(scene_dir, variant, scale=scale, scene=m.name, device=device)
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


def query_gaussians(
    scene_dir: str | os.PathLike,
    queries: Sequence[str],
    *,
    out: str | os.PathLike,
    variant: str = "full",
    scale: str = "auto",
    query_cfg: QueryConfig,
    features_cfg: Any,
    min_opacity: float = 0.0,
    context: bool = False,
    device: str = "cpu",
) -> GaussianQueryResult:
    """Appendix D: the Gaussians whose decoded prototype is relevant to the text, written as a PLY
    (x y z float, red green blue uchar: MeshLab, CloudCompare, Open3D and Blender open it).

    `auto` scale: the scale whose Gaussians reach the highest relevance. With `context`, the other
    Gaussians are written too, in dark grey, so the selection is seen in its scene.
    """
    from ccl.io import atomic_path
    from ccl.scene.ply import write_ply_points

    check_out_suffix(out, PLY_SUFFIXES)
    queries = validate_queries(queries, where="query text")
    source = language_source(scene_dir, variant, scale=scale, device=device)
    emb = text_embeddings(queries, cfg=query_cfg, features_cfg=features_cfg, device=device)
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
    chosen = sel.selected & visible
    xyz = f.gaussians.means.detach().cpu().numpy()
    rgb = gaussian_colours(f.gaussians)
    if context:
        rgb = np.where(chosen[:, None], rgb, np.uint8(60))
        keep = visible
    else:
        keep = chosen
    if not chosen.any():
        log.warning(
            "query3d %s: no Gaussian above threshold %.2f (highest relevance %.3f at scale %s); the PLY has %s",
            list(queries),
            query_cfg.threshold,
            peak,
            s,
            "only context points" if context else "no points",
        )
    with atomic_path(out) as tmp:
        write_ply_points(tmp, xyz[keep], rgb[keep], binary=True)
    log.info(
        "query3d %s: %d of %d Gaussians (scale %s) -> %s", list(queries), int(chosen.sum()), len(xyz), s, out
    )
    return GaussianQueryResult(Path(out), s, int(chosen.sum()), int(len(xyz)), peak)
