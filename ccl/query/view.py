"""Queries on a results/{scene} folder: a 2D overlay of one view (`ccl query`) and the Gaussians chosen
by text in 3D (`ccl query3d`, the paper's appendix D: each Gaussian's class compared with the text,
thresholded; the class read from the training views it is drawn in, or from its own 8-dim feature through
the MLP, and the selection's stray pieces dropped: SELECTION_RULES, CLEAN_MODES)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccl.query.config import QueryConfig
from ccl.query.fields import SCALE_ORDER, LanguageFieldSource, scene_fields
from ccl.query.ops import choose_scale, validate_queries
from ccl.query.relevance import (
    LABEL_SUPPORT_MIN,
    GaussianSelection,
    label_support,
    prototype_relevance,
    relevance_maps,
    select_gaussians,
    select_gaussians_voted,
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
    from ccl.scene import load_scene_cameras, read_manifest

    manifest = scene_dir / "scene.json"
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{manifest}: not found; give a results/<scene> folder the workflow has written"
        )
    return read_manifest(manifest), load_scene_cameras(manifest, cfg=scene_cfg)


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
    masks = {s: as_run(run).scene_dir / "masks" / f"{s}.h5" for s in scales}
    return LanguageFieldSource(
        {s: fields[s] for s in scales}, {s: codebooks[s] for s in scales}, scene=scene, device=device,
        masks=masks,
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
    emb: Any = None,
) -> ViewRelevance:
    """Each query's relevance map in `camera`'s view, per scale, and the scale each is read at.

    The decoded class map of every scale with each prototype's relevance painted on it; in paper mode
    the softmax runs over the queries and the negatives (`query.negatives`), so a pixel that matches
    none of the queries is not forced onto one of them. `ccl query` and `ccl render` draw these.
    `emb`: the queries' TextEmbeddings when the caller has them (ccl view's answer), else encoded here.
    """
    queries = tuple(validate_queries(queries, where="query text"))
    if emb is None or (emb.queries, emb.negative_phrases) != (queries, tuple(query_cfg.negatives)):
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
    image = load_image(cam, cfg=scene_cfg) if cam.image_path.is_file() else _backdrop(run, cam)
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


def _backdrop(run: RunFolders, cam: Any) -> np.ndarray:
    """What a query is drawn over when the view's photo is not on this machine (a results folder copied
    without its scene): the colour field's render of the view, else grey."""
    rgb = run.run_dir / "gaussians" / "rgb.safetensors"
    log.warning("%s: not on this machine; the query is drawn over %s", cam.image_path,
                "the colour field's render" if rgb.is_file() else "grey")  # fmt: skip
    if not rgb.is_file():
        return np.full((cam.height, cam.width, 3), 128, np.uint8)
    from ccl.splat.checkpoint import load_rgb_field
    from ccl.splat.render import render_rgb

    gaussians, _ = load_rgb_field(rgb)
    return np.rint(render_rgb(gaussians, cam) * 255).astype(np.uint8)


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


def _check_choice(flag: str, value: str, choices: dict[str, str]) -> str:
    """`value` if it is a key of `choices`, else ValueError naming each choice with its meaning."""
    if value not in choices:
        accepted = "; ".join(f"{k} ({v})" for k, v in choices.items())
        raise ValueError(f"{flag} {value}: unknown; accepted: {accepted}")
    return value


def check_ply_format(format: str) -> str:
    return _check_choice("--format", format, PLY_FORMATS)


