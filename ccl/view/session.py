"""What `ccl view` shows, without the browser: a results folder opened once, a view rendered from any
camera, a text query answered, its selection exported.

The query logic is ccl.query.view's: `language_source` picks the fields of a `--scale` choice,
`view_relevance` gives each query's relevance in the view (read at its own scale under `auto`) and
`choose_gaussians` the Gaussians appendix D selects, which `write_chosen_gaussians` exports as a 3DGS
PLY. This module only renders the colour field with the relevance over it, from the browser's camera.

A colour field still training is shown from its latest partial checkpoint (ccl.latest_fields):
`ViewSession.refresh` swaps in the checkpoint training wrote since, and `training_line` says how far it
has come. Training never waits on the view: it is only read, after a stat says it changed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ccl.query.config import QueryConfig
from ccl.query.fields import LanguageFieldSource

log = logging.getLogger(__name__)

SCALE_CHOICE_AUTO = "auto"


@dataclass(frozen=True, eq=False)
class Answer:
    """A text query answered on the session's language fields (or why it could not be)."""

    queries: tuple[str, ...]
    scale_choice: str  # "auto" or a scale name
    threshold: float
    chosen: Any  # ccl.query.view.ChosenGaussians, None when the text was refused
    message: str  # what the page says about it
    emb: Any = None  # ccl.query.relevance.TextEmbeddings of the queries (drawn with them, not encoded again)

    @property
    def has_selection(self) -> bool:
        return self.chosen is not None and self.chosen.n_chosen > 0


@dataclass(frozen=True, eq=False)
class Frame:
    image: np.ndarray  # [H, W, 3] uint8: the colour field, with the relevance over it when asked
    heat: np.ndarray | None  # [H, W] float32, highest relevance of any query (None: no query)
    colour: np.ndarray | None = None  # [H, W, 3] uint8: the colour field alone, under the relevance
    coarse: bool = False  # classes decoded on a coarse grid only (class_stride > 1): refine when still


CLASS_CHUNK = 1 << 14  # pixels decoded at a time (and between two looks at whether to stop)
KEPT_VIEWS = 4  # cameras whose render a session keeps for the next query (about one per browser)
KEPT_FIELDS = 8  # language fields a kept render holds (each newer checkpoint of one still training is
# another): past it the view is drawn anew with the fields asked for


@dataclass(eq=False)
class _ViewPixels:
    """One camera's render kept for the queries that follow it (ViewSession.render): the colour, the
    features of the language fields drawn in the same pass (or added by a pass of their own), and each
    field's class map once decoded. A new query on an unchanged camera then only paints its relevance."""

    key: bytes  # the camera (size, intrinsics, pose) and background
    colour: Any  # the colour field drawn (a field swapped in since is another render)
    image: np.ndarray  # [H, W, 3] uint8
    fields: list[Any]  # language fields whose features were drawn (or class maps, another geometry's)
    features: list[Any]  # each one's torch [H, W, F], None once its class map is decoded
    classes: dict[int, np.ndarray] = field(default_factory=dict)  # index in fields -> [H, W] class map

    def has(self, lf: Any) -> bool:
        return any(f is lf for f in self.fields)

    def index(self, lf: Any) -> int:
        return next(i for i, f in enumerate(self.fields) if f is lf)

    def decode(self, lf: Any, stride: int = 1, cancelled: Any = None) -> np.ndarray | None:
        """Field `lf`'s class of every `stride`-th pixel of each row and column, repeated over its block
        ([H, W]); the full map is kept and read again (its every s-th pixel is the coarse map's). None when
        `cancelled()` turns true between two chunks."""
        import torch

        i = self.index(lf)
        h, w = self.image.shape[:2]
        if i not in self.classes:
            grid = self.features[i][::stride, ::stride]
            parts = []
            with torch.no_grad():
                for c in grid.reshape(-1, grid.shape[-1]).split(CLASS_CHUNK):
                    if cancelled is not None and cancelled():
                        return None
                    # max's index: argmax's (the first largest logit) in half its time
                    parts.append(lf.decoder(c).max(dim=-1).indices)
            cls = torch.cat(parts).reshape(grid.shape[:2]).cpu().numpy()
            if stride > 1:
                return np.repeat(np.repeat(cls, stride, axis=0), stride, axis=1)[:h, :w]
            self.classes[i], self.features[i] = cls, None  # (the features are not read again)
        return self.classes[i]


