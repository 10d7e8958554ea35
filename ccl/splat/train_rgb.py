"""The colour field (3DGS, paper 3.1): fit Gaussians to a scene's posed images.

`train_rgb` is the stage entry (rule train_rgb): scene manifest → `rgb.safetensors` + `rgb.metrics.json`.
`fit_rgb` is the in-memory core: Gaussians initialised at the sparse points (or uniform in the cameras'
bounds), loss (1 − λ)·L1 + λ·D-SSIM, Adam with 3DGS's per-parameter learning rates, densification by
gsplat's strategy, held-out PSNR. The loop, resume and the stop on divergence are `ccl.splat.trainer`'s;
`ColourRun` is what it trains here (and, with language features added, in a joint language run).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ccl.config import as_params
from ccl.device import out_of_memory_names
from ccl.splat.config import RgbConfig
from ccl.splat.diagnostics import RgbMetrics, evaluate_rgb
from ccl.splat.trainer import finish_stage, load_views, metrics_path_of, split_views, train, view_order

log = logging.getLogger(__name__)

# What lowers the colour field's GPU memory (its Gaussians and the images), for the message when it
# runs out; training resumes from its last *.partial.safetensors.
OUT_OF_MEMORY_KEYS = (
    "the Gaussians' number (rgb.grow_grad2d higher, or rgb.strategy: mcmc with a lower rgb.cap_max) "
    "or the images' size (scene_load.downscale)"
)

RGB_LOSS_NAME = "colour loss ((1 - λ)·L1 + λ·D-SSIM)"


# --- stage entry -----------------------------------------------------------------------------------------


def train_rgb(
    out_path: str | os.PathLike,
    *,
    manifest: str | os.PathLike,
    scene_load: Any,
    cfg: RgbConfig,
    seed: int,
    device: str = "auto",
    metrics_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> RgbMetrics:
    """Train the colour field of the scene a manifest describes; write the checkpoint and its metrics.

    A `<out>.partial.safetensors` beside `out_path` is resumed from if it belongs to the same config,
    seed and scene; it is deleted when the final file is written.
    """
    from ccl.scene import load_image, load_scene_from_manifest
    from ccl.splat.checkpoint import fingerprint, partial_path, save_rgb_field
    from ccl.splat.render import resolve_device

    dev = resolve_device(device)
    scene = load_scene_from_manifest(manifest, cfg=scene_load)
    images = [load_image(c, cfg=scene_load, cache_dir=cache_dir) for c in scene.cameras]
    out_path = Path(out_path)
    init = initialisation_record(manifest, n_points=len(scene.points_xyz), cfg=cfg)
    log.info("initialisation: %s (%s)", init["what"], init["where"])
    init.pop("where")  # a path on this machine: rgb.metrics.json stays the same wherever the run was made
    run_id = {
        "stage": "rgb",
        "config": as_params(cfg),
        "seed": seed,
        "scene": scene.name,
        "frames": scene.frame_names,
        "n_points": len(scene.points_xyz),
    }
    from ccl.io.provenance import file_record

    # what the field was made from: a language field checks its scene against it
    header = {"config": as_params(cfg), "scene": scene.name, "device": dev, "seed": seed,
              "inputs": {"manifest": file_record(manifest)}}  # fmt: skip
    with out_of_memory_names("rgb", OUT_OF_MEMORY_KEYS):
        gaussians, metrics = fit_rgb(
            scene.cameras,
            images,
            points_xyz=scene.points_xyz,
            points_rgb=scene.points_rgb,
            cfg=cfg,
            seed=seed,
            device=dev,
            state_path=partial_path(out_path),
            fingerprint=fingerprint(run_id),
            header=header,
        )
    finish_stage(
        out_path, gaussians, metrics, save=save_rgb_field, header=header,
        metrics_path=metrics_path_of(out_path, metrics_path),
        metrics_extra={"scene": scene.name, "config": as_params(cfg), "seed": seed, "initialisation": init},
    )  # fmt: skip
    log.info(
        "%s: %d Gaussians, held-out PSNR %s dB, train PSNR %s dB",
        out_path, metrics.n_gaussians,
        "n/a" if metrics.psnr_heldout is None else f"{metrics.psnr_heldout:.2f}", f"{metrics.psnr_train:.2f}",
    )  # fmt: skip
    return metrics


# --- in-memory core ----------------------------------------------------------------------------------------


def fit_rgb(
    cameras: Sequence[Any],
    images: Sequence[np.ndarray],
    *,
    points_xyz: np.ndarray,
    points_rgb: np.ndarray,
    cfg: RgbConfig,
    seed: int,
    device: str = "cpu",
    state_path: Path | None = None,
    fingerprint: str = "",
    header: dict[str, Any] | None = None,
    callback: Callable[[int], None] | None = None,
) -> tuple[Any, RgbMetrics]:
    """Fit a colour field to `images` ([H, W, 3] uint8, one per camera); return (Gaussians, metrics).

    `state_path`: where partial checkpoints go (None = none); a matching one there is resumed from.
    `callback(step)` is called after every completed step (tests use it to interrupt a run).
    """
    import torch

    views = load_views(cameras, images, device=device)
    train_idx, test_idx = split_views(len(cameras), cfg.holdout_every)
    t0 = time.perf_counter()

    def build_run(resume: Any) -> ColourRun:
        if resume is None:
            gaussians = initial_gaussians(cameras, points_xyz, points_rgb, cfg=cfg, seed=seed)
            return ColourRun.create(gaussians, cfg=cfg, cameras=cameras, device=device)
        return ColourRun.create(None, cfg=cfg, cameras=cameras, device=device, state=resume)

    def step_fn(run: ColourRun, step: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        v = train_idx[view_order(step, len(train_idx), seed)]
        out = run.render(views.cameras[v])
        gt = views.images[v].to(torch.float32) / 255.0
        losses = {RGB_LOSS_NAME: run.colour_loss(out.colors[0], gt)}
        return losses, out.strategy_info(), {"psnr_train": train_psnr(out.colors[0], gt)}

    run, start = train(
        build_run, step_fn, seed=seed, iterations=cfg.iterations, checkpoint_every=cfg.checkpoint_every,
        state_path=state_path, fingerprint=fingerprint, header=header, desc="train_rgb", callback=callback,
    )  # fmt: skip
    gaussians = run.gaussians()
    metrics = evaluate_rgb(gaussians, views, train_idx, test_idx, cfg=cfg)
    metrics = RgbMetrics(
        **{
            **asdict(metrics),
            "iterations": cfg.iterations,
            "seconds": time.perf_counter() - t0,
            "resumed_from": start,
        }
    )
    return gaussians, metrics


def train_psnr(img: Any, gt: Any) -> Any:
    """The PSNR (dB) of a step's render of its training view, a tensor (no wait on a GPU): the partial
    checkpoint records its mean since the last one (`ccl.splat.trainer.window_progress`)."""
    import torch

    mse = (img.detach().clamp(0, 1) - gt).square().mean()
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


def initialisation_record(manifest: str | os.PathLike, *, n_points: int, cfg: RgbConfig) -> dict:
    """Where the colour field starts from: {source, points, what} for rgb.metrics.json, and `where` (the
    file or folder on this machine) for the log. source: "triangulated" (the points file the manifest
    names, from the poses), "scene" (the scene's own sparse points), or "random" (`rgb.init_random_points`
    of them, where the scene has none)."""
    from ccl.scene import read_manifest

    m = read_manifest(manifest)
    if n_points == 0:
        source, points, where = "random", cfg.init_random_points, "no points file"
        what = f"{points} random points where the cameras look (the scene has no sparse points)"
    elif m.points is not None:
        source, points, where = "triangulated", n_points, str(m.points["path"])
        what = f"{points} points triangulated from the poses ({Path(where).name})"
    else:
        source, points, where = "scene", n_points, str(m.root)
        what = f"the scene's {points} sparse points"
    return {"source": source, "points": int(points), "what": what, "where": where}


def initial_gaussians(
    cameras: Sequence[Any], points_xyz: np.ndarray, points_rgb: np.ndarray, *, cfg: RgbConfig, seed: int
) -> Any:
    """Gaussians at the sparse points, or `init_random_points` random ones where the cameras look (never at them) if none."""
    from ccl.splat.model import init_gaussians, random_points_in_view

    xyz, rgb = np.asarray(points_xyz), np.asarray(points_rgb)
    if len(xyz) == 0:
        centers = np.stack([c.center for c in cameras])
        forwards = np.stack([c.world_to_camera[2, :3] for c in cameras])  # camera +z in world
        xyz, rgb = random_points_in_view(
            centers, forwards, cfg.init_random_points, np.random.default_rng(seed)
        )
        log.info(
            "the scene has no sparse points: %d random Gaussians where the cameras look, away from them",
            len(xyz),
        )
    return init_gaussians(
        xyz, rgb, sh_degree=cfg.sh_degree, init_opacity=cfg.init_opacity, init_scale=cfg.init_scale
    )


class ColourRun:
    """Parameters, optimisers and densification strategy of a colour-field optimisation (a trainer.Run)."""

    def __init__(self, params, optimizers, strategy, strategy_state, *, cfg, scene_scale):
        self.params = params
        self.optimizers = optimizers
        self.strategy = strategy
        self.strategy_state = strategy_state
        self.cfg = cfg
        self.scene_scale = scene_scale
        self.decoder = None
        self.background = list(cfg.background)

    @classmethod
    def create(cls, gaussians, *, cfg: RgbConfig, cameras, device, state=None, extra: dict | None = None):
        """From initial Gaussians, or from a resumed `state` (TrainState). `extra`: more parameters
        (name → (tensor, lr)), e.g. the language features of a joint run."""
        import torch

        from ccl.splat.model import scene_scale
        from ccl.splat.strategy import build_strategy

        scale = scene_scale(np.stack([c.center for c in cameras]))
        if state is None:
            params = gaussians.param_dict().to(device)
            for name, (t, _) in (extra or {}).items():
                params[name] = torch.nn.Parameter(t.detach().clone().to(device))
        else:
            params = torch.nn.ParameterDict(
                {k: torch.nn.Parameter(v.to(device)) for k, v in state.params.items()}
            )
        lrs = colour_lrs(cfg, scale, step=0)
        lrs.update({name: lr for name, (_, lr) in (extra or {}).items()})
        optimizers = {
            name: torch.optim.Adam([params[name]], lr=lrs[name], eps=1e-15) for name in params if name in lrs
        }
        strategy, strategy_state = build_strategy(cfg, scene_scale=scale)
        if state is not None:
            for name, opt in optimizers.items():
                opt.load_state_dict(state.optimizers[name])
            strategy_state.update(
                {k: (v.to(device) if hasattr(v, "to") else v) for k, v in state.strategy_state.items()}
            )
        strategy.check_sanity(params, optimizers)
        return cls(params, optimizers, strategy, strategy_state, cfg=cfg, scene_scale=scale)

    def learning_rates(self, step: int) -> dict[str, float]:
        return colour_lrs(self.cfg, self.scene_scale, step=step)

    def render(self, camera, *, features=None, rgb=True):
        from ccl.splat.render import render_channels

        return render_channels(
            None, camera, rgb=rgb, features=features, background=self.background, params=self.params
        )

    def colour_loss(self, img, gt):
        from ccl.splat.losses import rgb_loss  # looked up per call: tests replace it to inject a NaN

        loss = rgb_loss(img, gt, ssim_lambda=self.cfg.ssim_lambda)
        if self.cfg.opacity_reg > 0:
            loss = loss + self.cfg.opacity_reg * self.params["opacities"].sigmoid().mean()
        if self.cfg.scale_reg > 0:
            loss = loss + self.cfg.scale_reg * self.params["scales"].exp().mean()
        return loss

    def gaussians(self):
        from ccl.splat.model import Gaussians

        return Gaussians.from_param_dict(self.params).to("cpu")

    def state_extra(self) -> dict[str, Any]:
        return {}


def colour_lrs(cfg: RgbConfig, scene_scale: float, *, step: int) -> dict[str, float]:
    """3DGS's per-parameter learning rates at `step` (means decay exponentially over the run)."""
    decay = cfg.lr_means_final_factor ** (step / max(cfg.iterations, 1))
    return {
        "means": cfg.lr_means * scene_scale * decay,
        "quats": cfg.lr_quats,
        "scales": cfg.lr_scales,
        "opacities": cfg.lr_opacities,
        "sh0": cfg.lr_sh0,
        "shN": cfg.lr_shN,
    }