# How a Gaussian's class is read for a 3D selection (`ccl query3d --select`, bench/selection_quality.py)
SELECTION_RULES = {
    "own": "the decoder on the Gaussian's own feature (appendix D as written)",
    "views": "the classes the Gaussian is drawn as in the scene's training views, voted (the default)",
}
# views: at least own's precision and recall on every object of the synthetic scene
# (bench/selection_quality.py, README's `ccl query3d`)
DEFAULT_SELECTION_RULE = "views"
# What is done to a selection once its Gaussians are read (`ccl query3d --clean`)
CLEAN_MODES = {
    "labels+components": "labels, then components; the default",
    "labels": "Gaussians dropped that the field's training maps seldom had as the query, in under "
    f"{LABEL_SUPPORT_MIN:.0%} of the views that see them: a class the field spread there on its own",
    "components": "pieces of the selection apart in space and read more weakly at every scale than its main "
    "body dropped (ccl.query.components)",
    "none": "every Gaussian above the threshold kept",
}
DEFAULT_CLEAN = "labels+components"
VOTE_MAX_SIZE = 320  # longer side, in pixels, of the training views rendered for the votes
VOTE_MIN_ALPHA = 0.5  # a pixel votes only where the field is this opaque
VOTE_DEPTH_TOL = 0.02  # a Gaussian is seen at its pixel when its front (centre depth less its largest
# radius), brought 2 % of its depth nearer the camera, lies in front of the view's first surface there: the
# surface it helps draw, not one behind it
VOTE_MIN_TRANSMITTANCE = 0.5  # "in front of the first surface": the field lets half the light through to
# it (ccl.splat.render.render_transmittance), i.e. the front is nearer than the depth where the accumulated
# opacity crosses 0.5 (a median depth), which faint blobs nearer the camera do not move


def clean_steps(clean: str) -> tuple[str, ...]:
    """The steps cleaning `clean` (CLEAN_MODES) runs, in order: its name, "+"-joined ("none": none)."""
    return () if check_clean(clean) == "none" else tuple(clean.split("+"))


def check_selection_rule(rule: str) -> str:
    return _check_choice("--select", rule, SELECTION_RULES)


def check_clean(clean: str) -> str:
    return _check_choice("--clean", clean, CLEAN_MODES)


def _vote_camera(camera: Any, max_size: int) -> Any:
    """`camera` with its image scaled so that its longer side is at most `max_size` pixels."""
    import dataclasses

    s = min(1.0, max_size / max(camera.width, camera.height))
    if s >= 1.0:
        return camera
    w, h = max(1, round(camera.width * s)), max(1, round(camera.height * s))
    K = camera.K.copy()
    K[0] *= w / camera.width
    K[1] *= h / camera.height
    return dataclasses.replace(camera, width=w, height=h, K=K, distortion=None)


@dataclass(frozen=True, eq=False)
class ViewVotes:
    """What the training views say of each Gaussian of a language field, counted over the views where it
    is seen (gaussian_view_votes)."""

    classes: np.ndarray  # [G, N] float32: views that draw the Gaussian as each of the field's N classes
    labels: np.ndarray | None  # [G, N] float32: views whose training map has each class at its pixel
    # (a view whose map has no mask there counts in none); None when the maps were not read

    @property
    def seen(self) -> np.ndarray:
        """[G] float32: the views in which each Gaussian is seen (each draws it as one class)."""
        return self.classes.sum(axis=1)


_VOTES: dict[int, tuple[Any, tuple[str, ...], ViewVotes]] = {}  # id(field) -> (weakref, cameras, votes)


