"""The colour and language trainings on CUDA against the same on the CPU: the same seed, views and
schedule, gsplat against the CPU kernel underneath.

What is compared, and why not the parameters after training: Adam moves every parameter by about its
learning rate per step whatever the gradient's size, so where a gradient is near zero, float noise flips
the step's sign, and parameters drift apart by whole steps on a correct path (an H100 run: quaternions'
99th percentile 0.0077 after 30 steps). So each test compares (1) the gradients of the whole loss at the
first step, within TRAINING_GRAD_RTOL of their norm, which float noise cannot reach and a wrong term
(sign, scale, missing) exceeds (tests/cuda/test_cuda_criteria.py shows both on the CPU), and (2) the
metrics after a short training, which follow the loss and not single steps.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from cuda_testkit import (
    ACCURACY,
    PSNR_DB,
    TRAINING_GRAD_RTOL,
    assert_gradients_agree,
    colour_step_gradients,
    language_step_gradients,
    needs_cuda,
)
from language_teacher import quadrant_teacher

from ccl.splat.config import LanguageConfig, RgbConfig
from ccl.splat.train_language import fit_language
from ccl.splat.train_rgb import fit_rgb

pytestmark = [*needs_cuda(), pytest.mark.usefixtures("gsplat_cuda", "one_torch_thread")]

STEPS = 30
# no densification within the run: both devices keep the same Gaussians, so they compare one to one;
# the regularisers on (0.1: each then carries ~5 % of its parameter's gradient, well above the devices'
# differences), so that every term of the colour loss is in the gradient compared
RGB = RgbConfig(
    iterations=STEPS, holdout_every=4, sh_degree=1, refine_start_iter=10_000, checkpoint_every=1000,
    opacity_reg=0.1, scale_reg=0.1,
)  # fmt: skip
LANGUAGE = LanguageConfig(iterations=STEPS, holdout_every=4, checkpoint_every=1000)


def test_colour_training_on_cuda_matches_the_cpu(tiny):
    scene, images, xyz, rgb = tiny
    grads = {
        dev: colour_step_gradients(scene.cameras, images, xyz, rgb, cfg=RGB, device=dev)
        for dev in ("cpu", "cuda")
    }
    assert_gradients_agree(grads["cuda"], grads["cpu"], rtol=TRAINING_GRAD_RTOL, what="colour loss, step 1")
    runs = {
        dev: fit_rgb(scene.cameras, images, points_xyz=xyz, points_rgb=rgb, cfg=RGB, seed=0, device=dev)
        for dev in ("cpu", "cuda")
    }
    (g_cpu, m_cpu), (g_gpu, m_gpu) = runs["cpu"], runs["cuda"]
    assert len(g_cpu) == len(g_gpu)
    assert abs(m_gpu.psnr_train - m_cpu.psnr_train) <= PSNR_DB, (m_gpu.psnr_train, m_cpu.psnr_train)
    assert abs(m_gpu.psnr_heldout - m_cpu.psnr_heldout) <= PSNR_DB, (m_gpu.psnr_heldout, m_cpu.psnr_heldout)


def test_language_training_on_cuda_matches_the_cpu(tiny):
    scene, _, xyz, rgb = tiny
    g, maps = quadrant_teacher(scene, xyz, rgb)
    grads = {
        dev: language_step_gradients(scene.cameras, maps, g, cfg=LANGUAGE, n_classes=4, device=dev)
        for dev in ("cpu", "cuda")
    }
    assert_gradients_agree(grads["cuda"], grads["cpu"], rtol=TRAINING_GRAD_RTOL, what="cross-entropy, step 1")
    runs = {
        dev: fit_language(
            scene.cameras, maps, n_classes=4, gaussians=g.to(dev), cfg=LANGUAGE, seed=0, device=dev
        )
        for dev in ("cpu", "cuda")
    }
    (lf_cpu, m_cpu), (lf_gpu, m_gpu) = runs["cpu"], runs["cuda"]
    assert abs(m_gpu.accuracy_all - m_cpu.accuracy_all) <= ACCURACY, (m_gpu, m_cpu)
    for k, v in lf_cpu.gaussians.tensors().items():  # frozen geometry on both
        torch.testing.assert_close(getattr(lf_gpu.gaussians, k).cpu(), v.cpu())


def test_joint_training_runs_on_cuda(tiny):
    scene, images, xyz, rgb = tiny
    maps = [np.where(np.asarray(im)[..., 0] > 127, 1, 0).astype(np.int64) for im in images]
    cfg = dataclasses.replace(LANGUAGE, joint=True)
    lf, m = fit_language(
        scene.cameras, maps, n_classes=2, images=images, points_xyz=xyz, points_rgb=rgb,
        cfg=cfg, rgb_cfg=RGB, seed=0, device="cuda",
    )  # fmt: skip
    assert m.joint and np.isfinite(m.accuracy_all) and m.psnr_heldout is not None
