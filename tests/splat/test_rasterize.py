"""ccl.splat.rasterize: the CPU tile rasterizer against the dense reference, the reference against a
closed form, gradients by finite differences, and the bad-input checks."""

from __future__ import annotations

import math

import pytest
import torch

from ccl.splat import rasterize
from ccl.splat._cpu_kernel import load_kernel
from ccl.splat._cpu_tiles import _composite_tiles_torch
from ccl.splat.projection import project_gaussians

# Tile kernel vs dense reference, same inputs. float64: same per-pair arithmetic, different summation
# order -> agreement to ~1e-13; 1e-9 is generous. float32: single-precision rounding accumulated over a
# few hundred blended Gaussians and the division in the expected depth -> 1e-4 relative to the largest
# magnitude of each compared tensor (gradients reach a few hundred, so their atol is scaled).
TOL = {torch.float64: 1e-9, torch.float32: 1e-4}


def make_case(
    seed: int, dtype, n: int = 300, n_cams: int = 2, width: int = 40, height: int = 30, d: int = 11
):
    g = torch.Generator().manual_seed(seed)
    means = (torch.randn(n, 3, generator=g) * 0.5).to(dtype)
    quats = torch.randn(n, 4, generator=g).to(dtype)
    scales = (torch.rand(n, 3, generator=g) * 0.1 + 0.02).to(dtype)
    opacities = (torch.rand(n, generator=g) * 0.9 + 0.05).to(dtype)
    colors = torch.rand(n, d, generator=g).to(dtype)
    viewmats = torch.eye(4, dtype=dtype).repeat(n_cams, 1, 1)
    viewmats[:, 2, 3] = 3.0
    viewmats[1:, 0, 3] = 0.4
    Ks = torch.tensor([[50.0, 0, width / 2], [0, 50.0, height / 2], [0, 0, 1]], dtype=dtype).repeat(
        n_cams, 1, 1
    )
    backgrounds = torch.rand(n_cams, d, generator=g).to(dtype)
    return means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds


def render_and_grads(case, backend, **kw):
    means, quats, scales, opacities, colors, viewmats, Ks, w, h, bgs = case
    params = [t.clone().requires_grad_() for t in (means, quats, scales, opacities, colors, bgs)]
    out = rasterize(*params[:5], viewmats, Ks, w, h, backgrounds=params[5], backend=backend, **kw)
    g = torch.Generator().manual_seed(123)
    loss = sum(
        (t * torch.rand(t.shape, generator=g).to(t.dtype)).sum() for t in (out.colors, out.alpha, out.depth)
    )
    loss.backward()
    return out, [p.grad for p in params]


def assert_close_scaled(got, want, tol, what):
    scale = max(float(want.detach().abs().max()), 1.0)
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * scale, msg=lambda m: f"{what}: {m}")


def test_kernel_builds():
    """The fast path is what the comparisons below exercise, not the fallback."""
    assert load_kernel() is not None, "the C++ CPU rasterizer did not build; is g++ installed?"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", [0, 1])
def test_cpu_matches_reference_forward_and_backward(dtype, seed):
    case = make_case(seed, dtype)
    ref, ref_grads = render_and_grads(case, "reference")
    cpu, cpu_grads = render_and_grads(case, "cpu")
    tol = TOL[dtype]
    assert (
        float(ref.alpha.detach().max()) > 0.9 and float(ref.alpha.detach().min()) < 0.1
    )  # covered and empty pixels
    for name in ("colors", "alpha", "depth"):
        assert_close_scaled(getattr(cpu, name), getattr(ref, name), tol, name)
    assert torch.equal(cpu.radii, ref.radii)
    for name, got, want in zip(
        ["means", "quats", "scales", "opacities", "colors", "backgrounds"], cpu_grads, ref_grads, strict=True
    ):
        assert float(want.abs().max()) > 0, name  # every input does get a gradient
        assert_close_scaled(got, want, tol, f"grad {name}")