def gaussian_view_votes(
    field: Any,
    cameras: Sequence[Any],
    *,
    maps: Mapping[str, np.ndarray] | None = None,
    max_size: int = VOTE_MAX_SIZE,
) -> ViewVotes:
    """How the views `cameras` draw each Gaussian of the language field `field`, and, with `maps` (frame
    name -> the index map the field was trained on, LanguageFieldSource.training_maps), what their
    training maps had where it shows.

    A view renders the field's features, decodes every pixel's class, and gives a vote to each Gaussian
    whose centre projects on a pixel where the field is opaque (alpha >= VOTE_MIN_ALPHA) and whose front
    is not behind the surface drawn there: the field's transmittance (render_transmittance) at the front,
    brought VOTE_DEPTH_TOL of its depth nearer along the Gaussian's ray, is at least
    VOTE_MIN_TRANSMITTANCE. That is the class the field shows at the place the Gaussian shows. The first
    surface, not the expected depth: faint blobs near a camera, which pull the expected depth forward, let
    most of the light through. The training map is read at the same place, at its own resolution. Kept
    per field for the process (queries reuse them; a call with maps recomputes votes kept without)."""
    import weakref

    import torch

    from ccl.splat.render import render_channels, render_transmittance

    key = tuple(c.name for c in cameras)
    hit = _VOTES.get(id(field))
    if hit is not None and hit[0]() is field and hit[1] == key and (maps is None or hit[2].labels is not None):
        return hit[2]
    if maps is not None:  # every view's map there and of its size, before any view is rendered
        from ccl.splat.train_language import maps_of_cameras

        sizes = {n: maps.frame_shape(n) if hasattr(maps, "frame_shape") else maps[n].shape for n in maps}
        for full, shape in zip(cameras, maps_of_cameras(cameras, sizes, source="the field's training maps"),
                               strict=True):  # fmt: skip
            if tuple(shape) != (full.height, full.width):
                raise ValueError(
                    f"the field's training map of {full.name} is {shape[1]}x{shape[0]}, its camera "
                    f"{full.width}x{full.height}: the masks were made at another image size; rerun the workflow"
                )
    xyz = field.gaussians.means.detach().cpu().numpy().astype(np.float64)
    radius = field.gaussians.log_scales.detach().amax(dim=1).exp().cpu().numpy()
    votes = np.zeros((len(xyz), field.n_classes), np.float32)
    labels = None if maps is None else np.zeros_like(votes)
    for full in cameras:
        cam = _vote_camera(full, max_size)
        with torch.no_grad():
            out = render_channels(field.gaussians, cam, rgb=False, features=field.features)
            feat = out.colors[0]
            flat = feat.reshape(-1, feat.shape[-1])
            cls = torch.cat([field.decoder(c).argmax(dim=-1) for c in flat.split(1 << 16)])
        cls = cls.reshape(feat.shape[:2]).cpu().numpy()
        alpha = out.alpha[0, ..., 0].cpu().numpy()
        uv, z = cam.project(xyz)
        col, row = np.floor(uv[:, 0]).astype(np.int64), np.floor(uv[:, 1]).astype(np.int64)
        idx = np.nonzero((z > 0) & (col >= 0) & (col < cam.width) & (row >= 0) & (row < cam.height))[0]
        idx = idx[alpha[row[idx], col[idx]] >= VOTE_MIN_ALPHA]
        # each front on the Gaussian's camera ray (the same pixel): the centre scaled towards the camera;
        # a front behind the camera (a Gaussian around it) lands behind it and is not drawn (0)
        near = (z[idx] - radius[idx]) / (z[idx] * (1.0 + VOTE_DEPTH_TOL))
        fronts = cam.center + near[:, None] * (xyz[idx] - cam.center)
        t = render_transmittance(field.gaussians, cam, torch.from_numpy(fronts))
        seen = idx[t.cpu().numpy() >= VOTE_MIN_TRANSMITTANCE]
        np.add.at(votes, (seen, cls[row[seen], col[seen]]), 1.0)
        if labels is not None:
            # the Gaussian's pixel in the view at the size training saw it; one view's map at a time
            u = np.floor(full.project(xyz[seen])[0]).astype(np.int64)
            taught = maps[full.name]  # type: ignore[index]
            taught_cls = taught[np.clip(u[:, 1], 0, full.height - 1), np.clip(u[:, 0], 0, full.width - 1)]
            has = taught_cls >= 0
            np.add.at(labels, (seen[has], taught_cls[has]), 1.0)
    for k in [k for k, v in _VOTES.items() if v[0]() is None]:
        del _VOTES[k]  # fields gone since
    result = ViewVotes(votes, labels)
    _VOTES[id(field)] = (weakref.ref(field), key, result)
    return result


@dataclass(frozen=True, eq=False)
class ChosenGaussians:
    """Appendix D's answer on a LanguageFieldSource: the scale read and the Gaussians chosen there."""

    scale: str  # the scale whose Gaussians reach the highest relevance
    field: Any  # the LanguageField of that scale
    selection: GaussianSelection
    visible: np.ndarray  # [G] bool, opacity >= min_opacity
    chosen: np.ndarray  # [G] bool, selected and visible
    max_relevance: float  # highest relevance of any Gaussian at that scale
    rule: str = DEFAULT_SELECTION_RULE  # SELECTION_RULES
    clean: str = "none"  # CLEAN_MODES
    n_cleaned: int = 0  # Gaussians above the threshold (and visible) that the cleaning dropped

    @property
    def n_chosen(self) -> int:
        return int(self.chosen.sum())


