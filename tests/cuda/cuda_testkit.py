"""Helpers of the CUDA tests: the skip marks, exact float32 on the GPU, and the comparisons with their
tolerances, stated once per dtype with the reason.

The comparisons are plain functions so that tests/cuda/test_cuda_criteria.py can show, on a CPU, that
float rounding never fails them while a wrong result (a flipped sign, a scaled or a missing term) does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest


def needs_cuda():
    """The marks of a test module that runs on CUDA: `cuda`, and skipped with the reason without it."""
    import torch

    reason = (
        "no CUDA device: torch.cuda.is_available() is False "
        f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); run `make gpu-check` on a GPU machine"
    )
    return [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason=reason)]


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """float32 matmuls and convolutions computed in float32 on the GPU, restored afterwards.

    Ampere and later GPUs round the inputs of float32 matmuls and convolutions to TF32 (a 10-bit
    mantissa, ~5e-4 relative) where torch allows it; cuDNN convolutions allow it by default (SAM's and
    CLIP's patch embeddings are convolutions). A parity test run that way compares TF32's rounding, not
    the code: on an H100 SAM's decoder differed from the CPU by 9e-5 with TF32 and agreed with it off.
    The product keeps torch's defaults; only the parity tests turn TF32 off."""
    import torch

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


# ---------------------------------------------------------------------------------------- tolerances
# float32 on both devices (TF32 off): the devices sum in other orders, ~1e-6 relative per operation;
# 1e-4 of the outputs' scale leaves room for a few hundred of those along a small network.
F32_RTOL_OF_SCALE = 1e-4
# fp16 autocast of a 2-layer tiny CLIP: ~1e-3 relative per layer, so embeddings within this cosine.
FP16_COSINE = 0.995
# Rasterization, float32. gsplat compiles with -use_fast_math and sums in another order: ~1e-6 relative
# per pixel. A Gaussian whose alpha lands within rounding of the 1/255 cut-off, or a pixel whose
# transmittance lands on the 1e-4 stop, can fall on either side on the two devices: that pixel then
# changes by up to about 1/255 of the quantity's range (colours: 1; depth: the scene's depth range). So
# 99.9 % of the values within RASTER_ATOL_OF_RANGE of the range, every value within RASTER_MAX_OF_RANGE
# of it; gradients, sums over pixels, within RASTER_GRAD_RTOL of their norm.
RASTER_ATOL_OF_RANGE = 2e-4
RASTER_MAX_OF_RANGE = 1e-2
RASTER_GRAD_RTOL = 2e-3
# A training's gradients, one step, float32. The same rasterization differs by up to RASTER_GRAD_RTOL
# between gsplat and the CPU kernel, and the other operations by float rounding (~1e-5 of the norm,
# tests/cuda/test_cuda_criteria.py); the smallest term of the tests' loss (each regulariser, weight 0.1)
# carries ~5 % of its parameter's gradient, so a wrong sign, scale or a missing term moves a gradient by
# >= 5 %. TRAINING_GRAD_RTOL sits between the two.
TRAINING_GRAD_RTOL = 5e-3
# After a few steps the metrics of the two devices agree to this (noise moves PSNR by ~1e-3 dB).
PSNR_DB = 0.05
ACCURACY = 0.01


def assert_raster_close(got, want, what: str) -> None:
    """A rendered quantity on CUDA against the CPU kernel's, within the rasterization tolerances."""
    import torch

    want = want.detach().cpu()
    diff = (got.detach().cpu() - want).abs().flatten()
    span = max(float(want.max() - want.min()), 1e-12)
    q = float(torch.quantile(diff[:: max(1, diff.numel() // 1_000_000)], 0.999))
    assert q <= RASTER_ATOL_OF_RANGE * span, (
        f"{what}: 99.9 % quantile of |cuda - cpu| = {q:.3g} > {RASTER_ATOL_OF_RANGE} x range {span:.3g}"
    )
    worst = float(diff.max())
    assert worst <= RASTER_MAX_OF_RANGE * span, (
        f"{what}: max |cuda - cpu| = {worst:.3g} > {RASTER_MAX_OF_RANGE} x range {span:.3g}"
    )


def assert_gradients_agree(got: dict, want: dict, *, rtol: float, what: str) -> None:
    """Each named gradient within `rtol` of the reference's norm (and the reference not zero)."""
    assert sorted(got) == sorted(want), (sorted(got), sorted(want))
    for name, ref in want.items():
        ref = ref.detach().cpu().double()
        norm = float(ref.norm())
        assert norm > 0, f"{what}: the reference gradient of {name} is zero: nothing to compare"
        rel = float((got[name].detach().cpu().double() - ref).norm()) / norm
        assert rel <= rtol, f"{what}: gradient of {name}: |got - want| / |want| = {rel:.3g} > {rtol}"


def match_masks(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """For each mask of `want` [M, H, W] bool, its best IoU with any mask of `got` [K, H, W] ([M] float)."""
    if len(want) == 0:
        return np.zeros(0)
    if len(got) == 0:
        return np.zeros(len(want))
    a = want.reshape(len(want), -1).astype(np.float32)
    b = got.reshape(len(got), -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return (inter / np.maximum(union, 1)).max(axis=1)


def colour_step_gradients(cameras, images, xyz, rgb, *, cfg, device: str, view: int = 0) -> dict:
    """The gradients of the colour field's whole loss (L1, SSIM, regularisers), one step on `view` from
    the initial Gaussians, as fit_rgb's step computes them: {parameter name: gradient}."""
    import torch

    from ccl.splat.train_rgb import ColourRun, initial_gaussians
    from ccl.splat.trainer import load_views

    views = load_views(cameras, images, device=device)
    gaussians = initial_gaussians(cameras, xyz, rgb, cfg=cfg, seed=0)
    # turned and stretched (seeded, on the CPU): the initial Gaussians are isotropic, where a rotation
    # changes nothing and the quaternions' gradient is float noise about zero, not a gradient to compare
    g = torch.Generator().manual_seed(0)
    gaussians.quats = torch.nn.functional.normalize(torch.randn(gaussians.quats.shape, generator=g), dim=-1)
    gaussians.log_scales = gaussians.log_scales + 0.5 * torch.randn(gaussians.log_scales.shape, generator=g)
    run = ColourRun.create(gaussians, cfg=cfg, cameras=cameras, device=device)
    out = run.render(views.cameras[view])
    run.colour_loss(out.colors[0], views.images[view].to(torch.float32) / 255.0).backward()
    return {name: p.grad for name, p in run.params.items()}


def language_step_gradients(
    cameras, maps, gaussians, *, cfg, n_classes: int, device: str, view: int = 0
) -> dict:
    """The gradients of the language field's cross-entropy, one step on `view` from the seeded initial
    features and decoder, as fit_language's frozen step computes them: features and decoder weights."""
    import numpy as np
    import torch

    from ccl.splat.train_language import FrozenLanguageRun, _ce

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the initial features and decoder, drawn on the CPU: the same on both devices
        run = FrozenLanguageRun.create(gaussians, cfg=cfg, n_classes=n_classes, device=device)
    target = torch.from_numpy(np.asarray(maps[view], dtype=np.int64)).to(device)
    _ce(run.decoder, run.render(cameras[view]).colors[0], target).backward()
    grads = {"features": run.params["features"].grad}
    grads.update({f"decoder.{k}": p.grad for k, p in run.decoder.named_parameters()})
    return grads
