"""The language field of one scale (paper 3.4): per-Gaussian features decoded into the codebook classes.

Every Gaussian carries a `feature_dim`-dim feature, alpha-blended by the same rasterizer as colour; a
small MLP decoder maps the rendered feature of a pixel to logits over the N codebook prototypes; the
loss is the cross-entropy against the view's index map (`ccl.codebook.paint_index_map`), pixels with
no mask (−1) ignored. By default the geometry is the colour field's, frozen (each scale is a cheap job
of its own); `joint: true` trains colour and language together from the scene's points, following the
colour schedule of the `rgb` section (rgb.iterations, densification).

`train_language` is the stage entry (rule train_language); `fit_language` the in-memory core.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ccl.config import as_params
from ccl.splat.config import LanguageConfig, RgbConfig
from ccl.splat.train_rgb import RGB_LOSS_NAME, ColourRun, optimise, split_views, view_order

log = logging.getLogger(__name__)

CE_LOSS_NAME = "cross-entropy"


@dataclass(frozen=True)
class LanguageMetrics:
    """What `{scale}.metrics.json` holds. Accuracies are over pixels whose index map is not −1."""

    accuracy_all: float  # pixel accuracy over every view
    accuracy_train: float  # over the training views
    accuracy_heldout: float | None  # over the held-out views (None when holdout_every = 0)
    accuracy_per_view: dict[str, float]  # frame name → accuracy
    labelled_fraction: float  # share of pixels with a class (not −1), all views
    n_classes: int
    n_gaussians: int
    iterations: int
    seconds: float  # wall time of this run (resumed runs: since the resume)
    resumed_from: int  # iteration a partial checkpoint was resumed from, 0 = fresh start
    joint: bool
    psnr_heldout: float | None = None  # joint runs: colour PSNR on the held-out views
    # the best accuracy any 3D field could reach: share of labelled pixels agreeing with the majority
    # class of their voxel (pixels back-projected with the field's depth; see index_consistency)
    index_consistency: float | None = None
    consistency_voxel: float | None = None  # voxel edge, scene units (0.01 × the scene scale)
    heldout_views: list[str] = field(default_factory=list)


# --- stage entry -----------------------------------------------------------------------------------------


def read_index_maps(
    cameras: Sequence[Any], masks_path: str | os.PathLike, codebook_path: str | os.PathLike
) -> tuple[list[np.ndarray], np.ndarray]:
    """(index maps [H, W] int64 per camera, prototypes [N, D] float32) from a scale's masks and codebook.

    Checks, before any training, that every camera has a frame in both files, that the prototype index
    has one entry per mask and lies in [0, N), and that every map has the camera's size.
    """
    from ccl.codebook import paint_index_map
    from ccl.io import open_h5_for_read

    maps = []
    with (
        open_h5_for_read(masks_path, kind="masks") as fm,
        open_h5_for_read(codebook_path, kind="codebook") as fc,
    ):
        prototypes = np.asarray(fc["prototypes"], dtype=np.float32)
        n = len(prototypes)
        for cam in cameras:
            for f, path in ((fm, masks_path), (fc, codebook_path)):
                if cam.name not in f:
                    raise ValueError(
                        f"{path}: no frame {cam.name!r} (the scene has it); the file was made for another "
                        "scene or frame set: rerun its rule"
                    )
            seg = np.asarray(fm[cam.name]["segmentation"])
            proto = np.asarray(fc[cam.name]["prototype_index"])
            n_masks = int(seg.max()) + 1 if seg.size else 0
            if len(proto) < n_masks:
                raise ValueError(
                    f"{codebook_path}: frame {cam.name} has {len(proto)} prototype indices but "
                    f"{masks_path} has {n_masks} masks there; the codebook is stale: rerun its rule"
                )
            if len(proto) and (proto.min() < 0 or proto.max() >= n):
                raise ValueError(
                    f"{codebook_path}: frame {cam.name}: prototype_index outside [0, {n}) "
                    f"(got {int(proto.min())}..{int(proto.max())})"
                )
            maps.append(paint_index_map(seg, proto))
    check_index_maps(cameras, maps, n_classes=n, source=str(masks_path))
    return maps, prototypes


def check_index_maps(
    cameras: Sequence[Any], maps: Sequence[np.ndarray], *, n_classes: int, source: str
) -> None:
    """Every map [H, W] integer, of its camera's size, values in {−1} ∪ [0, n_classes)."""
    if len(maps) != len(cameras):
        raise ValueError(f"{source}: {len(maps)} index maps for {len(cameras)} cameras")
    for cam, m in zip(cameras, maps, strict=True):
        m = np.asarray(m)
        if m.shape != (cam.height, cam.width):
            raise ValueError(
                f"{source}: frame {cam.name}: index map is {m.shape[1] if m.ndim > 1 else '?'}x{m.shape[0]} "
                f"(W x H) but the camera is {cam.width}x{cam.height}; the masks were made at another image "
                "size (scene_load.downscale?): rerun the masks rule with this scene config"
            )
        if not np.issubdtype(m.dtype, np.integer):
            raise ValueError(f"{source}: frame {cam.name}: index map has dtype {m.dtype}, expected integers")
        if m.size and (m.min() < -1 or m.max() >= n_classes):
            raise ValueError(
                f"{source}: frame {cam.name}: index map values {int(m.min())}..{int(m.max())} outside "
                f"-1..{n_classes - 1} (n_classes = {n_classes})"
            )