def choose_gaussians(
    source: LanguageFieldSource,
    emb: Any,
    *,
    query_cfg: QueryConfig,
    min_opacity: float = 0.0,
    rule: str = DEFAULT_SELECTION_RULE,
    cameras: Sequence[Any] | None = None,
    classes: Any = None,
    clean: str = DEFAULT_CLEAN,
) -> ChosenGaussians:
    """The Gaussians whose class is relevant to the embedded text (`emb`), at the scale of `source`
    whose Gaussians reach the highest relevance; those below `min_opacity` left out.

    `rule` (SELECTION_RULES): "views" reads each Gaussian's class from the training views `cameras`
    (gaussian_view_votes: a Gaussian drawn in no view is not selected); "own" decodes its own feature.
    bench/selection_quality.py measures both against the synthetic scene's ground truth.
    `classes` (rule "own"): a function of a field giving its decode_gaussian_classes, for a caller that
    keeps them (ccl view asks many queries of the same fields); by default each field is decoded here.
    `clean` (CLEAN_MODES): "labels" keeps, per query, the selected Gaussians whose training maps had the
    query's class in at least LABEL_SUPPORT_MIN of the views `cameras` that see them (label_support; the
    maps are LanguageFieldSource.training_maps); "components" keeps the pieces of its (visible) selection
    read about as strongly as the main body (clean_selection); "labels+components" both, in that order;
    "none" keeps every Gaussian above the threshold.
    """
    check_selection_rule(rule)
    check_clean(clean)
    steps = clean_steps(clean)
    by_labels = "labels" in steps
    if (rule == "views" or by_labels) and not cameras:
        need = "rule 'views'" if rule == "views" else f"clean {clean!r}"
        raise ValueError(f"choose_gaussians: {need} needs the scene's training cameras")
    best, read = None, []
    for s in source.scales:
        f = source.language_field(s)
        if rule == "views":
            maps = source.training_maps(s) if by_labels else None  # read before any view is rendered
            votes = gaussian_view_votes(f, cameras, maps=maps)  # type: ignore[arg-type]
            sel = select_gaussians_voted(votes.classes, source.prototypes(s), emb, cfg=query_cfg)
        else:
            own = classes(f) if classes is not None else decode_gaussian_classes(f)
            sel = select_gaussians(own, source.prototypes(s), emb, cfg=query_cfg)
        read.append((f, sel))
        peak = float(sel.relevance.max()) if sel.relevance.size else 0.0
        if best is None or peak > best[2]:
            best = (s, f, peak, sel)
    assert best is not None
    s, f, peak, sel = best
    opacity = 1.0 / (1.0 + np.exp(-f.gaussians.opacity_logits.detach().cpu().numpy()))
    visible = opacity >= min_opacity
    above = sel.selected & visible
    keep = sel.per_query & visible  # [Q, G]
    if by_labels:
        votes = gaussian_view_votes(f, cameras, maps=source.training_maps(s))  # type: ignore[arg-type]
        assert votes.labels is not None
        seen = votes.seen
        taught = label_support(votes.labels, seen, source.prototypes(s), emb, cfg=query_cfg)
        # a Gaussian no view sees (rule own selects such) has no training map to speak against it
        keep &= (taught >= LABEL_SUPPORT_MIN) | (seen == 0)
        if n := int(above.sum() - keep.any(axis=0).sum()):
            log.info("query3d %s: %d Gaussians the training maps seldom had as the query dropped "
                     "(in under %.0f%% of the views that see them)", list(sel.queries), n,
                     100 * LABEL_SUPPORT_MIN)  # fmt: skip
    if "components" in steps:
        chosen = clean_selection(f, sel, keep, read)
        if n := int(keep.any(axis=0).sum() - chosen.sum()):
            log.info("query3d %s: %d Gaussians in pieces apart from the selection's main body dropped",
                     list(sel.queries), n)  # fmt: skip
    else:
        chosen = keep.any(axis=0)
    return ChosenGaussians(s, f, sel, visible, chosen, peak, rule, clean, int(above.sum() - chosen.sum()))