@pytest.mark.parametrize("tile_size", [8, 12])
def test_cpu_handles_many_gaussians_per_tile_and_odd_sizes(tile_size):
    """Dense overlap (pixels hit the 1e-4 transmittance stop), image and tile sizes that are not
    multiples of the kernel's 8-pixel chunks."""
    case = list(make_case(5, torch.float64, n=600, width=37, height=29, d=3))
    case[2] = case[2] * 3.0  # big Gaussians: deep overlap
    case[3] = case[3].clamp(min=0.6)
    ref, ref_grads = render_and_grads(case, "reference", tile_size=tile_size)
    cpu, cpu_grads = render_and_grads(case, "cpu", tile_size=tile_size)
    assert float(ref.alpha.detach().max()) > 1 - 2e-4  # some pixels stopped on the transmittance cut-off
    for name in ("colors", "alpha", "depth"):
        assert_close_scaled(getattr(cpu, name), getattr(ref, name), 1e-9, name)
    for got, want in zip(cpu_grads, ref_grads, strict=True):
        assert_close_scaled(got, want, 1e-9, "grad")


def test_pytorch_tile_fallback_matches_reference():
    """The path used when the C++ kernel cannot be built gives the reference's result and gradients."""
    from ccl.splat._reference import composite_reference

    means, quats, scales, opacities, colors, viewmats, Ks, w, h, bgs = make_case(2, torch.float64, n=120, d=4)
    results = []
    for composite in (_composite_tiles_torch, composite_reference):
        params = [t.clone().requires_grad_() for t in (means, quats, scales, opacities, colors, bgs)]
        proj = project_gaussians(*params[:3], viewmats, Ks, w, h, opacities=params[3])
        outs = composite(
            proj.means2d, proj.conics, params[3], params[4], proj.depths, proj.radii, w, h, params[5], 16
        )
        g = torch.Generator().manual_seed(7)
        sum((t * torch.rand(t.shape, generator=g, dtype=t.dtype)).sum() for t in outs).backward()
        results.append((outs, [p.grad for p in params]))
    (fb, fb_grads), (ref, ref_grads) = results
    for name, got, want in zip(("colors", "alpha", "depth"), fb, ref, strict=True):
        assert_close_scaled(got, want, 1e-9, name)
    for got, want in zip(fb_grads, ref_grads, strict=True):
        assert_close_scaled(got, want, 1e-9, "grad")


