"""gsplat.rasterization (through ccl.splat.rasterize on CUDA tensors) against ccl's CPU kernel, its
twin: forward (colours, alpha, expected depth, radii) and gradients of every input, at 3, 8 and 11
channels (colour, language features, both stacked; gsplat pads 8 + depth and 11 + depth to its kernels'
sizes), and the language features rendered as training and evaluation render them."""

from __future__ import annotations

import pytest
import torch
from cuda_testkit import RASTER_GRAD_RTOL, assert_gradients_agree, assert_raster_close, needs_cuda

from ccl.splat import rasterize

pytestmark = [*needs_cuda(), pytest.mark.usefixtures("gsplat_cuda")]


def make_case(seed: int, *, n: int, d: int, width: int, height: int, n_cams: int = 2):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * 0.6
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.05 + 0.01
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    colors = torch.rand(n, d, generator=g)
    viewmats = torch.eye(4).repeat(n_cams, 1, 1)
    viewmats[:, 2, 3] = 3.0
    viewmats[1:, 0, 3] = 0.3
    f = 0.9 * width
    Ks = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]]).repeat(n_cams, 1, 1)
    backgrounds = torch.rand(n_cams, d, generator=g)
    return (means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds)


def render_and_grads(case, device: str):
    means, quats, scales, opacities, colors, viewmats, Ks, w, h, bgs = case
    params = [t.to(device).clone().requires_grad_() for t in (means, quats, scales, opacities, colors, bgs)]
    out = rasterize(*params[:5], viewmats.to(device), Ks.to(device), w, h, backgrounds=params[5])
    g = torch.Generator().manual_seed(123)
    weights = [torch.rand(t.shape, generator=g).to(device) for t in (out.colors, out.alpha, out.depth)]
    loss = sum((t * wt).sum() for t, wt in zip((out.colors, out.alpha, out.depth), weights, strict=True))
    loss.backward()
    return out, [p.grad.cpu() for p in params]


@pytest.mark.parametrize("d", [3, 8, 11])
@pytest.mark.parametrize("size", [(64, 48), (988, 731)])
def test_gsplat_matches_the_cpu_kernel_forward_and_backward(d, size):
    width, height = size
    case = make_case(d, n=3000 if width > 100 else 400, d=d, width=width, height=height)
    cpu, cpu_grads = render_and_grads(case, "cpu")
    gpu, gpu_grads = render_and_grads(case, "cuda")
    assert gpu.colors.is_cuda and gpu.colors.shape == cpu.colors.shape == (2, height, width, d)
    alpha = cpu.alpha.detach()
    assert float(alpha.max()) > 0.9 and float(alpha.min()) < 0.1  # covered and empty pixels
    for name in ("colors", "alpha", "depth"):
        assert_raster_close(getattr(gpu, name), getattr(cpu, name), f"d={d} {size}: {name}")
    visible_cpu, visible_gpu = cpu.radii.cpu().amax(-1) > 0, gpu.radii.cpu().amax(-1) > 0
    assert (visible_cpu != visible_gpu).float().mean() < 1e-3  # the same Gaussians are drawn
    names = ["means", "quats", "scales", "opacities", "colors", "backgrounds"]
    assert_gradients_agree(
        dict(zip(names, gpu_grads, strict=True)),
        dict(zip(names, cpu_grads, strict=True)),
        rtol=RASTER_GRAD_RTOL,
        what=f"d={d} {size}",
    )


def test_language_features_render_through_gsplat_as_on_the_cpu(tiny_scene_dir):
    from ccl.scene import SceneLoadConfig, load_scene
    from ccl.splat.model import init_gaussians
    from ccl.splat.render import render_channels

    scene = load_scene(tiny_scene_dir, source="synthetic", cfg=SceneLoadConfig(), name="tiny")
    g = init_gaussians(
        scene.points_xyz[::4], scene.points_rgb[::4], sh_degree=1, init_opacity=0.5, init_scale=1.0
    )
    feats = torch.nn.functional.normalize(
        torch.randn(len(g), 8, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    for cam in scene.cameras[:3]:
        cpu = render_channels(g, cam, rgb=True, features=feats)
        gpu = render_channels(g.to("cuda"), cam, rgb=True, features=feats.to("cuda"))
        assert gpu.colors.is_cuda
        assert_raster_close(gpu.colors, cpu.colors, f"{cam.name}: colour + 8 features")


def test_transmittance_at_points_through_gsplat_as_on_the_cpu():
    """`render_transmittance` (query3d's views rule: which Gaussians a view sees) reads probe Gaussians'
    blend weights from the rasterizer's gradient: gsplat's must give the CPU kernel's, points at the
    Gaussians' own centres and points in free space alike."""
    import numpy as np

    from ccl.scene import Camera
    from ccl.splat.model import Gaussians
    from ccl.splat.render import render_transmittance

    means, quats, scales, opacities, *_ = make_case(5, n=400, d=3, width=96, height=72, n_cams=1)
    sh = torch.zeros(len(means), 1, 3)
    field = Gaussians(means, quats, scales.log(), torch.logit(opacities), sh, sh[:, :0])
    w2c = np.eye(4)
    w2c[2, 3] = 3.0
    K = np.array([[0.9 * 96, 0, 48.0], [0, 0.9 * 96, 36.0], [0, 0, 1]])
    camera = Camera(
        name="frame_00000", image_path="frame_00000.png", width=96, height=72, K=K, world_to_camera=w2c
    )
    points = torch.cat([means[::2], torch.randn(200, 3, generator=torch.Generator().manual_seed(1)) * 0.6])
    cpu = render_transmittance(field, camera, points, backend="cpu")
    gpu = render_transmittance(field.to("cuda"), camera, points.to("cuda"))
    assert gpu.is_cuda and gpu.shape == cpu.shape == (len(points),)
    assert float(cpu.max()) > 0.9 and float(cpu.min()) < 0.1  # points in front and behind surfaces
    assert_raster_close(gpu, cpu, "transmittance at points")