def train_language(
    out_path: str | os.PathLike,
    *,
    manifest: str | os.PathLike,
    scene_load: Any,
    masks_path: str | os.PathLike,
    codebook_path: str | os.PathLike,
    rgb_path: str | os.PathLike | None,
    cfg: LanguageConfig,
    rgb_cfg: RgbConfig,
    seed: int,
    device: str = "auto",
    scale: str = "",
    variant: str = "",
    metrics_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> LanguageMetrics:
    """Train the language field of one scale and codebook variant; write `{scale}.safetensors` + metrics.

    `rgb_path` is the colour field (frozen geometry); unused when `cfg.joint`.
    """
    from ccl.io import atomic_write_json, file_sha256
    from ccl.scene import load_image, load_scene_from_manifest
    from ccl.splat.checkpoint import fingerprint, load_rgb_field, partial_path, save_language_field
    from ccl.splat.render import resolve_device

    cfg.validate()
    rgb_cfg.validate()
    dev = resolve_device(device)
    scene = load_scene_from_manifest(manifest, cfg=scene_load)
    maps, prototypes = read_index_maps(scene.cameras, masks_path, codebook_path)
    inputs = {"masks": file_sha256(masks_path), "codebook": file_sha256(codebook_path)}
    gaussians, images = None, None
    if cfg.joint:
        images = [load_image(c, cfg=scene_load, cache_dir=cache_dir) for c in scene.cameras]
    else:
        if rgb_path is None:
            raise ValueError(
                "train_language: language.joint is false, so the colour field (rgb_path) is needed"
            )
        gaussians, _ = load_rgb_field(rgb_path, scene=scene.name)
        inputs["rgb"] = file_sha256(rgb_path)
    out_path = Path(out_path)
    metrics_path = Path(metrics_path) if metrics_path else out_path.with_name(out_path.stem + ".metrics.json")
    header = {
        "config": as_params(cfg),
        "rgb_config": as_params(rgb_cfg),
        "scene": scene.name,
        "scale": scale,
        "variant": variant,
        "device": dev,
        "seed": seed,
        "inputs": inputs,
    }
    run_id = {**header, "stage": "language", "device": None, "frames": scene.frame_names}
    lf, metrics = fit_language(
        scene.cameras,
        maps,
        n_classes=len(prototypes),
        gaussians=gaussians,
        images=images,
        points_xyz=scene.points_xyz,
        points_rgb=scene.points_rgb,
        cfg=cfg,
        rgb_cfg=rgb_cfg,
        seed=seed,
        device=dev,
        state_path=partial_path(out_path),
        fingerprint=fingerprint(run_id),
        header=header,
    )
    save_language_field(
        out_path, lf, header={**header, "iteration": metrics.iterations, "metrics": asdict(metrics)}
    )
    atomic_write_json(
        metrics_path, {**asdict(metrics), "scene": scene.name, "scale": scale, "variant": variant}
    )
    partial_path(out_path).unlink(missing_ok=True)
    log.info(
        "%s: pixel accuracy %.3f (train %.3f, held-out %s) over %d classes",
        out_path, metrics.accuracy_all, metrics.accuracy_train,
        "n/a" if metrics.accuracy_heldout is None else f"{metrics.accuracy_heldout:.3f}", metrics.n_classes,
    )  # fmt: skip
    return metrics


# --- in-memory core ----------------------------------------------------------------------------------------


def fit_language(
    cameras: Sequence[Any],
    index_maps: Sequence[np.ndarray],
    *,
    n_classes: int,
    gaussians: Any = None,
    images: Sequence[np.ndarray] | None = None,
    points_xyz: np.ndarray | None = None,
    points_rgb: np.ndarray | None = None,
    cfg: LanguageConfig,
    rgb_cfg: RgbConfig | None = None,
    seed: int,
    device: str = "cpu",
    state_path: Path | None = None,
    fingerprint: str = "",
    header: dict[str, Any] | None = None,
    callback: Callable[[int], None] | None = None,
) -> tuple[Any, LanguageMetrics]:
    """Fit a language field to index maps ([H, W] int, −1 = no mask; one per camera).

    Frozen mode (`cfg.joint` false): `gaussians` is the colour field whose geometry is kept. Joint mode:
    `images` and the sparse points are needed, and colour and language are fitted together.
    """
    import torch

    from ccl.splat.checkpoint import LanguageField, load_train_state
    from ccl.splat.train_rgb import initial_gaussians, load_views

    cfg.validate()
    rgb_cfg = rgb_cfg if rgb_cfg is not None else RgbConfig()
    check_index_maps(cameras, index_maps, n_classes=n_classes, source="index maps")
    targets = [torch.from_numpy(np.asarray(m, dtype=np.int64)).to(device) for m in index_maps]
    train_idx, test_idx = split_views(len(cameras), cfg.holdout_every)
    labelled = [i for i in train_idx if bool((targets[i] >= 0).any())]
    if not labelled:
        raise ValueError(
            "index maps: no training view has a single labelled pixel (all −1): nothing to learn"
        )
    if cfg.joint:
        if images is None or points_xyz is None or points_rgb is None:
            raise ValueError("fit_language: joint training needs the images and the sparse points")
        views = load_views(cameras, images, device=device)
        # the colour schedule drives a joint run; only train_rgb's views with labels are used
        iterations = rgb_cfg.iterations
    elif gaussians is None:
        raise ValueError("fit_language: frozen training needs the colour field's Gaussians")
    else:
        iterations = cfg.iterations
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        resume = load_train_state(state_path, fingerprint=fingerprint) if state_path else None
        if cfg.joint:
            g0 = (
                None if resume else initial_gaussians(cameras, points_xyz, points_rgb, cfg=rgb_cfg, seed=seed)
            )
            n_g = len(g0) if g0 is not None else len(resume.params["means"])
            feats0 = 0.1 * torch.randn(n_g, cfg.feature_dim)
            run = JointRun.create(
                g0, cfg=rgb_cfg, cameras=cameras, device=device, state=resume,
                extra={"features": (feats0, cfg.lr_features)},
            )  # fmt: skip
            run.attach_decoder(cfg, n_classes, device, resume)
        else:
            run = FrozenLanguageRun.create(
                gaussians, cfg=cfg, n_classes=n_classes, device=device, state=resume
            )
        start = 0
        if resume is not None:
            torch.set_rng_state(resume.rng_state)
            start = resume.iteration
            log.info("%s: resuming at iteration %d of %d", state_path, start, iterations)

        def step_fn(step: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
            v = labelled[view_order(step, len(labelled), seed)]
            cam = cameras[v]
            if cfg.joint:
                out = run.render(cam, features=run.params["features"])
                img, feat = out.colors[0, ..., :3], out.colors[0, ..., 3:]
                gt = views.images[v].to(torch.float32) / 255.0
                losses = {
                    RGB_LOSS_NAME: run.colour_loss(img, gt),
                    CE_LOSS_NAME: cfg.language_weight * _ce(run.decoder, feat, targets[v]),
                }
                return losses, out.strategy_info()
            out = run.render(cam)
            return {CE_LOSS_NAME: _ce(run.decoder, out.colors[0], targets[v])}, None

        optimise(
            run,
            start=start,
            iterations=iterations,
            step_fn=step_fn,
            checkpoint_every=cfg.checkpoint_every,
            state_path=state_path,
            header={**(header or {}), "fingerprint": fingerprint},
            desc="train_language",
            callback=callback,
        )
    run.decoder.eval()
    lf = LanguageField(
        gaussians=run.gaussians(),
        features=run.params["features"].detach().cpu(),
        decoder=run.decoder.cpu(),
        header=dict(header or {}),
    )
    metrics = evaluate_language(lf, cameras, index_maps, train_idx, test_idx)
    from ccl.splat.model import scene_scale

    voxel = 0.01 * scene_scale(np.stack([c.center for c in cameras]))
    consistency = index_consistency(lf.gaussians, cameras, index_maps, voxel=voxel)
    psnr_heldout = None
    if cfg.joint and test_idx:
        from ccl.splat.train_rgb import evaluate_rgb

        psnr_heldout = evaluate_rgb(lf.gaussians, views, [], test_idx, cfg=rgb_cfg).psnr_heldout
    metrics = dataclasses.replace(
        metrics,
        iterations=iterations,
        seconds=time.perf_counter() - t0,
        resumed_from=start,
        joint=cfg.joint,
        psnr_heldout=psnr_heldout,
        index_consistency=consistency,
        consistency_voxel=voxel,
    )
    return lf, metrics


def _ce(decoder: Any, feat: Any, target: Any) -> Any:
    import torch.nn.functional as F

    logits = decoder(feat.reshape(-1, feat.shape[-1]))
    return F.cross_entropy(logits, target.reshape(-1), ignore_index=-1)


class JointRun(ColourRun):
    """A colour run whose Gaussians also carry language features, with the decoder beside them."""

    def attach_decoder(self, cfg: LanguageConfig, n_classes: int, device: str, resume: Any) -> None:
        import torch

        from ccl.splat.decoder import build_decoder

        self.language_cfg = cfg
        self.decoder = build_decoder(cfg.feature_dim, cfg.decoder_hidden, n_classes).to(device)
        if resume is not None:
            self.decoder.load_state_dict({k[len("decoder.") :]: v for k, v in resume.extra.items()})
        # after the strategy's sanity check (it wants exactly one optimiser per Gaussian parameter)
        self.optimizers["decoder"] = torch.optim.Adam(self.decoder.parameters(), lr=cfg.lr)
        if resume is not None:
            self.optimizers["decoder"].load_state_dict(resume.optimizers["decoder"])

    def learning_rates(self, step: int) -> dict[str, float]:
        return {
            **super().learning_rates(step),
            "features": self.language_cfg.lr_features,
            "decoder": self.language_cfg.lr,
        }

    def state_extra(self) -> dict[str, Any]:
        return {f"decoder.{k}": v for k, v in self.decoder.state_dict().items()}


class FrozenLanguageRun:
    """Features and decoder trained on top of a frozen colour field's geometry."""

    def __init__(self, gaussians, params, decoder, optimizers, *, cfg: LanguageConfig):
        self.frozen = gaussians
        self.params = params
        self.decoder = decoder
        self.optimizers = optimizers
        self.strategy = None
        self.strategy_state: dict[str, Any] = {}
        self.cfg = cfg

    @classmethod
    def create(cls, gaussians, *, cfg: LanguageConfig, n_classes: int, device: str, state=None):
        import torch

        from ccl.splat.decoder import build_decoder

        frozen = gaussians.to(device)
        if state is None:
            feats = 0.1 * torch.randn(len(frozen), cfg.feature_dim)
        else:
            feats = state.params["features"]
            if feats.shape[0] != len(frozen):
                raise ValueError(
                    f"partial checkpoint holds {feats.shape[0]} features but the colour field has {len(frozen)} "
                    "Gaussians; delete the *.partial.safetensors file and rerun"
                )
        params = torch.nn.ParameterDict({"features": torch.nn.Parameter(feats.to(device))})
        decoder = build_decoder(cfg.feature_dim, cfg.decoder_hidden, n_classes).to(device)
        if state is not None:
            decoder.load_state_dict({k[len("decoder.") :]: v for k, v in state.extra.items()})
        optimizers = {
            "features": torch.optim.Adam([params["features"]], lr=cfg.lr_features),
            "decoder": torch.optim.Adam(decoder.parameters(), lr=cfg.lr),
        }
        if state is not None:
            for name, opt in optimizers.items():
                opt.load_state_dict(state.optimizers[name])
        return cls(frozen, params, decoder, optimizers, cfg=cfg)

    def learning_rates(self, step: int) -> dict[str, float]:
        return {"features": self.cfg.lr_features, "decoder": self.cfg.lr}

    def render(self, camera):
        from ccl.splat.render import render_channels

        return render_channels(self.frozen, camera, rgb=False, features=self.params["features"])

    def gaussians(self):
        return self.frozen.to("cpu")

    def state_extra(self) -> dict[str, Any]:
        return {f"decoder.{k}": v for k, v in self.decoder.state_dict().items()}


def evaluate_language(
    lf: Any,
    cameras: Sequence[Any],
    index_maps: Sequence[np.ndarray],
    train_idx: list[int],
    test_idx: list[int],
) -> LanguageMetrics:
    """Pixel accuracy of the decoded class map against the index maps (pixels with −1 ignored)."""
    from ccl.splat.render import render_class_map

    correct, total, per_view = {}, {}, {}
    for i, cam in enumerate(cameras):
        target = np.asarray(index_maps[i])
        mask = target >= 0
        pred = render_class_map(lf, cam)
        correct[i] = int((pred[mask] == target[mask]).sum())
        total[i] = int(mask.sum())
        if total[i]:
            per_view[cam.name] = correct[i] / total[i]

    def acc(idx: Sequence[int]) -> float | None:
        t = sum(total[i] for i in idx)
        return sum(correct[i] for i in idx) / t if t else None

    n_pixels = sum(np.asarray(m).size for m in index_maps)
    return LanguageMetrics(
        accuracy_all=acc(range(len(cameras))) or 0.0,
        accuracy_train=acc(train_idx) or 0.0,
        accuracy_heldout=acc(test_idx) if test_idx else None,
        accuracy_per_view=per_view,
        labelled_fraction=sum(total.values()) / max(n_pixels, 1),
        n_classes=lf.n_classes,
        n_gaussians=len(lf.gaussians),
        iterations=0,
        seconds=0.0,
        resumed_from=0,
        joint=False,
        heldout_views=[cameras[i].name for i in test_idx],
    )


def index_consistency(
    gaussians: Any, cameras: Sequence[Any], index_maps: Sequence[np.ndarray], *, voxel: float
) -> float | None:
    """How 3D-consistent the index maps are: the accuracy ceiling of any field with one class per point.

    Every labelled pixel that the field covers (alpha > 0.5) is back-projected with the field's
    rendered depth into a voxel of edge `voxel`; among the voxels seen from at least two views, the
    result is the share of pixels whose class is their voxel's majority class over all views. Maps that give one surface different classes in
    different views (an inconsistent codebook) cap the language field's accuracy at this value.
    """
    import torch

    from ccl.splat.render import render_channels

    ids, classes, views = [], [], []
    ones = torch.ones(len(gaussians), 1)
    for view, (cam, m) in enumerate(zip(cameras, index_maps, strict=True)):
        with torch.no_grad():
            out = render_channels(gaussians, cam, rgb=False, features=ones)
        z = out.depth[0, ..., 0].numpy()
        ok = (np.asarray(m) >= 0) & (out.alpha[0, ..., 0].numpy() > 0.5)
        v, u = np.nonzero(ok)
        zz = z[ok].astype(np.float64)
        k = cam.K
        xc = np.stack([(u + 0.5 - k[0, 2]) / k[0, 0] * zz, (v + 0.5 - k[1, 2]) / k[1, 1] * zz, zz], axis=1)
        rot, t = cam.world_to_camera[:3, :3], cam.world_to_camera[:3, 3]
        ids.append(np.floor(((xc - t) @ rot) / voxel).astype(np.int64))
        classes.append(np.asarray(m)[ok].astype(np.int64))
        views.append(np.full(len(zz), view, dtype=np.int64))
    if sum(len(c) for c in classes) == 0:
        return None
    _, vid = np.unique(np.concatenate(ids), axis=0, return_inverse=True)
    vid, cls, view = vid.reshape(-1), np.concatenate(classes), np.concatenate(views)
    # only voxels seen from at least two views say anything about consistency
    seen = np.unique(vid * len(cameras) + view) // len(cameras)
    multi = np.bincount(seen, minlength=vid.max() + 1) >= 2
    keep = multi[vid]
    if not keep.any():
        return None
    vid, cls = vid[keep], cls[keep]
    n = int(cls.max()) + 1
    pairs, counts = np.unique(vid * n + cls, return_counts=True)
    starts = np.flatnonzero(np.r_[True, np.diff(pairs // n) != 0])
    return float(np.maximum.reduceat(counts, starts).sum() / len(cls))