def _view_key(camera: Any, background: Any) -> bytes:
    parts = (np.asarray([camera.width, camera.height], np.float64), np.asarray(camera.K, np.float64),
             np.asarray(camera.world_to_camera, np.float64), np.asarray(background, np.float64))  # fmt: skip
    return b"".join(a.tobytes() for a in parts)


def camera_from_view(
    position: Any, wxyz: Any, fov_y: float, width: int, height: int, *, max_size: int
) -> Any:
    """A pinhole `ccl.scene.Camera` of a browser view: camera-to-world rotation `wxyz` and `position`
    (OpenCV axes: +x right, +y down, +z forward, as viser reports them), vertical field of view `fov_y`
    (radians) and the canvas size, scaled so that its longer side is at most `max_size` pixels."""
    from ccl.scene import Camera

    w, h = max(int(width), 1), max(int(height), 1)
    s = min(1.0, max_size / max(w, h))
    w, h = max(1, round(w * s)), max(1, round(h * s))
    f = 0.5 * h / math.tan(0.5 * float(fov_y))
    qw, qx, qy, qz = (float(v) for v in np.asarray(wxyz, dtype=np.float64) / np.linalg.norm(wxyz))
    rot = np.array(
        [
            [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy)],
            [2 * (qx * qy + qw * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qw * qx)],
            [2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx * qx + qy * qy)],
        ]
    )
    w2c = np.eye(4)
    w2c[:3, :3] = rot.T
    w2c[:3, 3] = -rot.T @ np.asarray(position, dtype=np.float64)
    K = np.array([[f, 0.0, w / 2], [0.0, f, h / 2], [0.0, 0.0, 1.0]])
    return Camera(name="browser", image_path=Path(""), width=w, height=h, K=K, world_to_camera=w2c)


def _progress_line(lf: Any, what: str, keys: tuple[str, str]) -> str:
    """'training: step S of N, {what} x' (a partial checkpoint: the mean of `keys[0]` over the training
    views since the checkpoint before) or 'trained: N steps, {what} x' (a final field: `keys[1]` over the
    held-out views, else `keys[0]`); PSNR in dB."""
    got, unit = lf.progress, " dB" if what == "PSNR" else ""
    if lf.partial:
        line, figures = f"training: step {lf.step} of {lf.iterations}", ((keys[0], "training views"),)
    else:
        line, figures = (
            f"trained: {lf.iterations} steps",
            ((keys[1], "held-out views"), (keys[0], "training views")),
        )
    for key, which in figures:
        if got.get(key) is not None:
            return f"{line}, {what} {got[key]:.2f}{unit} ({which})"
    return line


def _same_geometry(a: Any, b: Any) -> bool:
    import torch

    return len(a) == len(b) and all(
        torch.equal(getattr(a, k), getattr(b, k)) for k in ("means", "quats", "log_scales", "opacity_logits")
    )


class _ViewClassMaps:
    """A LanguageFieldSource whose class maps for one camera are already rendered: what view_relevance
    reads (scales, prototypes, class_map), served from the one render that also made the colour."""

    def __init__(self, source: Any, maps: dict[str, np.ndarray]) -> None:
        self.scales, self._source, self._maps = source.scales, source, maps

    def prototypes(self, scale: str) -> np.ndarray:
        return self._source.prototypes(scale)

    def class_map(self, scale: str, camera: Any) -> np.ndarray:
        return self._maps[scale]


