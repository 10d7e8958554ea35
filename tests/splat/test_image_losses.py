"""The colour field's training loss and its PSNR report: the weighting of the two loss terms, SSIM of
a batch of views, and PSNR of renders that leave [0, 1] (the rasterizer does not clamp)."""

from __future__ import annotations

import math

import pytest
import torch

from ccl.splat.losses import psnr, rgb_loss, ssim


@pytest.fixture
def image_pair():
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(24, 32, 3, generator=gen, dtype=torch.float64)
    b = (a + 0.3 * torch.rand(24, 32, 3, generator=gen, dtype=torch.float64)).clamp(0, 1)
    return a, b


@pytest.mark.parametrize("ssim_lambda", [0.2, 1.0])
def test_rgb_loss_weights_l1_by_one_minus_lambda_and_dssim_by_lambda(image_pair, ssim_lambda):
    a, b = image_pair
    l1 = float((a - b).abs().mean())
    d_ssim = 1 - float(ssim(a, b))
    assert l1 > 0.05 and d_ssim > 0.05  # both terms weigh in, so a wrong weight shows
    expected = (1 - ssim_lambda) * l1 + ssim_lambda * d_ssim  # 3DGS, eq. 7 (λ = 0.2 there)
    assert float(rgb_loss(a, b, ssim_lambda=ssim_lambda)) == pytest.approx(expected, rel=1e-12)


def test_ssim_of_a_batch_of_views_is_the_mean_over_the_views(image_pair):
    a, b = image_pair
    c = (b * 0.5 + 0.25).flip(0)  # a second view, of another structure
    batch = ssim(torch.stack([a, a]), torch.stack([b, c]))
    per_view = [float(ssim(a, b)), float(ssim(a, c))]
    assert per_view[0] != pytest.approx(per_view[1], abs=1e-3)
    assert float(batch) == pytest.approx(sum(per_view) / 2, rel=1e-12)


def test_psnr_of_identical_images_is_infinite_and_of_black_against_white_zero():
    white = torch.ones(4, 5, 3)
    assert psnr(white, white) == math.inf
    assert psnr(torch.zeros(4, 5, 3), white) == 0.0  # mse 1: -10 log10(1)


def test_psnr_clamps_a_render_that_overshoots_to_the_displayable_range():
    ref = torch.tensor([[[0.0, 1.0, 0.5]]]).expand(2, 2, 3)
    render = torch.tensor([[[-0.4, 1.7, 0.6]]]).expand(2, 2, 3)  # what a splat sum can give
    # only the last channel differs once clamped: mse = 0.1² / 3
    assert psnr(render, ref) == pytest.approx(-10 * math.log10(0.01 / 3), rel=1e-5)
