"""The colour and language trainings for a few steps on CUDA against the same on the CPU: the same
seed, views and schedule, gsplat against the CPU kernel underneath.

Tolerances: Adam moves every parameter by about its learning rate per step whatever the gradient's
size, so a gradient that differs in float32 rounding moves a parameter about the same way on both
devices, while a wrong gradient (sign, scale, a missing term) moves it in another direction. After
STEPS steps the 99th percentile of |cuda − cpu| must stay under 10 % of the distance Adam can move a
parameter (STEPS × lr), and the loss-driven metrics agree to PSNR_DB / ACCURACY."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from cuda_testkit import needs_cuda
from language_teacher import quadrant_teacher

from ccl.scene import SceneLoadConfig, load_image, load_scene
from ccl.splat.config import LanguageConfig, RgbConfig
from ccl.splat.train_language import fit_language
from ccl.splat.train_rgb import fit_rgb

pytestmark = [*needs_cuda(), pytest.mark.usefixtures("gsplat_cuda", "one_torch_thread")]

STEPS = 30
# no densification within the run: both devices keep the same Gaussians, so they compare one to one
RGB = RgbConfig(
    iterations=STEPS, holdout_every=4, sh_degree=1, refine_start_iter=10_000, checkpoint_every=1000
)
LANGUAGE = LanguageConfig(iterations=STEPS, holdout_every=4, checkpoint_every=1000)
SHARE_OF_ADAM_REACH = 0.1
PSNR_DB = 0.05
ACCURACY = 0.01


@pytest.fixture(scope="module")
def tiny(tiny_scene_dir):
    scene = load_scene(tiny_scene_dir, source="synthetic", cfg=SceneLoadConfig(), name="tiny")
    images = [load_image(c, cfg=SceneLoadConfig()) for c in scene.cameras]
    return scene, images, scene.points_xyz[::4], scene.points_rgb[::4]


def _assert_moved_alike(got, want, lr: float, what: str):
    diff = (got.detach().cpu().float() - want.detach().float()).abs().flatten()
    q = float(torch.quantile(diff, 0.99))
    reach = STEPS * lr
    assert q <= SHARE_OF_ADAM_REACH * reach, (
        f"{what}: 99th percentile |cuda - cpu| = {q:.3g}, Adam reach {reach:.3g}"
    )


def test_colour_training_on_cuda_matches_the_cpu(tiny):
    from ccl.splat.model import scene_scale

    scene, images, xyz, rgb = tiny
    runs = {
        dev: fit_rgb(scene.cameras, images, points_xyz=xyz, points_rgb=rgb, cfg=RGB, seed=0, device=dev)
        for dev in ("cpu", "cuda")
    }
    (g_cpu, m_cpu), (g_gpu, m_gpu) = runs["cpu"], runs["cuda"]
    assert len(g_cpu) == len(g_gpu)
    assert abs(m_gpu.psnr_train - m_cpu.psnr_train) <= PSNR_DB, (m_gpu.psnr_train, m_cpu.psnr_train)
    assert abs(m_gpu.psnr_heldout - m_cpu.psnr_heldout) <= PSNR_DB, (m_gpu.psnr_heldout, m_cpu.psnr_heldout)
    extent = scene_scale(np.stack([c.center for c in scene.cameras]))
    for name, lr in (
        ("means", RGB.lr_means * extent),
        ("log_scales", RGB.lr_scales),
        ("quats", RGB.lr_quats),
        ("opacity_logits", RGB.lr_opacities),
        ("sh0", RGB.lr_sh0),
    ):
        _assert_moved_alike(getattr(g_gpu, name), getattr(g_cpu, name), lr, name)


def test_language_training_on_cuda_matches_the_cpu(tiny):
    scene, _, xyz, rgb = tiny
    g, maps = quadrant_teacher(scene, xyz, rgb)
    runs = {
        dev: fit_language(
            scene.cameras, maps, n_classes=4, gaussians=g.to(dev), cfg=LANGUAGE, seed=0, device=dev
        )
        for dev in ("cpu", "cuda")
    }
    (lf_cpu, m_cpu), (lf_gpu, m_gpu) = runs["cpu"], runs["cuda"]
    assert abs(m_gpu.accuracy_all - m_cpu.accuracy_all) <= ACCURACY, (m_gpu, m_cpu)
    _assert_moved_alike(lf_gpu.features, lf_cpu.features, LANGUAGE.lr_features, "language features")
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