@dataclass(eq=False)
class ViewSession:
    """One run (results/{scene}/seed{N}) opened for viewing: the colour field, and the language fields when
    the run has them (`sources`: scale choice -> LanguageFieldSource; empty: colour only, no queries)."""

    run_dir: Path
    scene: str
    colour: Any  # ccl.splat.model.Gaussians, the colour field
    background: tuple[float, float, float]  # what the colour field was trained against
    cameras: tuple[Any, ...]  # the scene's training views (the browser starts at one)
    variant: str = "full"
    sources: dict[str, Any] = field(default_factory=dict)
    query_cfg: QueryConfig = field(default_factory=QueryConfig)
    features_cfg: Any = None  # the scene's own text encoder (ccl.query.fields.scene_text_encoder)
    device: str = "cpu"
    latest: Any = None  # ccl.latest_fields.LatestField the colour field was read from (None: given as is)
    text_encoder: Any = None  # () -> features config, called when the first language field appears
    _shared: dict[int, tuple[Any, bool]] = field(default_factory=dict, repr=False)
    _stamp: Any = field(default=None, repr=False)  # ccl.latest_fields.field_stamp of what `latest` read
    _language_stamps: dict[str, Any] = field(default_factory=dict, repr=False)  # scale -> field_stamp
    # what the next query on the same view reuses (`keep_views` False: every frame rendered anew, the
    # reference the tests compare with): the latest cameras' renders, each field's decoded Gaussians,
    # each text's embeddings
    keep_views: bool = True
    _views: list[_ViewPixels] = field(default_factory=list, repr=False)
    _gaussian_classes: dict[int, tuple[Any, np.ndarray]] = field(default_factory=dict, repr=False)
    _embeddings: dict[tuple, tuple[Any, Any]] = field(default_factory=dict, repr=False)
    _lock: Any = field(default_factory=threading.Lock, repr=False)

    @property
    def can_query(self) -> bool:
        return bool(self.sources)

    @property
    def scale_choices(self) -> tuple[str, ...]:
        return tuple(self.sources)

    # --- a colour field still training ---------------------------------------------------------------

    @property
    def training(self) -> bool:
        """Whether the colour field shown is a partial checkpoint (its training still runs)."""
        return self.latest is not None and self.latest.partial

    def refresh(self) -> frozenset[str]:
        """Swap in the fields as they stand now where their files changed since they were read (a new
        partial checkpoint, or the final field): which were swapped, "colour" and/or "language" (empty:
        none). Cheap when nothing changed (`field_stamp`: a stat a field). A render or query in flight
        keeps the fields it started with; a file being replaced as it is read is left for the next call."""
        from ccl.io.provenance import check_scene_of
        from ccl.latest_fields import field_stamp, latest_rgb, rgb_path

        if self.latest is None:
            return frozenset()
        swapped = set()
        stamp = field_stamp(rgb_path(self.run_dir))
        stamps = language_stamps(self.run_dir, self.variant)
        try:
            if stamp is not None and stamp != self._stamp:
                latest = latest_rgb(self.run_dir, scene=self.scene)
                if not latest.partial:
                    check_scene_of(
                        latest.path, latest.header.get("inputs"), self.run_dir.parent / "scene.json"
                    )
                self.colour, self.latest, self._stamp = latest.field.to(self.device), latest, stamp
                swapped.add("colour")
            if stamps != self._language_stamps or (swapped and self.sources):
                # a field whose file is the one read (and the colour field too) is not read again
                before = {} if swapped else getattr(self.sources.get(SCALE_CHOICE_AUTO), "loaded", {})
                keep = {s: lf for s, lf in before.items() if stamps.get(s) == self._language_stamps.get(s)}
                sources = open_language(self.run_dir, self.variant, scene=self.scene, device=self.device,
                                        colour=self.colour, rgb_path=self.latest.path, loaded=keep)  # fmt: skip
                if sources and self.features_cfg is None and self.text_encoder is not None:
                    self.features_cfg = self.text_encoder()
                self.sources, self._language_stamps = sources, stamps
                swapped.add("language")
        except (FileNotFoundError, ValueError) as e:  # replaced or removed as it was read: next call
            log.debug("ccl view: a field not read this time (%s)", e)
        return frozenset(swapped)

    def fields_read(self) -> list[tuple[str, Any]]:
        """(name, ccl.latest_fields.LatestField) of each field shown: 'colour field', 'language field sp', …"""
        loaded = getattr(self.sources.get(SCALE_CHOICE_AUTO), "loaded", {})  # (a LatestLanguageSource)
        language = [(f"language field {s}", loaded[s]) for s in self.scale_choices[1:] if s in loaded]
        return ([("colour field", self.latest)] if self.latest is not None else []) + language

    def training_lines(self) -> list[str]:
        """How far each field shown had come: 'Colour field training: step S of N, PSNR x dB' for a partial
        checkpoint (the mean over the training views of the steps since the one before; a language field:
        its pixel accuracy), '… trained: N steps, …' for a final field (its held-out figure)."""
        lines = []
        for name, lf in self.fields_read():
            if name == "colour field":
                got = _progress_line(lf, "PSNR", ("psnr_train", "psnr_heldout"))
            else:
                got = _progress_line(lf, "accuracy", ("accuracy_train", "accuracy_heldout"))
            lines.append(f"{name[0].upper()}{name[1:]} {got}")
        return lines

    # --- rendering ------------------------------------------------------------------------------------

    def _shares_geometry(self, colour: Any, lf: Any) -> bool:
        seen = self._shared.get(id(lf))
        if seen is None or seen[0] is not colour:  # (a new colour field was swapped in since)
            seen = self._shared[id(lf)] = (colour, _same_geometry(colour, lf.gaussians))
        return seen[1]

    def render(
        self, camera: Any, answer: Answer | None = None, *, class_stride: int = 1, prepare: str | None = None
    ) -> Frame:
        """The colour field seen by `camera`; with an answer, each query's relevance (view_relevance)
        drawn over it as ccl query draws it: turbo where above the threshold, the rest dimmed.

        A language field with the colour field's geometry (the frozen language stage writes them so) is
        rendered in the same pass as the colour, its features as extra channels; another one alone.
        `class_stride` s > 1 decodes the class of every s-th pixel of each row and column only, repeated
        over its s x s block (the page's frames while the camera moves: decoding is most of a frame).
        `prepare` (a scale choice): its fields' features drawn in the pass even without an answer, so
        that the first query on this view is not drawn again (`prepare_classes` decodes them ahead).

        The latest cameras' renders are kept (`keep_views`): a frame of an unchanged camera reuses the
        colour and the class maps decoded for it and paints only the new answer's relevance, the same
        pixels as a render from scratch (tests/view/test_view_cache.py)."""
        from ccl.splat.render import render_class_map

        colour = self.colour  # this render's, whatever `refresh` swaps in meanwhile
        source = self.sources.get(answer.scale_choice) if answer is not None and answer.chosen else None
        fields = {s: source.language_field(s) for s in source.scales} if source is not None else {}
        fused = [fields[s] for s in fields if self._shares_geometry(colour, fields[s])]
        if source is None and prepare in self.sources:
            extra = self.sources[prepare]
            fused = [f for f in map(extra.language_field, extra.scales) if self._shares_geometry(colour, f)]
        view = self._view_pixels(camera, colour, fused)
        if source is None:
            return Frame(view.image, None, view.image)
        step = max(1, int(class_stride))
        maps, coarse = {}, False
        for s, lf in fields.items():
            if view.has(lf):
                full = view.index(lf) in view.classes
                maps[s] = view.decode(lf, 1 if full else step)
                coarse = coarse or (step > 1 and not full)
            else:  # another geometry: its own render, kept too
                maps[s] = render_class_map(lf, camera)
                if self.keep_views and len(view.fields) < KEPT_FIELDS:
                    view.fields.append(lf)
                    view.features.append(None)
                    view.classes[len(view.fields) - 1] = maps[s]
        frame = self._draw_relevance(view.image, _ViewClassMaps(source, maps), camera, answer)
        return dataclasses.replace(frame, coarse=coarse)

    def _view_pixels(self, camera: Any, colour: Any, fused: list[Any]) -> _ViewPixels:
        """The render of `camera` kept with the features of `fused`: a kept one (the features it lacks
        drawn in a pass of their own and added), or a new one (colour and features in one pass)."""
        import torch

        from ccl.splat.render import render_channels

        key = _view_key(camera, self.background)
        with self._lock:
            self._views = [v for v in self._views if v.colour is colour]  # (a newer one swapped in: let go)
            view = next((v for v in self._views if v.key == key), None)
            if view is not None:
                self._views.remove(view)
                self._views.append(view)  # the latest used last
        missing = [f for f in fused if view is not None and not view.has(f)]
        if view is not None and self.keep_views and len(view.fields) + len(missing) <= KEPT_FIELDS:
            if missing:
                with torch.no_grad():
                    feats = torch.cat([f.features for f in missing], dim=1)
                    pixels = render_channels(colour, camera, rgb=False, features=feats).colors[0]
                view.fields.extend(missing)
                view.features.extend(pixels.split([f.features.shape[1] for f in missing], dim=-1))
            return view
        with torch.no_grad():
            feats = torch.cat([f.features for f in fused], dim=1) if fused else None
            out = render_channels(colour, camera, features=feats, background=self.background)
            pixels = out.colors[0]  # [H, W, 3 + F * len(fused)]
            image = np.rint(pixels[..., :3].clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)
        split = pixels[..., 3:].split([f.features.shape[1] for f in fused], dim=-1) if fused else ()
        view = _ViewPixels(key, colour, image, list(fused), list(split))
        if self.keep_views:
            with self._lock:
                self._views = [v for v in self._views if v.key != key][-(KEPT_VIEWS - 1) :] + [view]
        return view

    def prepare_classes(self, camera: Any, scale_choice: str, *, cancelled: Any = None) -> bool:
        """Decode the class maps of `scale_choice`'s fields on `camera`'s kept render (drawn with
        `prepare`), chunk by chunk, so that the next query on this view only paints its relevance. False
        when there is none to decode or `cancelled()` turned true (what was decoded whole is kept)."""
        source = self.sources.get(scale_choice)
        if source is None or not self.keep_views:
            return False
        key = _view_key(camera, self.background)
        with self._lock:
            view = next((v for v in reversed(self._views) if v.key == key and v.colour is self.colour), None)
        if view is None:
            return False
        for lf in map(source.language_field, source.scales):
            if view.has(lf) and view.decode(lf, 1, cancelled) is None:
                return False
        return True

    def _draw_relevance(self, image: np.ndarray, maps: Any, camera: Any, answer: Answer) -> Frame:
        from ccl.query.figures import overlay
        from ccl.query.view import view_relevance

        cfg = dataclasses.replace(self.query_cfg, threshold=answer.threshold)
        rel = view_relevance(maps, camera, answer.queries, query_cfg=cfg, features_cfg=self.features_cfg,
                             device=self.device, emb=answer.emb)  # fmt: skip
        heat = np.max(np.stack([rel.heat(k) for k in range(len(rel.queries))]), axis=0)
        return Frame(overlay(image, heat, mask=heat > answer.threshold), heat, image)

    # --- queries --------------------------------------------------------------------------------------

    def ask(self, text: str, *, scale: str = SCALE_CHOICE_AUTO, threshold: float | None = None) -> Answer:
        """Answer a query typed on the page (several separated by ';'): the Gaussians appendix D selects
        (ccl.query.view.choose_gaussians). Bad text and no match are answers too, with their message."""
        from ccl.query.ops import validate_queries
        from ccl.query.view import choose_gaussians

        threshold = self.query_cfg.threshold if threshold is None else float(threshold)
        if not self.can_query:
            return Answer((), scale, threshold, None, "colour field only: no language field to ask")
        if scale not in self.sources:
            return Answer(
                (), scale, threshold, None, f"scale {scale!r}: none here; have {list(self.sources)}"
            )
        try:
            queries = validate_queries([q.strip() for q in text.split(";") if q.strip()], where="query")
            cfg = dataclasses.replace(self.query_cfg, threshold=threshold)
        except ValueError as e:
            return Answer((), scale, threshold, None, str(e))
        emb = self._text_embeddings(queries, cfg)
        classes = self._gaussian_classes_of if self.keep_views else None
        # rule own and clean components, not query3d's defaults (views, labels+components): an answer
        # typed on the page comes in a fraction of a second, and the votes and the label support render
        # every training view of each field (seconds, again at each partial checkpoint the page picks up
        # while the workflow trains)
        chosen = choose_gaussians(
            self.sources[scale], emb, query_cfg=cfg, rule="own", cameras=self.cameras, classes=classes,
            clean="components",
        )
        n, total = chosen.n_chosen, len(chosen.chosen)
        if n == 0:
            message = (
                f"no match for {', '.join(map(repr, queries))}: no Gaussian above threshold {threshold:.2f} "
                f"(highest relevance {chosen.max_relevance:.3f}, scale {chosen.scale}); lower the "
                "threshold or try other words"
            )
        else:
            message = (
                f"{n} of {total} Gaussians selected for {', '.join(map(repr, queries))} (scale "
                f"{chosen.scale}, highest relevance {chosen.max_relevance:.3f}, threshold {threshold:.2f})"
            )
        return Answer(queries, scale, threshold, chosen, message, emb)

    def warm(self) -> None:
        """What every query needs, done ahead: each language field's Gaussians decoded (kept), the
        overlay's colour map loaded."""
        from matplotlib import colormaps

        colormaps["turbo"]
        if self.keep_views:
            for source in list(self.sources.values()):
                for s in source.scales:
                    self._gaussian_classes_of(source.language_field(s))

    def _text_embeddings(self, queries: list[str], cfg: QueryConfig) -> Any:
        """The queries' and negatives' embeddings, encoded once per text (a threshold moved asks again)."""
        from ccl.query.relevance import text_embeddings

        key = (tuple(queries), tuple(cfg.negatives))
        got = self._embeddings.get(key)
        if got is None or got[0] is not self.features_cfg or not self.keep_views:
            emb = text_embeddings(queries, cfg=cfg, features_cfg=self.features_cfg, device=self.device)
            got = (self.features_cfg, emb)
            with self._lock:
                while len(self._embeddings) >= 64:
                    self._embeddings.pop(next(iter(self._embeddings)))
                self._embeddings[key] = got
        return got[1]

    def _gaussian_classes_of(self, lf: Any) -> np.ndarray:
        """decode_gaussian_classes of a language field, once per field (a newer checkpoint is another)."""
        from ccl.query.view import decode_gaussian_classes

        got = self._gaussian_classes.get(id(lf))
        if got is None or got[0] is not lf:
            got = (lf, decode_gaussian_classes(lf))
            with self._lock:
                while len(self._gaussian_classes) >= 8:  # (a field still training: each checkpoint's)
                    self._gaussian_classes.pop(next(iter(self._gaussian_classes)))
                self._gaussian_classes[id(lf)] = got
        return got[1]

    def selected_points(self, answer: Answer) -> np.ndarray:
        """[S, 3] float32 centres of the selected Gaussians (what the page highlights in 3D)."""
        if not answer.has_selection:
            return np.zeros((0, 3), np.float32)
        g = answer.chosen.field.gaussians
        return g.means.detach().cpu().numpy()[answer.chosen.chosen].astype(np.float32)

    def export(self, answer: Answer, out_dir: str | Path) -> Path:
        """The answer's selection as a 3DGS PLY `<scene>_<query>.ply` in `out_dir` (write_chosen_gaussians)."""
        from ccl.io.provenance import file_record
        from ccl.query.view import write_chosen_gaussians

        if not answer.has_selection:
            raise ValueError(f"nothing to export: {answer.message}")
        slug = re.sub(r"[^a-z0-9]+", "_", "_".join(answer.queries).lower()).strip("_")[:60] or "selection"
        out = Path(out_dir) / f"{self.scene}_{slug}.ply"
        made_by = {
            "command": "ccl view", "run_dir": str(self.run_dir), "queries": list(answer.queries),
            "variant": self.variant, "scale": answer.chosen.scale, "mode": self.query_cfg.mode,
            "threshold": answer.threshold,
            "field": file_record(self.sources[answer.scale_choice].fields[answer.chosen.scale]),
        }  # fmt: skip
        return write_chosen_gaussians(out, answer.chosen, format="3dgs", made_by=made_by)