def clean_selection(field: Any, sel: GaussianSelection, keep: np.ndarray, read: Sequence[Any]) -> np.ndarray:
    """[G] bool: the Gaussians of `field` that `sel` selects and `keep` ([G], or [Q, G] per query) lets
    through, less, for each query, the pieces of its selection (ccl.query.components.keep_supported_components;
    voxels of CLEAN_LINK × the field's median largest radius) whose relevance, averaged over the scales
    `read` ((field, selection) per scale, those on the same Gaussians as `field`), falls short of
    CLEAN_KEEP × that of the main body."""
    from ccl.query.components import keep_supported_components, link_voxel

    g = field.gaussians
    xyz = g.means.detach().cpu().numpy()
    voxel = link_voxel(g.log_scales.detach().cpu().numpy())
    same = [
        other.relevance
        for f, other in read
        if other.relevance.shape == sel.relevance.shape
        and (f is field or np.array_equal(f.gaussians.means.detach().cpu().numpy(), xyz))
    ]  # fields of other scales count where they hold the same Gaussians (a run's fields share them)
    support = np.mean(same, axis=0) if same else sel.relevance  # [Q, G]
    chosen = np.zeros(len(xyz), bool)
    for mine, query_support in zip(sel.per_query & keep, support, strict=True):
        chosen |= keep_supported_components(mine, xyz, query_support, voxel=voxel)
    return chosen


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
    rule: str = DEFAULT_SELECTION_RULE,
    clean: str = DEFAULT_CLEAN,
    scene_cfg: Any = None,
    device: str = "cpu",
) -> GaussianQueryResult:
    """Appendix D: the Gaussians whose decoded prototype is relevant to the text, written as a PLY:
    `format` "points" (x y z float, red green blue uchar: MeshLab, CloudCompare, Open3D and Blender open
    it) or "3dgs" (the Gaussians in 3DGS's layout, ccl.io.gaussians_ply: SuperSplat opens it).

    `auto` scale: the scale whose Gaussians reach the highest relevance. `rule` (SELECTION_RULES): how a
    Gaussian's class is read; "views" renders the scene's training views (`scene_cfg`: how its manifest
    loads; default ccl.scene's). `clean` (CLEAN_MODES): what is done to the selection then. With
    `context`, the other Gaussians are written too, in dark grey, so the selection is seen in its scene.
    """
    from ccl.io.provenance import file_record

    check_out_suffix(out, PLY_SUFFIXES)
    check_ply_format(format)
    check_selection_rule(rule)
    check_clean(clean)
    queries = validate_queries(queries, where="query text")
    run = as_run(run)
    cameras = None
    source = language_source(run, variant, scale=scale, device=device)
    by_labels = "labels" in clean_steps(clean)
    if by_labels:
        for s in source.scales:
            source.masks_file(s)  # here, before the fields, the text encoder and the views
    if rule == "views" or by_labels:
        from ccl.scene import SceneLoadConfig

        cameras = _scene_and_manifest(run.scene_dir, scene_cfg or SceneLoadConfig())[1].cameras
    emb = text_embeddings(queries, cfg=query_cfg, features_cfg=features_cfg, device=device)
    chosen = choose_gaussians(source, emb, query_cfg=query_cfg, min_opacity=min_opacity, rule=rule,
                              cameras=cameras, clean=clean)  # fmt: skip
    made_by = None  # the points layout has no place for it
    if format == "3dgs":
        made_by = {
            "command": "ccl query3d", "queries": list(queries), "variant": variant, "scale": chosen.scale,
            "mode": query_cfg.mode, "threshold": query_cfg.threshold, "select": rule, "clean": clean,
            **({"label_support_min": LABEL_SUPPORT_MIN} if by_labels else {}),
            "min_opacity": min_opacity,
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
