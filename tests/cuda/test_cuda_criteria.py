"""The CUDA tests' comparisons, put to the test on the CPU (no GPU needed): float noise of the size two
devices make never fails them, and a wrong result does, in each way the CUDA tests guard against (a
flipped sign, a scaled or a missing loss term; a shifted depth)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from cuda_testkit import (
    RASTER_MAX_OF_RANGE,
    TRAINING_GRAD_RTOL,
    assert_gradients_agree,
    assert_raster_close,
    colour_step_gradients,
    language_step_gradients,
)
from language_teacher import quadrant_teacher
from test_cuda_training import LANGUAGE, RGB

from ccl.splat import losses

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# float32 rounding noise as two devices make it: inputs that differ in their last few bits
NOISE = 2.0**-20  # ~1e-6, eight float32 ulps at 1.0


@pytest.fixture(scope="module")
def colour_reference(tiny):
    scene, images, xyz, rgb = tiny
    return colour_step_gradients(scene.cameras, images, xyz, rgb, cfg=RGB, device="cpu")


def _few_ulps_off(x: np.ndarray, seed: int) -> np.ndarray:
    """`x` a few float32 ulps off: a stand-in for the rounding another device does on the way."""
    rng = np.random.default_rng(seed)
    return (x * (1 + rng.uniform(-NOISE, NOISE, x.shape))).astype(np.float32)


def test_float_noise_never_fails_the_colour_gradient_comparison(tiny, colour_reference):
    scene, images, xyz, rgb = tiny
    noisy = colour_step_gradients(scene.cameras, images, _few_ulps_off(xyz, 1), rgb, cfg=RGB, device="cpu")
    assert any(not torch.equal(noisy[k], colour_reference[k]) for k in noisy)  # the noise reached them
    assert_gradients_agree(noisy, colour_reference, rtol=TRAINING_GRAD_RTOL, what="noise")


def _ssim_sign_flipped(img, ref, *, ssim_lambda):
    return (1 - ssim_lambda) * (img - ref).abs().mean() - ssim_lambda * (1 - losses.ssim(img, ref))


def _l1_doubled(img, ref, *, ssim_lambda):
    return (1 - ssim_lambda) * 2 * (img - ref).abs().mean() + ssim_lambda * (1 - losses.ssim(img, ref))


def _ssim_missing(img, ref, *, ssim_lambda):
    return (1 - ssim_lambda) * (img - ref).abs().mean()


PRODUCT_RGB_LOSS = losses.rgb_loss


def _whole_loss_doubled(img, ref, *, ssim_lambda):
    return 2 * PRODUCT_RGB_LOSS(img, ref, ssim_lambda=ssim_lambda)


@pytest.mark.parametrize(
    "planted",
    [
        _ssim_sign_flipped,
        _l1_doubled,
        _ssim_missing,
        _whole_loss_doubled,
        "opacity regulariser missing",
        "scale regulariser missing",
    ],
    ids=lambda p: p if isinstance(p, str) else p.__name__.strip("_"),
)
def test_a_wrong_colour_gradient_fails_the_comparison(tiny, colour_reference, monkeypatch, planted):
    scene, images, xyz, rgb = tiny
    cfg = RGB
    if planted == "opacity regulariser missing":
        cfg = dataclasses.replace(RGB, opacity_reg=0.0)
    elif planted == "scale regulariser missing":
        cfg = dataclasses.replace(RGB, scale_reg=0.0)
    else:
        monkeypatch.setattr(losses, "rgb_loss", planted)  # ColourRun.colour_loss looks it up per call
    wrong = colour_step_gradients(scene.cameras, images, xyz, rgb, cfg=cfg, device="cpu")
    with pytest.raises(AssertionError, match="gradient of"):
        assert_gradients_agree(wrong, colour_reference, rtol=TRAINING_GRAD_RTOL, what="planted")


@pytest.fixture(scope="module")
def language_case(tiny):
    scene, _, xyz, rgb = tiny
    g, maps = quadrant_teacher(scene, xyz, rgb)
    reference = language_step_gradients(scene.cameras, maps, g, cfg=LANGUAGE, n_classes=4, device="cpu")
    return scene, g, maps, reference


def test_float_noise_never_fails_the_language_gradient_comparison(language_case):
    scene, g, maps, reference = language_case
    rng = np.random.default_rng(2)
    moved = dataclasses.replace(
        g, means=g.means * (1 + torch.from_numpy(rng.uniform(-NOISE, NOISE, g.means.shape)).float())
    )
    noisy = language_step_gradients(scene.cameras, maps, moved, cfg=LANGUAGE, n_classes=4, device="cpu")
    assert any(not torch.equal(noisy[k], reference[k]) for k in noisy)
    assert_gradients_agree(noisy, reference, rtol=TRAINING_GRAD_RTOL, what="noise")


@pytest.mark.parametrize("planted", ["logits sign flipped", "loss doubled", "background pixels counted"])
def test_a_wrong_language_gradient_fails_the_comparison(language_case, monkeypatch, planted):
    import importlib

    import torch.nn.functional as F

    train_language = importlib.import_module("ccl.splat.train_language")  # the module, not the function
    scene, g, maps, reference = language_case

    def wrong_ce(decoder, feat, target):
        logits = decoder(feat.reshape(-1, feat.shape[-1]))
        t = target.reshape(-1)
        if planted == "logits sign flipped":
            return F.cross_entropy(-logits, t, ignore_index=-1)
        if planted == "loss doubled":
            return 2 * F.cross_entropy(logits, t, ignore_index=-1)
        return F.cross_entropy(logits, t.clamp_min(0))  # unlabelled pixels taken as class 0

    monkeypatch.setattr(train_language, "_ce", wrong_ce)
    wrong = language_step_gradients(scene.cameras, maps, g, cfg=LANGUAGE, n_classes=4, device="cpu")
    with pytest.raises(AssertionError, match="gradient of"):
        assert_gradients_agree(wrong, reference, rtol=TRAINING_GRAD_RTOL, what="planted")


def test_the_raster_comparison_takes_depth_at_its_own_range():
    """Depth is in scene units (the H100 run's depths reach ~4): a pixel that flips near the alpha cut-off
    moves it by ~1/255 of that range, which the colours' absolute bound refused; a real shift still fails."""
    g = torch.Generator().manual_seed(0)
    depth = 3.0 + torch.rand(2, 64, 48, 1, generator=g)
    depth[:, :, :10] = 0.0  # empty pixels: no depth
    flipped = depth.clone()
    flipped[0, 10, 10] += 0.012  # the H100 run's worst depth pixel
    assert_raster_close(flipped, depth, "one flipped pixel")
    with pytest.raises(AssertionError, match="max"):
        shifted = depth.clone()
        shifted[0, 5, 20] += 2 * RASTER_MAX_OF_RANGE * float(depth.max() - depth.min())
        assert_raster_close(shifted, depth, "shifted")
    with pytest.raises(AssertionError, match="99.9 %"):
        assert_raster_close(depth * 1.001, depth, "scaled")
