"""The language field of one scale (paper 3.4): per-Gaussian features decoded into the codebook classes.

Every Gaussian carries a `feature_dim`-dim feature, alpha-blended by the same rasterizer as colour; a
small MLP decoder maps the rendered feature of a pixel to logits over the N codebook prototypes; the
loss is the cross-entropy against the view's index map (`ccl.codebook.index_maps`), pixels with no
mask (−1) ignored. By default the geometry is the colour field's, frozen (each scale is a cheap job
of its own); `joint: true` trains colour and language together from the scene's points, following the
colour schedule of the `rgb` section (rgb.iterations, densification).

`train_language` is the stage entry (rule train_language); `fit_language` the in-memory core. The loop,
resume and the stop on divergence are `ccl.splat.trainer`'s; the measurements `ccl.splat.diagnostics`'.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ccl.config import as_params
from ccl.device import out_of_memory_names
from ccl.splat.config import LanguageConfig, RgbConfig
from ccl.splat.diagnostics import LanguageMetrics, evaluate_language, evaluate_rgb, index_consistency
from ccl.splat.train_rgb import RGB_LOSS_NAME, ColourRun, initial_gaussians, train_psnr
from ccl.splat.trainer import finish_stage, load_views, metrics_path_of, split_views, train, view_order

log = logging.getLogger(__name__)

# What lowers a language field's GPU memory, for the message when it runs out.
OUT_OF_MEMORY_KEYS = (
    "the images' size (scene_load.downscale), or the colour field's Gaussians (rgb.grow_grad2d higher, "
    "rgb.cap_max with rgb.strategy: mcmc)"
)

CE_LOSS_NAME = "cross-entropy"


# --- stage entry -----------------------------------------------------------------------------------------


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

    `rgb_path` is the colour field (frozen geometry); unused when `cfg.joint`. The index maps are
    checked before any training: masks and codebook of one scale and run, every camera's frame in them
    (and no other), every map of its camera's size.
    """
    from ccl.codebook.index_maps import read_index_maps
    from ccl.scene import load_image, load_scene_from_manifest
    from ccl.splat.checkpoint import fingerprint, load_rgb_field, partial_path, save_language_field
    from ccl.splat.render import resolve_device

    dev = resolve_device(device)
    scene = load_scene_from_manifest(manifest, cfg=scene_load)
    index_maps = read_index_maps(codebook_path, masks_path)
    maps = maps_of_cameras(scene.cameras, index_maps.maps, source=f"{masks_path} and {codebook_path}")
    check_index_maps(scene.cameras, maps, n_classes=index_maps.n_classes, source=str(masks_path))
    from ccl.io.codebook_h5 import read_codebook
    from ccl.io.masks_h5 import open_masks
    from ccl.io.provenance import check_made_from, check_scene_of, file_record

    rerun = "rerun the workflow, which makes masks, codebook and fields of one run"
    check_made_from(codebook_path, read_codebook(codebook_path).inputs.get("masks"), masks_path,
                    role="masks file", fix=rerun)  # fmt: skip
    with open_masks(masks_path) as masks:
        check_scene_of(masks_path, masks.inputs, manifest)
    inputs = {"masks": file_record(masks_path), "codebook": file_record(codebook_path)}
    gaussians, images = None, None
    if cfg.joint:
        images = [load_image(c, cfg=scene_load, cache_dir=cache_dir) for c in scene.cameras]
    else:
        if rgb_path is None:
            raise ValueError(
                "train_language: language.joint is false, so the colour field (rgb_path) is needed"
            )
        gaussians, rgb_header = load_rgb_field(rgb_path, scene=scene.name)
        check_made_from(rgb_path, (rgb_header.get("inputs") or {}).get("manifest"), manifest,
                        role="scene manifest", fix=rerun)  # fmt: skip
        inputs["rgb"] = file_record(rgb_path)
    out_path = Path(out_path)
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
    with out_of_memory_names("language", OUT_OF_MEMORY_KEYS):
        lf, metrics = fit_language(
            scene.cameras,
            maps,
            n_classes=index_maps.n_classes,
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
    finish_stage(
        out_path, lf, metrics, save=save_language_field, header=header,
        metrics_path=metrics_path_of(out_path, metrics_path),
        metrics_extra={"scene": scene.name, "scale": scale, "variant": variant},
    )  # fmt: skip
    log.info(
        "%s: pixel accuracy %.3f (train %.3f, held-out %s) over %d classes",
        out_path, metrics.accuracy_all, metrics.accuracy_train,
        "n/a" if metrics.accuracy_heldout is None else f"{metrics.accuracy_heldout:.3f}", metrics.n_classes,
    )  # fmt: skip
    return metrics


def maps_of_cameras(cameras: Sequence[Any], maps: dict[str, np.ndarray], *, source: str) -> list[np.ndarray]:
    """The index map of every camera, in camera order; the maps must be of exactly the cameras' frames."""
    names = [c.name for c in cameras]
    missing = [n for n in names if n not in maps]
    extra = sorted(set(maps) - set(names))
    if missing or extra:
        what = (
            f"no frame {missing[0]!r} (the scene has it)"
            if missing
            else f"frame {extra[0]!r} (not in the scene)"
        )
        raise ValueError(
            f"{source}: {what}; they hold {len(maps)} frames, the scene {len(names)}: the files were made "
            "for another scene or frame set: rerun their rules"
        )
    return [maps[n] for n in names]


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

    from ccl.splat.checkpoint import LanguageField
    from ccl.splat.model import scene_scale

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

    def build_run(resume: Any) -> JointRun | FrozenLanguageRun:
        if not cfg.joint:
            return FrozenLanguageRun.create(
                gaussians, cfg=cfg, n_classes=n_classes, device=device, state=resume
            )
        if resume is None:
            g0 = initial_gaussians(cameras, points_xyz, points_rgb, cfg=rgb_cfg, seed=seed)
            n_g = len(g0)
        else:
            g0, n_g = None, len(resume.params["means"])
        feats0 = 0.1 * torch.randn(n_g, cfg.feature_dim)
        run = JointRun.create(
            g0, cfg=rgb_cfg, cameras=cameras, device=device, state=resume,
            extra={"features": (feats0, cfg.lr_features)},
        )  # fmt: skip
        run.attach_decoder(cfg, n_classes, device, resume)
        return run

    def step_fn(run: JointRun | FrozenLanguageRun, step: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
        v = labelled[view_order(step, len(labelled), seed)]
        cam = cameras[v]
        if cfg.joint:
            out = run.render(cam, features=run.params["features"])
            img, feat = out.colors[0, ..., :3], out.colors[0, ..., 3:]
            gt = views.images[v].to(torch.float32) / 255.0
            measured = {"psnr_train": train_psnr(img, gt)}
            losses = {
                RGB_LOSS_NAME: run.colour_loss(img, gt),
                CE_LOSS_NAME: cfg.language_weight * _ce(run.decoder, feat, targets[v], measured=measured),
            }
            return losses, out.strategy_info(), measured
        out = run.render(cam)
        measured = {}
        return {CE_LOSS_NAME: _ce(run.decoder, out.colors[0], targets[v], measured=measured)}, None, measured

    run, start = train(
        build_run, step_fn, seed=seed, iterations=iterations, checkpoint_every=cfg.checkpoint_every,
        state_path=state_path, fingerprint=fingerprint, header=header, desc="train_language",
        callback=callback,
    )  # fmt: skip
    run.decoder.eval()
    lf = LanguageField(
        gaussians=run.gaussians(),
        features=run.params["features"].detach().cpu(),
        decoder=run.decoder.cpu(),
        header=dict(header or {}),
    )
    metrics = evaluate_language(lf, cameras, index_maps, train_idx, test_idx)
    voxel = 0.01 * scene_scale(np.stack([c.center for c in cameras]))
    consistency = index_consistency(lf.gaussians, cameras, index_maps, voxel=voxel)
    psnr_heldout = None
    if cfg.joint and test_idx:
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


def _ce(decoder: Any, feat: Any, target: Any, *, measured: dict[str, Any] | None = None) -> Any:
    """The cross-entropy of the decoded features against a view's index map (labelled pixels only); with
    `measured`, its `accuracy_train` set to the pixel accuracy of the same logits (a detached tensor: what
    the partial checkpoint records, `ccl.splat.trainer.window_progress`)."""
    import torch.nn.functional as F

    logits = decoder(feat.reshape(-1, feat.shape[-1]))
    target = target.reshape(-1)
    if measured is not None:
        labelled = target >= 0
        hits = (logits.detach().argmax(dim=-1) == target) & labelled
        measured["accuracy_train"] = hits.sum() / labelled.sum().clamp_min(1)
    return F.cross_entropy(logits, target, ignore_index=-1)


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
    """Features and decoder trained on top of a frozen colour field's geometry (a trainer.Run)."""

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
                    "Gaussians: it was made on another colour field; rename the *.partial.safetensors file (it is then "
                    "never read) and rerun"
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
