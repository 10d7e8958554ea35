"""The training loop both Gaussian fields share (colour: `train_rgb`, language: `train_language`).

A field's module brings a run (its parameters, optimisers and densification strategy, the `Run`
protocol) and a step function (the named losses of one step). `train` seeds the RNG, resumes from a
matching partial checkpoint or starts afresh, and runs `optimise`: per step the learning rates, the
losses, backward, a stop on a NaN/inf loss or gradient (`TrainingDiverged`, the last good partial
checkpoint kept), Adam, the densification hooks, and every `checkpoint_every` steps a resumable
checkpoint. `finish_stage` is the end of both stage entries: the field and its metrics written, the
partial checkpoint removed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

# one step's losses by name (each a scalar tensor, summed for backward) and the rasterizer's
# `strategy_info()` for the densification hooks (None: the run does not densify); optionally a third
# item, the step's measures by name (scalar tensors, e.g. the training view's PSNR): their mean since
# the last checkpoint goes into the partial checkpoint's header (`progress`), which `ccl view` shows
StepResult = (
    tuple[dict[str, Any], dict[str, Any] | None]
    | tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]
)


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN/inf; the last good partial checkpoint is kept."""

    def __init__(self, message: str, *, iteration: int, what: str, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.iteration = iteration
        self.what = what
        self.checkpoint = checkpoint


class Run(Protocol):
    """What `optimise` trains: the state of one field's optimisation."""

    params: Any  # torch.nn.ParameterDict, gsplat's strategy names (+ "features")
    optimizers: dict[str, Any]  # name → torch optimizer; names match `learning_rates`' keys
    strategy: Any  # gsplat DefaultStrategy / MCMCStrategy, or None (no densification)
    strategy_state: dict[str, Any]
    decoder: Any  # torch.nn.Module or None; its parameters are checked for finite gradients too

    def learning_rates(self, step: int) -> dict[str, float]: ...

    def state_extra(self) -> dict[str, Any]: ...  # more tensors for the partial checkpoint (decoder)


@dataclass
class Views:
    """The training data of one scene in memory."""

    cameras: list[Any]  # ccl.scene.Camera
    images: list[Any]  # [H, W, 3] uint8 torch tensors, one per camera


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


# --- a run from start (or resume) to its last step ----------------------------------------------------


def train(
    build_run: Callable[[Any], Run],
    step_fn: Callable[[Run, int], StepResult],
    *,
    seed: int,
    iterations: int,
    checkpoint_every: int,
    state_path: Path | None,
    fingerprint: str,
    header: dict[str, Any] | None,
    desc: str,
    callback: Callable[[int], None] | None = None,
) -> tuple[Run, int]:
    """Train a run to `iterations` steps; return (the run, the iteration it was resumed from, 0 = fresh).

    `build_run(state)` makes the run, from the partial checkpoint's `TrainState` at `state_path` when
    one with this `fingerprint` is there, else (state None) afresh; it runs after `torch.manual_seed(seed)`
    and may draw from torch's RNG, whose state a resume then restores. The global RNG is left as it was.
    `callback(step)` is called after every completed step (tests use it to interrupt a run).
    """
    import torch

    from ccl.splat.checkpoint import load_train_state

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        resume = load_train_state(state_path, fingerprint=fingerprint) if state_path else None
        run = build_run(resume)
        start = 0
        if resume is not None:
            torch.set_rng_state(resume.rng_state)
            start = resume.iteration
            log.info("%s: resuming at iteration %d of %d", state_path, start, iterations)
        optimise(
            run,
            start=start,
            iterations=iterations,
            step_fn=lambda step: step_fn(run, step),
            checkpoint_every=checkpoint_every,
            state_path=state_path,
            header={**(header or {}), "fingerprint": fingerprint},
            desc=desc,
            callback=callback,
        )
    return run, start


def optimise(
    run: Run,
    *,
    start: int,
    iterations: int,
    step_fn: Callable[[int], StepResult],
    checkpoint_every: int,
    state_path: Path | None,
    header: dict[str, Any],
    desc: str,
    callback: Callable[[int], None] | None = None,
) -> None:
    """Steps `start`..`iterations` − 1 of a run.

    Per step: set learning rates, `step_fn(step)` → (named losses, strategy info[, measures]), stop if a
    loss is not finite, backward, stop if a gradient is not finite, Adam step, densification hook, and
    every `checkpoint_every` steps a resumable checkpoint at `state_path`, its header's `progress` the
    mean loss and measures of the steps since the last one (`window_progress`).
    """
    import torch

    from ccl.runlog import progress
    from ccl.splat import strategy as strat
    from ccl.splat.checkpoint import save_train_state

    last_saved: int | None = start if start > 0 else None
    recent: list[float] = []
    measured: dict[str, Any] = {}  # name -> sum since the last checkpoint, a tensor (no wait on a GPU)
    for step in progress(range(start, iterations), desc=desc, total=iterations, initial=start, unit="step"):
        lrs = run.learning_rates(step)
        for name, opt in run.optimizers.items():
            if name in lrs:
                for group in opt.param_groups:
                    group["lr"] = lrs[name]
        losses, info, *more = step_fn(step)
        for name, value in (more[0] if more else {}).items():
            measured[name] = measured.get(name, 0.0) + value.detach()
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
            so_far = window_progress(recent, measured)
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
            measured.clear()
        if state_path is not None and done % checkpoint_every == 0 and done < iterations:
            save_train_state(
                state_path,
                iteration=done,
                params=run.params,
                optimizers=run.optimizers,
                strategy_state=run.strategy_state,
                extra=run.state_extra(),
                header={**header, "progress": so_far},
            )
            last_saved = done
        if callback is not None:
            callback(step)


def window_progress(losses: Sequence[float], measured: dict[str, Any]) -> dict[str, float]:
    """How training stands over the steps of one checkpoint window: the mean total loss and the mean of
    each measure (a step's own, e.g. `psnr_train`: the PSNR of the view it trained on), and the steps."""
    n = max(len(losses), 1)
    out = {"steps": len(losses), "loss": float(np.mean(losses)) if losses else float("nan")}
    out.update({name: float(total) / n for name, total in measured.items()})
    return out


def _named_trainables(run: Run) -> Iterator[tuple[str, Any]]:
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


# --- the outputs of a stage entry ---------------------------------------------------------------------


def metrics_path_of(out_path: Path, metrics_path: str | os.PathLike | None) -> Path:
    """`metrics_path`, or `<out stem>.metrics.json` beside the field by default."""
    return Path(metrics_path) if metrics_path else out_path.with_name(out_path.stem + ".metrics.json")


def finish_stage(
    out_path: Path,
    field: Any,
    metrics: Any,
    *,
    save: Callable[..., Any],
    header: dict[str, Any],
    metrics_path: Path,
    metrics_extra: dict[str, Any],
) -> None:
    """Write the trained field (`save(out_path, field, header=...)`, the header with the final iteration
    and the metrics), then the metrics JSON (`metrics` dataclass + `metrics_extra`), then delete the
    partial checkpoint: it goes only once both outputs are in place."""
    from ccl.io import atomic_write_json
    from ccl.splat.checkpoint import partial_path

    save(out_path, field, header={**header, "iteration": metrics.iterations, "metrics": asdict(metrics)})
    atomic_write_json(metrics_path, {**asdict(metrics), **metrics_extra})
    partial_path(out_path).unlink(missing_ok=True)