def open_session(
    run: Any,
    *,
    variant: str = "full",
    query_cfg: QueryConfig,
    scene_cfg: Any,
    text_encoder: Any = None,
    device: str = "cpu",
) -> ViewSession:
    """Open a run (ccl.results_tree: a RunFolders, or a results/{scene} or results/{scene}/seed{N} folder
    naming one), checking everything before a server starts: its scene's manifest, its
    colour field, and, when it has language fields of `variant`, every field with its codebook (shapes,
    provenance: ccl.query.fields) and the text encoder (`text_encoder()` -> features config, called only
    then). A folder without language fields opens colour-only."""
    from ccl.io.provenance import check_scene_of
    from ccl.latest_fields import field_stamp, latest_rgb
    from ccl.latest_fields import rgb_path as rgb_path_of
    from ccl.results_tree import as_run
    from ccl.scene import load_scene_cameras, read_manifest

    run = as_run(run)  # refuses a folder without scene.json or without a run, naming what to give
    manifest = run.scene_dir / "scene.json"
    m = read_manifest(manifest)
    rgb_path = rgb_path_of(run.run_dir)
    # the final field, else the latest partial checkpoint of its training (ViewSession.refresh follows it);
    # refuses a folder with neither, naming the rule that makes it
    stamp = field_stamp(rgb_path)
    latest = latest_rgb(run.run_dir, scene=m.name)
    colour, header = latest.field, latest.header
    check_scene_of(latest.path, header.get("inputs"), manifest)  # the cameras drawn are this manifest's
    background = tuple(float(v) for v in (header.get("config") or {}).get("background", (0.0, 0.0, 0.0)))
    cameras = load_scene_cameras(manifest, cfg=scene_cfg).cameras
    colour = colour.to(device)
    stamps = language_stamps(run.run_dir, variant)
    sources = open_language(run, variant, scene=m.name, device=device, colour=colour, rgb_path=latest.path)
    features_cfg = text_encoder() if sources and text_encoder is not None else None
    if not sources:
        log.info(
            "%s: no language field of variant %r; the view shows the colour field only", run.run_dir, variant
        )
    return ViewSession(
        run_dir=run.run_dir, scene=m.name, colour=colour, background=background,  # type: ignore[arg-type]
        cameras=tuple(cameras), variant=variant, sources=sources, query_cfg=query_cfg,
        features_cfg=features_cfg, device=device, latest=latest, text_encoder=text_encoder,
        _stamp=stamp, _language_stamps=stamps,
    )  # fmt: skip


