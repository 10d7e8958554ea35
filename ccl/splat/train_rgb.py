"""The colour field (3DGS, paper 3.1): fit Gaussians to a scene's posed images.

`train_rgb` is the stage entry (rule train_rgb): scene manifest → `rgb.safetensors` + `rgb.metrics.json`.
`fit_rgb` is the in-memory core: Gaussians initialised at the sparse points (or uniform in the cameras'
bounds), loss (1 − λ)·L1 + λ·D-SSIM, Adam with 3DGS's per-parameter learning rates, densification by
gsplat's strategy, held-out PSNR. The loop (`optimise`) is shared with the language field: periodic
resumable checkpoints, resume, and a stop on divergence.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ccl.config import as_params
from ccl.splat.config import RgbConfig

log = logging.getLogger(__name__)

RGB_LOSS_NAME = "colour loss ((1 - λ)·L1 + λ·D-SSIM)"


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN/inf; the last good partial checkpoint is kept."""

    def __init__(self, message: str, *, iteration: int, what: str, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.iteration = iteration
        self.what = what
        self.checkpoint = checkpoint


@dataclass(frozen=True)
class RgbMetrics:
    """What rgb.metrics.json holds."""

    psnr_heldout: float | None  # dB, mean over held-out views (None when holdout_every = 0)
    psnr_heldout_per_view: dict[str, float]  # frame name → dB
    psnr_train: float | None  # dB, mean over the training views
    n_gaussians: int
    iterations: int
    seconds: float  # wall time of this run (resumed runs: since the resume)
    resumed_from: int  # iteration a partial checkpoint was resumed from, 0 = fresh start
    heldout_views: list[str] = field(default_factory=list)


@dataclass
class Views:
    """The training data of one scene in memory."""

    cameras: list[Any]  # ccl.scene.Camera
    images: list[Any]  # [H, W, 3] uint8 torch tensors, one per camera


def split_views(n: int, holdout_every: int) -> tuple[list[int], list[int]]:
    """(train, held-out) view indices: every `holdout_every`-th view (0, k, 2k, ...) is held out."""
    if holdout_every <= 0:
        return list(range(n)), []
    test = [i for i in range(n) if i % holdout_every == 0]
    train = [i for i in range(n) if i % holdout_every != 0]
    if not train:
        raise ValueError(f"holdout_every = {holdout_every} leaves no training view among {n}")
    return train, test


def view_order(step: int, n: int, seed: int) -> int:
    """The view of a step: a fresh permutation per epoch, a pure function of (seed, epoch), so resumes match."""
    epoch, i = divmod(step, n)
    return int(np.random.default_rng([seed, epoch]).permutation(n)[i])


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
    from ccl.io import atomic_write_json
    from ccl.scene import load_image, load_scene_from_manifest
    from ccl.splat.checkpoint import fingerprint, partial_path, save_rgb_field
    from ccl.splat.render import resolve_device

    cfg.validate()
    dev = resolve_device(device)
    scene = load_scene_from_manifest(manifest, cfg=scene_load)
    images = [load_image(c, cfg=scene_load, cache_dir=cache_dir) for c in scene.cameras]
    out_path = Path(out_path)
    metrics_path = Path(metrics_path) if metrics_path else out_path.with_name(out_path.stem + ".metrics.json")
    run_id = {
        "stage": "rgb",
        "config": as_params(cfg),
        "seed": seed,
        "scene": scene.name,
        "frames": scene.frame_names,
        "n_points": len(scene.points_xyz),
    }
    header = {"config": as_params(cfg), "scene": scene.name, "device": dev, "seed": seed}
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
    save_rgb_field(
        out_path, gaussians, header={**header, "iteration": cfg.iterations, "metrics": asdict(metrics)}
    )
    atomic_write_json(
        metrics_path, {**asdict(metrics), "scene": scene.name, "config": as_params(cfg), "seed": seed}
    )
    partial_path(out_path).unlink(missing_ok=True)
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

    from ccl.splat.checkpoint import load_train_state

    cfg.validate()
    views = load_views(cameras, images, device=device)
    train_idx, test_idx = split_views(len(cameras), cfg.holdout_every)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        resume = load_train_state(state_path, fingerprint=fingerprint) if state_path else None
        if resume is None:
            gaussians = initial_gaussians(cameras, points_xyz, points_rgb, cfg=cfg, seed=seed)
            run = ColourRun.create(gaussians, cfg=cfg, cameras=cameras, device=device)
            start = 0
        else:
            run = ColourRun.create(None, cfg=cfg, cameras=cameras, device=device, state=resume)
            torch.set_rng_state(resume.rng_state)
            start = resume.iteration
            log.info("%s: resuming at iteration %d of %d", state_path, start, cfg.iterations)

        def step_fn(step: int) -> tuple[dict[str, Any], dict[str, Any]]:
            v = train_idx[view_order(step, len(train_idx), seed)]
            out = run.render(views.cameras[v])
            gt = views.images[v].to(torch.float32) / 255.0
            losses = {RGB_LOSS_NAME: run.colour_loss(out.colors[0], gt)}
            return losses, out.strategy_info()

        optimise(
            run,
            start=start,
            iterations=cfg.iterations,
            step_fn=step_fn,
            checkpoint_every=cfg.checkpoint_every,
            state_path=state_path,
            header={**(header or {}), "fingerprint": fingerprint},
            desc="train_rgb",
            callback=callback,
        )
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


def load_views(cameras: Sequence[Any], images: Sequence[np.ndarray], *, device: str) -> Views:
    import torch

    if len(cameras) != len(images):
        raise ValueError(f"{len(cameras)} cameras but {len(images)} images")
    imgs = []
    for cam, img in zip(cameras, images, strict=True):
        img = np.asarray(img)
        if img.shape != (cam.height, cam.width, 3) or img.dtype != np.uint8:
            raise ValueError(
                f"frame {cam.name}: image is {img.dtype} {list(img.shape)}, expected uint8 "
                f"[{cam.height}, {cam.width}, 3] (the camera's size)"
            )
        imgs.append(torch.from_numpy(np.ascontiguousarray(img)).to(device))
    return Views(cameras=list(cameras), images=imgs)


def initial_gaussians(
    cameras: Sequence[Any], points_xyz: np.ndarray, points_rgb: np.ndarray, *, cfg: RgbConfig, seed: int
) -> Any:
    """Gaussians at the sparse points, or `init_random_points` uniform in the cameras' bounds if none."""
    from ccl.splat.model import init_gaussians, random_points_in_view

    xyz, rgb = np.asarray(points_xyz), np.asarray(points_rgb)
    if len(xyz) == 0:
        centers = np.stack([c.center for c in cameras])
        forwards = np.stack([c.world_to_camera[2, :3] for c in cameras])  # camera +z in world
        xyz, rgb = random_points_in_view(
            centers, forwards, cfg.init_random_points, np.random.default_rng(seed)
        )
        log.info("the scene has no sparse points: %d random Gaussians in the cameras' bounds", len(xyz))
    return init_gaussians(
        xyz, rgb, sh_degree=cfg.sh_degree, init_opacity=cfg.init_opacity, init_scale=cfg.init_scale
    )


class ColourRun:
    """Parameters, optimisers and densification strategy of a colour-field optimisation."""

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
        from ccl.splat.losses import rgb_loss

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


def optimise(
    run: Any,
    *,
    start: int,
    iterations: int,
    step_fn: Callable[[int], tuple[dict[str, Any], dict[str, Any] | None]],
    checkpoint_every: int,
    state_path: Path | None,
    header: dict[str, Any],
    desc: str,
    callback: Callable[[int], None] | None = None,
) -> None:
    """The training loop shared by the colour and language fields.

    Per step: set learning rates, `step_fn(step)` → (named losses, strategy info), stop if a loss is not
    finite, backward, stop if a gradient is not finite, Adam step, densification hook, and every
    `checkpoint_every` steps a resumable checkpoint at `state_path`.
    """
    import torch

    from ccl.runlog import progress
    from ccl.splat import strategy as strat
    from ccl.splat.checkpoint import save_train_state

    last_saved: int | None = start if start > 0 else None
    recent: list[float] = []
    for step in progress(range(start, iterations), desc=desc, total=iterations, initial=start, unit="step"):
        lrs = run.learning_rates(step)
        for name, opt in run.optimizers.items():
            if name in lrs:
                for group in opt.param_groups:
                    group["lr"] = lrs[name]
        losses, info = step_fn(step)
        for name, value in losses.items():
            if not torch.isfinite(value):
                _diverged(desc, step, f"loss {name!r} is {float(value.detach())}", state_path, last_saved)
        loss = sum(losses.values())
        recent.append(float(loss.detach()))
        if info is not None and run.strategy is not None:
            strat.step_pre_backward(run.strategy, run.params, run.optimizers, run.strategy_state, step, info)
        loss.backward()
        for name, p in _named_trainables(run):
            if p.grad is not None and not torch.isfinite(p.grad).all():
                _diverged(desc, step, f"the gradient of {name!r} is not finite", state_path, last_saved)
        for opt in run.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        if info is not None and run.strategy is not None:
            strat.step_post_backward(
                run.strategy, run.params, run.optimizers, run.strategy_state, step, info,
                means_lr=lrs.get("means", 0.0),
            )  # fmt: skip
        done = step + 1
        if done % checkpoint_every == 0 or done == iterations:
            log.info(
                "%s: step %d/%d, loss %.4f (mean of the last %d steps), %d Gaussians",
                desc,
                done,
                iterations,
                float(np.mean(recent)),
                len(recent),
                len(next(iter(run.params.values()))),
            )
            recent.clear()
        if state_path is not None and done % checkpoint_every == 0 and done < iterations:
            save_train_state(
                state_path,
                iteration=done,
                params=run.params,
                optimizers=run.optimizers,
                strategy_state=run.strategy_state,
                extra=run.state_extra(),
                header=header,
            )
            last_saved = done
        if callback is not None:
            callback(step)


def _named_trainables(run: Any):
    yield from ((k, p) for k, p in run.params.items() if p.requires_grad)
    if run.decoder is not None:
        yield from ((f"decoder.{k}", p) for k, p in run.decoder.named_parameters())


def _diverged(desc: str, step: int, what: str, state_path: Path | None, last_saved: int | None) -> None:
    if state_path is not None and last_saved is not None:
        kept = (
            f"the last good checkpoint is kept: {state_path} (iteration {last_saved}); a rerun with the "
            "same config resumes from it and diverges again, so lower the learning rates first (a changed "
            "config starts over)"
        )
    else:
        kept = "no checkpoint had been written yet (nothing to keep); lower the learning rates and rerun"
    msg = f"{desc} diverged at iteration {step}: {what}; {kept}"
    log.error(msg)
    raise TrainingDiverged(msg, iteration=step, what=what, checkpoint=state_path if last_saved else None)


def evaluate_rgb(
    gaussians: Any, views: Views, train_idx: list[int], test_idx: list[int], *, cfg: RgbConfig
) -> RgbMetrics:
    """PSNR of the field on the held-out and the training views."""
    import torch

    from ccl.splat.losses import psnr
    from ccl.splat.render import render_channels

    g = gaussians.to(views.images[0].device)

    def view_psnr(i: int) -> float:
        with torch.no_grad():
            out = render_channels(g, views.cameras[i], background=cfg.background)
        return psnr(out.colors[0], views.images[i].to(torch.float32) / 255.0)

    held = {views.cameras[i].name: view_psnr(i) for i in test_idx}
    train = [view_psnr(i) for i in train_idx]
    return RgbMetrics(
        psnr_heldout=float(np.mean(list(held.values()))) if held else None,
        psnr_heldout_per_view=held,
        psnr_train=float(np.mean(train)) if train else None,
        n_gaussians=len(gaussians),
        iterations=cfg.iterations,
        seconds=0.0,
        resumed_from=0,
        heldout_views=list(held),
    )