def tiny_case(dtype=torch.float64):
    """3 large Gaussians on a 6 x 5 image: every pair above 1/255, transmittance far above 1e-4, alpha
    below the 0.999 clamp, so the rendering is smooth in every input and finite differences apply."""
    means = torch.tensor([[0.02, -0.01, 0.0], [-0.03, 0.02, 0.3], [0.01, 0.03, -0.2]], dtype=dtype)
    quats = torch.tensor([[1.0, 0.1, -0.2, 0.05], [0.9, -0.1, 0.3, 0.2], [0.7, 0.2, 0.1, -0.4]], dtype=dtype)
    scales = torch.tensor([[0.30, 0.25, 0.2], [0.2, 0.35, 0.3], [0.28, 0.3, 0.22]], dtype=dtype)
    opacities = torch.tensor([0.5, 0.4, 0.6], dtype=dtype)
    colors = torch.tensor([[0.9, 0.1], [0.2, 0.7], [0.4, 0.5]], dtype=dtype)
    viewmats = torch.eye(4, dtype=dtype)[None].clone()
    viewmats[0, 2, 3] = 3.0
    Ks = torch.tensor([[[8.0, 0, 3.0], [0, 8.0, 2.5], [0, 0, 1]]], dtype=dtype)
    backgrounds = torch.tensor([[0.3, 0.6]], dtype=dtype)
    return means, quats, scales, opacities, colors, viewmats, Ks, backgrounds


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_gradcheck_float64(backend):
    means, quats, scales, opacities, colors, viewmats, Ks, bgs = tiny_case()

    def f(m, q, s, o, c, b):
        out = rasterize(m, q, s, o, c, viewmats, Ks, 6, 5, backgrounds=b, backend=backend)
        return out.colors, out.alpha, out.depth

    inputs = tuple(t.clone().requires_grad_() for t in (means, quats, scales, opacities, colors, bgs))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_reference_closed_form_isotropic_gaussian():
    """One isotropic Gaussian on the optical axis at a pixel centre: alpha(r) = o exp(-r^2 / 2 s'^2) with
    s'^2 = (f s / z)^2 + eps2d, the centre pixel's alpha = opacity, colour = alpha c + (1 - alpha) bg."""
    dt = torch.float64
    f, z, s, size = 40.0, 2.0, 0.1, 33
    centre = size / 2  # 16.5: the centre of pixel 16
    means = torch.tensor([[0.0, 0.0, z]], dtype=dt)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=dt)
    scales = torch.full((1, 3), s, dtype=dt)
    colors = torch.tensor([[1.0, 0.25]], dtype=dt)
    bg = torch.tensor([[0.0, 1.0]], dtype=dt)
    vm = torch.eye(4, dtype=dt)[None]
    K = torch.tensor([[[f, 0, centre], [0, f, centre], [0, 0, 1]]], dtype=dt)
    sigma2 = (f * s / z) ** 2 + 0.3
    for opacity, peak in ((0.8, 0.8), (1.0, 0.999)):  # the per-pair alpha is clamped at 0.999
        o = torch.tensor([opacity], dtype=dt)
        out = rasterize(
            means, quats, scales, o, colors, vm, K, size, size, backgrounds=bg, backend="reference"
        )
        alpha = out.alpha[0, 16, :, 0]
        assert float(alpha[16]) == pytest.approx(peak, abs=1e-12)
        r = torch.arange(size, dtype=dt) + 0.5 - centre
        want = torch.clamp(opacity * torch.exp(-(r**2) / (2 * sigma2)), max=0.999)
        want = torch.where(want >= 1 / 255, want, torch.zeros_like(want))
        torch.testing.assert_close(alpha, want, rtol=1e-12, atol=1e-12)
        assert float(alpha[9]) == 0.0 and float(alpha[10]) > 0.0  # cut below 1/255: r > 6.76 px here
        a = out.alpha[0]
        torch.testing.assert_close(out.colors[0], a * colors[0] + (1 - a) * bg[0], rtol=1e-12, atol=1e-12)
        covered = a[..., 0] > 0
        torch.testing.assert_close(out.depth[0][covered], torch.full_like(out.depth[0][covered], z))
        assert (out.depth[0][~covered] == 0).all()
        # the profile is radially symmetric
        torch.testing.assert_close(out.alpha[0, :, 16, 0], alpha, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_gaussians_behind_camera_or_off_image_contribute_nothing(backend):
    dt = torch.float64
    means, quats, scales, opacities, colors, viewmats, Ks, w, h, bgs = make_case(3, dt, n=50, n_cams=1, d=3)
    extra_means = torch.tensor(
        [[0.0, 0.0, -3.5], [0.0, 0.0, -3.0], [40.0, 0.0, 0.0], [0.0, -30.0, 1.0]], dtype=dt
    )
    k = extra_means.shape[0]
    cat = lambda a, b: torch.cat([a, b])  # noqa: E731
    big = [
        cat(means, extra_means),
        cat(quats, torch.tensor([[1.0, 0, 0, 0]] * k, dtype=dt)),
        cat(scales, torch.full((k, 3), 0.5, dtype=dt)),
        cat(opacities, torch.full((k,), 0.9, dtype=dt)),
        cat(colors, torch.ones(k, 3, dtype=dt)),
    ]
    base = rasterize(
        means, quats, scales, opacities, colors, viewmats, Ks, w, h, backgrounds=bgs, backend=backend
    )
    params = [t.clone().requires_grad_() for t in big]
    more = rasterize(*params, viewmats, Ks, w, h, backgrounds=bgs, backend=backend)
    assert (more.radii[0, -k:] == 0).all()
    for name in ("colors", "alpha", "depth"):
        torch.testing.assert_close(getattr(more, name), getattr(base, name), rtol=1e-12, atol=1e-12)
    (more.colors.sum() + more.alpha.sum() + more.depth.sum()).backward()
    for p in params:
        assert torch.isfinite(p.grad).all()
        assert (p.grad[-k:] == 0).all()


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_empty_input_renders_background(backend):
    dt = torch.float32
    e = torch.zeros(0, 3, dtype=dt)
    bg = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=dt, requires_grad=True)
    vm = torch.eye(4, dtype=dt)[None]
    K = torch.tensor([[[20.0, 0, 8], [0, 20.0, 6], [0, 0, 1]]], dtype=dt)
    out = rasterize(
        e, torch.zeros(0, 4, dtype=dt), e, torch.zeros(0, dtype=dt), torch.zeros(0, 4, dtype=dt), vm, K, 16, 12,
        backgrounds=bg, backend=backend,
    )  # fmt: skip
    assert out.colors.shape == (1, 12, 16, 4)
    assert torch.equal(out.colors, bg.detach()[:, None, None, :].expand(1, 12, 16, 4))
    assert (out.alpha == 0).all() and (out.depth == 0).all()
    out.colors.sum().backward()
    assert torch.equal(bg.grad, torch.full_like(bg, 12 * 16))