def language_stamps(run_dir: Path, variant: str) -> dict[str, Any]:
    """scale -> `field_stamp` of each language field a reader takes now (final or partial): one listing
    of the folder and a stat a field."""
    from ccl.latest_fields import field_stamp, language_paths

    return {
        s: field_stamp(p.with_name(f"{s}.safetensors")) for s, p in language_paths(run_dir, variant).items()
    }


@dataclass(eq=False)
class LatestLanguageSource(LanguageFieldSource):
    """A LanguageFieldSource over the fields as they stand (ccl.latest_fields): each a final field, or the
    latest partial checkpoint of one still training (a frozen run's on `colour`, the colour field's
    geometry). The sources of one session share `loaded` (scale -> LatestField): a field is read once."""

    colour: Any = None
    loaded: dict[str, Any] = field(default_factory=dict)

    def language_field(self, scale: str) -> Any:
        if scale not in self._fields:
            if scale not in self.loaded:
                self.loaded[scale] = self._read(scale)
            self._fields[scale] = self.loaded[scale].field
        return self._fields[scale]

    def _read(self, scale: str) -> Any:
        """The field's LatestField, checked against its codebook as LanguageFieldSource checks a final."""
        from ccl.io.provenance import check_made_from
        from ccl.latest_fields import LatestField, latest_language
        from ccl.query.fields import _to_device

        path = Path(self.fields[scale])
        if not path.name.endswith(".partial.safetensors"):
            f = super().language_field(scale)  # its codebook and classes checked there
            n = int(f.header.get("iteration", 0))
            return LatestField(path, f, n, n, f.header)
        latest = latest_language(path, colour=self.colour, scene=self.scene)
        codebook, n = self.codebooks[scale], self.prototypes(scale).shape[0]
        fix = "its training began on another codebook; rerun the workflow"
        check_made_from(
            path, (latest.header.get("inputs") or {}).get("codebook"), codebook, role="codebook", fix=fix
        )
        if latest.field.n_classes != n:
            raise ValueError(
                f"{path} decodes into {latest.field.n_classes} classes but {codebook} has {n}; {fix}"
            )
        return dataclasses.replace(latest, field=_to_device(latest.field, self.device))


