"""ccl.splat.projection against gsplat's own PyTorch reference (gsplat.cuda._torch_impl, runs on CPU)."""

from __future__ import annotations

import math

import pytest
import torch
from gsplat.cuda import _torch_impl as torch_impl

from ccl.splat.projection import ALPHA_THRESHOLD, RADIUS_EXTEND, project_gaussians, quat_to_rotmat

# float64 throughout: both sides do the same arithmetic in a different order, so they agree to ~1e-12
# relative; 1e-9 leaves room for the ill-conditioned conics of very thin Gaussians.
RTOL, ATOL = 1e-9, 1e-9


def random_scene(seed: int, n: int = 500, n_cams: int = 3, width: int = 64, height: int = 48):
    g = torch.Generator().manual_seed(seed)
    dt = torch.float64
    means = (torch.rand(n, 3, generator=g, dtype=dt) - 0.5) * 4.0
    quats = torch.randn(n, 4, generator=g, dtype=dt)
    scales = torch.exp(torch.randn(n, 3, generator=g, dtype=dt) - 3.0)
    opacities = torch.rand(n, generator=g, dtype=dt)
    viewmats = []
    for _ in range(n_cams):
        rot = quat_to_rotmat(torch.randn(4, generator=g, dtype=dt))
        centre = torch.randn(3, generator=g, dtype=dt)
        centre = 4.0 * centre / centre.norm()  # on a sphere of radius 4, looking at the origin-ish
        z = -centre / centre.norm()
        x = torch.linalg.cross(rot[:, 1], z)
        x = x / x.norm()
        y = torch.linalg.cross(z, x)
        r = torch.stack([x, y, z])  # world-to-camera rotation rows
        vm = torch.eye(4, dtype=dt)
        vm[:3, :3] = r
        vm[:3, 3] = -r @ centre
        viewmats.append(vm)
    viewmats = torch.stack(viewmats)
    f = torch.rand(n_cams, generator=g, dtype=dt) * 40 + 40
    Ks = torch.zeros(n_cams, 3, 3, dtype=dt)
    Ks[:, 0, 0], Ks[:, 1, 1] = f, f * 1.1
    Ks[:, 0, 2], Ks[:, 1, 2], Ks[:, 2, 2] = width / 2 + 1.5, height / 2 - 2.0, 1.0
    return means, quats, scales, opacities, viewmats, Ks, width, height


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_projection_matches_gsplat_torch_reference(seed):
    means, quats, scales, _, viewmats, Ks, w, h = random_scene(seed)
    covars, _ = torch_impl._quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    radii, means2d, depths, conics, _ = torch_impl._fully_fused_projection(
        means, covars, viewmats, Ks, w, h, eps2d=0.3, near_plane=0.01, far_plane=1e10
    )
    ours = project_gaussians(means, quats, scales, viewmats, Ks, w, h, eps2d=0.3, near_plane=0.01)
    assert torch.equal(ours.radii, radii)
    visible = (radii > 0).all(dim=-1)
    assert visible.sum() > 100 and (~visible).sum() > 10  # the case exercises both kept and culled
    torch.testing.assert_close(ours.depths, depths, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(ours.means2d[visible], means2d[visible], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(ours.conics[visible], conics[visible], rtol=RTOL, atol=ATOL)


def test_rotation_matches_gsplat():
    q = torch.randn(100, 4, dtype=torch.float64) * 3.0  # unnormalised on purpose
    torch.testing.assert_close(quat_to_rotmat(q), torch_impl._quat_to_rotmat(q), rtol=RTOL, atol=ATOL)


def test_opacity_aware_radius_is_gsplat_cuda_rule():
    """With opacities, extend = min(3.33, sqrt(2 ln(255 o))); below 1/255 the Gaussian is culled."""
    means, quats, scales, _, viewmats, Ks, w, h = random_scene(3)
    n = means.shape[0]
    opac = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    base = project_gaussians(means, quats, scales, viewmats, Ks, w, h)
    tight = project_gaussians(means, quats, scales, viewmats, Ks, w, h, opacities=opac)
    assert (tight.radii <= base.radii).all()
    assert (tight.radii[:, opac < ALPHA_THRESHOLD] == 0).all()
    # one Gaussian by hand: radius = ceil(extend * sqrt(cov2d_xx)), cov2d from the inverse conic
    c, i = 0, int(torch.nonzero((tight.radii[0] > 0).all(-1) & (opac > 0.05) & (opac < 0.5))[0])
    a, b, cc = tight.conics[c, i].tolist()
    det = a * cc - b * b
    cov_xx, cov_yy = cc / det, a / det
    extend = min(RADIUS_EXTEND, math.sqrt(2 * math.log(255 * float(opac[i]))))
    assert tight.radii[c, i].tolist() == [
        math.ceil(extend * math.sqrt(cov_xx)),
        math.ceil(extend * math.sqrt(cov_yy)),
    ]


def test_projection_gradients_are_finite_for_culled_gaussians():
    """A Gaussian at the camera centre (z = 0) or behind it must not poison autograd with NaN."""
    dt = torch.float64
    means = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.2, -1.0], [0.0, 0.0, 2.0]], dtype=dt, requires_grad=True)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 3, dtype=dt, requires_grad=True)
    scales = torch.full((3, 3), 0.1, dtype=dt, requires_grad=True)
    vm = torch.eye(4, dtype=dt)[None]
    K = torch.tensor([[[50.0, 0, 16], [0, 50, 16], [0, 0, 1]]], dtype=dt)
    p = project_gaussians(means, quats, scales, vm, K, 32, 32)
    assert p.radii[0, :2].eq(0).all() and p.radii[0, 2].gt(0).all()
    (p.means2d.sum() + p.conics.sum() + p.depths.sum()).backward()
    for t in (means, quats, scales):
        assert torch.isfinite(t.grad).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpu_kernel_projection_matches_pytorch_projection(dtype):
    """The C++ projection (forward and its hand-written backward) against the PyTorch one (autograd).
    float64: same formulas in the same order -> 1e-9; float32: rounding of a few dozen operations
    amplified by 1/z^2 and the 2x2 inverse -> 1e-4 relative to the largest magnitude."""
    from ccl.splat._cpu_kernel import load_kernel
    from ccl.splat._cpu_tiles import project_gaussians_cpu

    assert load_kernel() is not None
    means, quats, scales, opac, viewmats, Ks, w, h = (
        t.to(dtype) if torch.is_tensor(t) else t for t in random_scene(4)
    )
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    results = []
    for fn in (project_gaussians, project_gaussians_cpu):
        params = [t.clone().requires_grad_() for t in (means, quats, scales)]
        p = fn(*params, viewmats, Ks, w, h, opacities=opac, eps2d=0.3, near_plane=0.01, far_plane=1e10)
        g = torch.Generator().manual_seed(0)
        loss = sum(
            (t * torch.randn(t.shape, generator=g).to(dtype)).sum() for t in (p.means2d, p.conics, p.depths)
        )
        loss.backward()
        results.append((p, [t.grad for t in params]))
    (ref, ref_grads), (cpu, cpu_grads) = results
    assert torch.equal(cpu.radii, ref.radii)
    for name in ("means2d", "conics", "depths"):
        want = getattr(ref, name).detach()
        torch.testing.assert_close(getattr(cpu, name), want, rtol=tol, atol=tol * float(want.abs().max()))
    for got, want in zip(cpu_grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=tol, atol=tol * float(want.abs().max()))


def test_camera_gradients_use_the_pytorch_projection():
    """The C++ projection computes no camera gradients; with viewmats requiring grad the CPU backend
    projects in PyTorch, so the pose still gets a gradient."""
    from ccl.splat import rasterize

    means, quats, scales, opac, viewmats, Ks, w, h = random_scene(5, n=50, n_cams=1)
    viewmats = viewmats.clone().requires_grad_()
    out = rasterize(means, quats, scales, opac, torch.rand(50, 3, dtype=torch.float64), viewmats, Ks, w, h)
    out.colors.sum().backward()
    assert viewmats.grad is not None and viewmats.grad.abs().sum() > 0