def test_means2d_gradient_is_available_for_densification():
    """gsplat's strategies call info['means2d'].retain_grad() before backward and read .grad after."""
    means, quats, scales, opacities, colors, viewmats, Ks, w, h, bgs = make_case(4, torch.float32, n=80, d=3)
    means.requires_grad_()
    out = rasterize(means, quats, scales, opacities, colors, viewmats, Ks, w, h)
    info = out.strategy_info()
    info["means2d"].retain_grad()
    out.colors.sum().backward()
    assert info["means2d"].grad.shape == (2, 80, 2)
    visible = (info["radii"] > 0).all(-1)
    assert info["means2d"].grad[visible].abs().sum() > 0
    assert (info["means2d"].grad[~visible] == 0).all()
    assert (info["width"], info["height"], info["n_cameras"]) == (w, h, 2)


# --- bad input: ValueError naming the parameter (and how many entries are bad) ---


def _good():
    means, quats, scales, opacities, colors, viewmats, Ks, w, h, bgs = make_case(0, torch.float32, n=10, d=3)
    return dict(
        means=means, quats=quats, scales=scales, opacities=opacities, colors=colors, viewmats=viewmats, Ks=Ks,
        width=w, height=h, backgrounds=bgs,
    )  # fmt: skip


def _with(name, fn):
    kw = _good()
    kw[name] = fn(kw[name].clone())
    return kw


def _set(idx, value):
    def f(t):
        t[idx] = value
        return t

    return f


