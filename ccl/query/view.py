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
from ccl.query.fields import LanguageFieldSource, scene_fields
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


@dataclass(frozen=True)
class ImageQueryResult:
    path: Path
    frame: str
    scales: dict[str, str]  # query -> scale chosen
    selected_fraction: dict[str, float]  # query -> share of pixels above the threshold


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
    """Relevance of each query in one view, drawn over the image (pixels above the threshold outlined).

    In paper mode the softmax runs over the texts and the negatives (`query.negatives`), so a pixel that
    matches none of the texts is not forced onto one of them.
    """
    from ccl.eval.figures import frame_figure
    from ccl.scene import load_image

    queries = validate_queries(queries, where="query text")
    scene_dir = Path(scene_dir)
    fields, codebooks = scene_fields(scene_dir, variant)
    scales = _scales(fields, scale)
    m, scene = _scene_and_manifest(scene_dir, scene_cfg)
    cam = pick_camera(scene.cameras, frame)
    source = LanguageFieldSource(
        {s: fields[s] for s in scales}, {s: codebooks[s] for s in scales}, scene=m.name, device=device
    )
    emb = text_embeddings(queries, cfg=query_cfg, features_cfg=features_cfg, device=device)
    maps = np.stack(
        [
            relevance_maps(
                source.class_map(s, cam),
                prototype_relevance(source.prototypes(s), emb, cfg=query_cfg, with_negatives=True),
            )
            for s in scales
        ]
    )  # [L, Q, H, W]
    image = load_image(cam, cfg=scene_cfg)
    panels, chosen, frac = [], {}, {}
    for k, q in enumerate(queries):
        i = choose_scale(maps[:, k]) if len(scales) > 1 else 0
        heat = maps[i, k]
        mask = heat > query_cfg.threshold
        chosen[q], frac[q] = scales[i], float(mask.mean())
        panels.append(
            (
                q,
                heat,
                mask,
                None,
                f"{scales[i]} · max {heat.max():.2f} · {100 * frac[q]:.1f}% > {query_cfg.threshold:g}",
            )
        )
        log.info(
            "%s: scale %s, %.1f%% of pixels above %.2f", q, scales[i], 100 * frac[q], query_cfg.threshold
        )
    path = frame_figure(out, image, panels, title=f"{m.name} · {variant} · {cam.name} ({query_cfg.mode})")
    return ImageQueryResult(path, cam.name, chosen, frac)


def _scales(fields: dict[str, Path], scale: str) -> tuple[str, ...]:
    from ccl.query.fields import SCALE_ORDER

    have = sorted(fields, key=lambda s: SCALE_ORDER.index(s) if s in SCALE_ORDER else 9)
    if scale == "auto":
        multi = tuple(s for s in have if s != "all")
        return multi or tuple(have)
    if scale not in fields:
        raise ValueError(f"--scale {scale}: no language field of that scale; have {have}")
    return (scale,)


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

    queries = validate_queries(queries, where="query text")
    scene_dir = Path(scene_dir)
    fields, codebooks = scene_fields(scene_dir, variant)
    scales = _scales(fields, scale)
    source = LanguageFieldSource(
        {s: fields[s] for s in scales}, {s: codebooks[s] for s in scales}, device=device
    )
    emb = text_embeddings(queries, cfg=query_cfg, features_cfg=features_cfg, device=device)
    best = None
    for s in scales:
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