def open_language(
    run: Any, variant: str, *, scene: str, device: str, colour: Any, rgb_path: Path,
    loaded: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """scale choice -> LatestLanguageSource of a run's language fields of `variant` (final ones, or the
    latest partial checkpoints of those still training); {} where it has none. Every field is read
    and checked now (shapes, its codebook, the colour field it was trained against), so that a bad one is
    refused before a server starts, and a newer checkpoint is read before it is shown; `loaded` (scale ->
    LatestField) holds those already read, taken as they are."""
    from ccl.io.provenance import check_made_from, remake
    from ccl.latest_fields import language_paths
    from ccl.query.fields import SCALE_ORDER, scene_fields
    from ccl.results_tree import as_run

    run = as_run(run)
    paths = language_paths(run.run_dir, variant)
    if not paths:
        return {}
    if any(not p.name.endswith(".partial.safetensors") for p in paths.values()):
        scene_fields(run, variant)  # refuses a final field without its codebook
    cdir = run.run_dir / "codebook" / variant
    scales = sorted(paths, key=lambda s: (SCALE_ORDER.index(s) if s in SCALE_ORDER else len(SCALE_ORDER), s))
    auto = tuple(s for s in scales if s != "all") or tuple(scales)  # ccl.query.view.language_source's
    loaded = {s: lf for s, lf in (loaded or {}).items() if s in paths}
    sources = {
        choice: LatestLanguageSource({s: paths[s] for s in picked}, {s: cdir / f"{s}.h5" for s in picked},
                                     scene=scene, device=device, colour=colour, loaded=loaded)
        for choice, picked in ((SCALE_CHOICE_AUTO, auto), *((s, (s,)) for s in scales))
    }  # fmt: skip
    for s in scales:  # drawn over this colour field: the one each field was trained against
        f = sources[s].language_field(s)
        check_made_from(
            paths[s], (f.header.get("inputs") or {}).get("rgb"), rgb_path, role="colour field",
            fix=f"its selections would be drawn over another run's Gaussians; open the run it was trained "
            f"with, or {remake(paths[s])}",
        )  # fmt: skip
    return sources