BAD = {
    "nan means": (
        _with("means", _set((slice(0, 2), 0), math.nan)),
        r"means has NaN or infinite values in 2 of 10",
    ),
    "inf quats": (_with("quats", _set((3, 1), math.inf)), r"quats has NaN or infinite values in 1 of 10"),
    "nan scales": (_with("scales", _set((4, 2), math.nan)), r"scales has NaN"),
    "inf opacities": (
        _with("opacities", _set(0, -math.inf)),
        r"opacities has NaN or infinite values in 1 of 10",
    ),
    "nan colors": (_with("colors", _set((9, 0), math.nan)), r"colors has NaN"),
    "nan viewmats": (
        _with("viewmats", _set((1, 0, 3), math.nan)),
        r"viewmats has NaN or infinite values in 1 of 2 cameras",
    ),
    "inf Ks": (_with("Ks", _set((0, 0, 2), math.inf)), r"Ks has NaN"),
    "nan backgrounds": (_with("backgrounds", _set((0, 1), math.nan)), r"backgrounds has NaN"),
    "zero scale": (_with("scales", _set((2, 0), 0.0)), r"scales must be > 0.*1 of 10"),
    "negative scales": (_with("scales", _set(slice(0, 3), -1.0)), r"scales must be > 0.*3 of 10"),
    "opacity above 1": (_with("opacities", _set(1, 1.5)), r"opacities must lie in \[0, 1\].*1 of 10"),
    "zero quaternion": (_with("quats", _set(5, 0.0)), r"quats has 1 of 10 all-zero"),
    "zero focal": (
        _with("Ks", _set((1, 0, 0), 0.0)),
        r"Ks has a non-positive focal length .* 1 of 2 cameras",
    ),
    "negative focal": (_with("Ks", _set((0, 1, 1), -5.0)), r"Ks has a non-positive focal length"),
    "quats shape": (_with("quats", lambda t: t[:, :3]), r"quats must have shape \[10, 4\].*got \[10, 3\]"),
    "colors N": (_with("colors", lambda t: t[:9]), r"colors must have shape \[N=10"),
    "means shape": (_with("means", lambda t: t[:, :2]), r"means must have shape \[N, 3\]"),
    "Ks count": (_with("Ks", lambda t: t[:1]), r"Ks must have shape \[2, 3, 3\]"),
    "backgrounds D": (_with("backgrounds", lambda t: t[:, :2]), r"backgrounds must have shape \[2, 3\]"),
    "viewmats shape": (_with("viewmats", lambda t: t[:, :3]), r"viewmats must have shape \[C, 4, 4\]"),
    "dtype mix": (_with("colors", lambda t: t.double()), r"one dtype"),
    "int colors": (_with("colors", lambda t: (t * 10).long()), r"colors must be a floating-point tensor"),
    "width": ({**_good(), "width": 0}, r"width must be a positive int"),
    "height float": ({**_good(), "height": 30.0}, r"height must be a positive int"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_raises_naming_the_parameter(case):
    kw, pattern = BAD[case]
    with pytest.raises(ValueError, match=pattern):
        rasterize(**kw, backend="cpu")


def test_bad_backend_and_planes():
    with pytest.raises(ValueError, match="backend must be one of"):
        rasterize(**_good(), backend="vulkan")
    with pytest.raises(ValueError, match="gsplat has no CPU path"):
        rasterize(**_good(), backend="gsplat")
    with pytest.raises(ValueError, match="near_plane < far_plane"):
        rasterize(**_good(), near_plane=2.0, far_plane=1.0)


def test_gsplat_wrapper_passes_gsplat_conventions(monkeypatch):
    """No CUDA here, so gsplat.rasterization is replaced by a recorder: the wrapper must ask for the
    unpacked layout, classic mode and RGB+ED, and split the extra expected-depth channel off."""
    import gsplat

    from ccl.splat._gsplat import rasterize_gsplat

    calls = {}

    def fake_rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, **kw):
        calls.update(kw)
        c, d = viewmats.shape[0], colors.shape[-1]
        out = torch.arange(c * height * width * (d + 1), dtype=torch.float32).reshape(c, height, width, d + 1)
        meta = {
            "means2d": torch.zeros(c, means.shape[0], 2),
            "radii": torch.ones(c, means.shape[0], 2, dtype=torch.int32),
        }
        return out, torch.full((c, height, width, 1), 0.5), meta

    monkeypatch.setattr(gsplat, "rasterization", fake_rasterization)
    means, quats, scales, opacities, colors, viewmats, Ks, w, h, bgs = make_case(0, torch.float32, n=5, d=3)
    out = rasterize_gsplat(
        means, quats, scales, opacities, colors, viewmats, Ks, w, h,
        backgrounds=bgs, near_plane=0.01, far_plane=1e10, eps2d=0.3, tile_size=16,
    )  # fmt: skip
    assert calls["render_mode"] == "RGB+ED" and calls["packed"] is False
    assert calls["rasterize_mode"] == "classic" and calls["eps2d"] == 0.3 and calls["backgrounds"] is bgs
    assert out.colors.shape == (2, h, w, 3) and out.depth.shape == (2, h, w, 1)
    assert float(out.depth[0, 0, 0, 0]) == 3.0  # the 4th channel of the first pixel
