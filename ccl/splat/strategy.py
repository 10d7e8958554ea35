"""Densification: gsplat's `DefaultStrategy` (3DGS) or `MCMCStrategy`, built from the rgb config.

Both are plain PyTorch except two helpers of the MCMC path that call CUDA kernels
(`compute_relocation`, `quat_scale_to_covar_preci`); on the CPU they are swapped, for the duration of a
hook call, for the PyTorch twins below (same formulas: MCMC paper eq. 9, and gsplat's own torch
reference `_quat_scale_to_covar_preci`).

gsplat 1.5.3's DefaultStrategy never resets opacities (`step % reset_every == 0 & step > 0` parses as
`... == (0 & step) > 0`, always false); `step_post_backward` here performs the reset 3DGS describes
(every `reset_every` steps, to twice the pruning opacity) while refinement runs.

The swapped helpers, the private torch reference and that work-around are gsplat 1.5.3's internals:
`build_strategy` and the swap refuse any other gsplat version (`require_gsplat_version`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ccl.splat.config import RgbConfig

GSPLAT_VERSION = "1.5.3"  # the gsplat whose internals this module patches and works around


def require_gsplat_version() -> None:
    """Raise RuntimeError unless the importable gsplat is GSPLAT_VERSION (this module relies on its internals)."""
    import gsplat

    installed = getattr(gsplat, "__version__", "of unknown version")
    if installed != GSPLAT_VERSION:
        raise RuntimeError(
            f"ccl.splat.strategy relies on internals of gsplat {GSPLAT_VERSION} (gsplat.strategy.ops, "
            f"gsplat.cuda._torch_impl and DefaultStrategy's opacity reset), but gsplat {installed} is "
            f"installed ({gsplat.__file__}): pip install gsplat=={GSPLAT_VERSION}"
        )


def build_strategy(cfg: RgbConfig, *, scene_scale: float) -> tuple[Any, dict[str, Any]]:
    """(strategy, its initial state) for `cfg.strategy`."""
    require_gsplat_version()
    from gsplat.strategy import DefaultStrategy, MCMCStrategy

    if cfg.strategy == "default":
        s = DefaultStrategy(
            prune_opa=cfg.prune_opa,
            grow_grad2d=cfg.grow_grad2d,
            grow_scale3d=cfg.grow_scale3d,
            prune_scale3d=cfg.prune_scale3d,
            refine_start_iter=cfg.refine_start_iter,
            refine_stop_iter=cfg.refine_stop_iter,
            reset_every=cfg.reset_every,
            refine_every=cfg.refine_every,
        )
        return s, s.initialize_state(scene_scale=scene_scale)
    if cfg.strategy == "mcmc":
        s = MCMCStrategy(
            cap_max=cfg.cap_max,
            noise_lr=cfg.mcmc_noise_lr,
            refine_start_iter=cfg.refine_start_iter,
            refine_stop_iter=cfg.refine_stop_iter,
            refine_every=cfg.refine_every,
            min_opacity=cfg.prune_opa,
        )
        return s, s.initialize_state()
    raise ValueError(f"rgb.strategy must be 'default' or 'mcmc', got {cfg.strategy!r}")


def step_pre_backward(
    strategy: Any, params: Any, optimizers: dict, state: dict, step: int, info: dict
) -> None:
    from gsplat.strategy import DefaultStrategy

    if isinstance(strategy, DefaultStrategy):
        strategy.step_pre_backward(params, optimizers, state, step, info)


def step_post_backward(
    strategy: Any, params: Any, optimizers: dict, state: dict, step: int, info: dict, *, means_lr: float
) -> None:
    """The strategy's post-backward hook (call it after the optimisers' step, as gsplat's trainer does)."""
    from gsplat.strategy import DefaultStrategy
    from gsplat.strategy.ops import reset_opa

    with _cpu_twins(params["means"].device.type == "cpu"):
        if isinstance(strategy, DefaultStrategy):
            strategy.step_post_backward(params, optimizers, state, step, info, packed=False)
            if 0 < step < strategy.refine_stop_iter and step % strategy.reset_every == 0:
                reset_opa(params=params, optimizers=optimizers, state=state, value=strategy.prune_opa * 2.0)
        else:
            strategy.step_post_backward(params, optimizers, state, step, info, lr=means_lr)


@contextlib.contextmanager
def _cpu_twins(active: bool) -> Iterator[None]:
    if not active:
        yield
        return
    require_gsplat_version()
    import gsplat.strategy.ops as ops

    saved = ops.compute_relocation, ops.quat_scale_to_covar_preci
    ops.compute_relocation, ops.quat_scale_to_covar_preci = compute_relocation_torch, _covar_preci_torch
    try:
        yield
    finally:
        ops.compute_relocation, ops.quat_scale_to_covar_preci = saved


def _covar_preci_torch(quats, scales, compute_covar=True, compute_preci=True, triu=False):
    from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci

    return _quat_scale_to_covar_preci(quats, scales, compute_covar, compute_preci, triu)


def compute_relocation_torch(opacities: Any, scales: Any, ratios: Any, binoms: Any) -> tuple[Any, Any]:
    """PyTorch twin of `gsplat.relocation.compute_relocation` (MCMC paper, eq. 9).

    A Gaussian of opacity o and scales s split into n copies: each gets opacity 1 − (1 − o)^(1/n) and
    scales s · o / Σ_{i=1..n} Σ_{k<i} C(i−1, k) (−1)^k / √(k+1) · o_new^(k+1).
    """
    import torch

    n_max = binoms.shape[0]
    n = ratios.clamp(1, n_max).long()  # [N]
    dt = torch.float64
    new_op = 1.0 - (1.0 - opacities.to(dt)) ** (1.0 / n.to(dt))  # [N]
    k = torch.arange(n_max, device=opacities.device)
    # A[m, k] = Σ_{i=k+1..m} C(i−1, k): the binomials of rows 0..m−1 summed per column k
    a = torch.cumsum(binoms.to(dt), dim=0)  # a[r, k] = Σ_{row<=r} C(row, k)
    a = torch.cat([torch.zeros(1, n_max, dtype=dt, device=a.device), a], dim=0)  # a[m] = Σ_{row<m}
    coeff = a[n] * ((-1.0) ** k.to(dt) / torch.sqrt(k.to(dt) + 1))  # [N, n_max]
    powers = new_op[:, None] ** (k.to(dt) + 1)[None, :]  # [N, n_max]
    denom = (coeff * powers).sum(dim=1)
    new_scales = (opacities.to(dt) / denom)[:, None] * scales.to(dt)
    return new_op.to(opacities.dtype), new_scales.to(scales.dtype)
