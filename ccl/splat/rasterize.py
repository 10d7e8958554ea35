"""`rasterize`: the one entry of ccl's Gaussian rasterizer (gsplat on CUDA, ccl's own tile kernel on CPU).

Backends (all with gsplat 1.5.3's conventions, see projection.py and _reference.py):

- ``"gsplat"``: a thin wrapper over `gsplat.rasterization` (CUDA only: gsplat has no CPU path);
- ``"cpu"``: ccl's tile-based, depth-sorted EWA rasterizer: projection, tile binning and compositing in
  one small C++ library with analytic backwards (cpu_kernel.cpp, built by _cpu_kernel.py), each twin
  of a PyTorch function that the tests compare it with; if the library cannot be built, the PyTorch
  projection and a PyTorch tile loop are used (one warning);
- ``"reference"``: dense brute force (every Gaussian x every pixel), the oracle of the tests;
- ``"auto"``: ``"gsplat"`` when the inputs are on CUDA, else ``"cpu"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from ccl.splat.render_output import RenderOutput

if TYPE_CHECKING:
    from torch import Tensor

Backend = Literal["auto", "cpu", "gsplat", "reference"]
BACKENDS = ("auto", "cpu", "gsplat", "reference")


def rasterize(
    means: Tensor,  # [N, 3] world positions
    quats: Tensor,  # [N, 4] rotations, wxyz, any non-zero norm
    scales: Tensor,  # [N, 3] positive linear scales (exp of the log-scales you optimise)
    opacities: Tensor,  # [N] in [0, 1] (sigmoid of the logits you optimise)
    colors: Tensor,  # [N, D] any channel count: 3 colour, 8 feature, 3 + 8 stacked, ...
    viewmats: Tensor,  # [C, 4, 4] world-to-camera (OpenCV: x right, y down, z forward)
    Ks: Tensor,  # [C, 3, 3] pinhole intrinsics in pixels
    width: int,
    height: int,
    *,
    backgrounds: Tensor | None = None,  # [C, D] added as T_final * background
    backend: Backend = "auto",
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    tile_size: int = 16,
) -> RenderOutput:
    """Render N 3D Gaussians with D channels into C pinhole cameras, front to back by camera z.

    Differentiable w.r.t. means, quats, scales, opacities, colors and backgrounds; also w.r.t. viewmats
    and Ks when they require grad (the "cpu" backend then projects in PyTorch instead of C++). The depth
    channel is differentiable too (its gradient reaches the means). dtype float32 or float64 on the CPU
    (the C++ kernel runs either); gsplat needs float32 CUDA tensors. Raises ValueError naming the
    parameter and the number of bad entries on bad input (NaN/inf anywhere, scales <= 0, opacities
    outside [0, 1], all-zero quaternions, focal lengths <= 0, shape/device/dtype mismatches).
    """
    check_inputs(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        backgrounds=backgrounds, backend=backend, near_plane=near_plane, far_plane=far_plane,
        eps2d=eps2d, tile_size=tile_size,
    )  # fmt: skip
    if backend == "auto":
        backend = "gsplat" if means.is_cuda else "cpu"
    if backend == "gsplat":
        from ccl.splat._gsplat import rasterize_gsplat

        return rasterize_gsplat(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            backgrounds=backgrounds, near_plane=near_plane, far_plane=far_plane, eps2d=eps2d,
            tile_size=tile_size,
        )  # fmt: skip
    if backend == "cpu" and means.device.type != "cpu":
        raise ValueError(
            f"rasterize: backend='cpu' needs CPU tensors, got device {means.device}; "
            "use backend='auto' or 'gsplat' for CUDA tensors"
        )
    return _rasterize_torch(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        backgrounds=backgrounds, compositor=_COMPOSITORS[backend], near_plane=near_plane,
        far_plane=far_plane, eps2d=eps2d, tile_size=tile_size,
    )  # fmt: skip


def _composite_reference(*args):
    from ccl.splat._reference import composite_reference

    return composite_reference(*args)


def _composite_cpu(*args):
    from ccl.splat._cpu_tiles import composite_tiles

    *rest, tile_size = args
    return composite_tiles(*rest, tile_size=tile_size)


# backend name -> compositor(means2d, conics, opacities, colors, depths, radii, width, height, backgrounds,
# tile_size) -> (colors [C, H, W, D], alpha [C, H, W, 1], expected depth [C, H, W, 1])
_COMPOSITORS: dict[str, Callable[..., Any]] = {
    "reference": _composite_reference,
    "cpu": _composite_cpu,
}


def _rasterize_torch(
    means, quats, scales, opacities, colors, viewmats, Ks, width, height, *,
    backgrounds, compositor, near_plane, far_plane, eps2d, tile_size,
) -> RenderOutput:  # fmt: skip
    from ccl.splat.projection import project_gaussians

    project = project_gaussians
    if compositor is _composite_cpu:
        from ccl.splat._cpu_tiles import project_gaussians_cpu as project
    proj = project(
        means, quats, scales, viewmats, Ks, width, height,
        opacities=opacities, eps2d=eps2d, near_plane=near_plane, far_plane=far_plane,
    )  # fmt: skip
    out, alpha, depth = compositor(
        proj.means2d, proj.conics, opacities, colors, proj.depths, proj.radii, width, height, backgrounds,
        tile_size,
    )  # fmt: skip
    return RenderOutput(colors=out, alpha=alpha, depth=depth, means2d=proj.means2d, radii=proj.radii)


def check_inputs(
    means, quats, scales, opacities, colors, viewmats, Ks, width, height, *,
    backgrounds=None, backend="auto", near_plane=0.01, far_plane=1e10, eps2d=0.3, tile_size=16,
) -> None:  # fmt: skip
    """Raise ValueError naming the parameter, what was expected and what was got; else return None."""
    import torch

    if backend not in BACKENDS:
        raise ValueError(f"rasterize: backend must be one of {BACKENDS}, got {backend!r}")
    named = {
        "means": means, "quats": quats, "scales": scales, "opacities": opacities, "colors": colors,
        "viewmats": viewmats, "Ks": Ks,
    }  # fmt: skip
    if backgrounds is not None:
        named["backgrounds"] = backgrounds
    for name, t in named.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"rasterize: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"rasterize: {name} must be a floating-point tensor, got dtype {t.dtype}")
    for name, v in (("width", width), ("height", height), ("tile_size", tile_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"rasterize: {name} must be a positive int, got {v!r}")
    if not (0 < near_plane < far_plane):
        raise ValueError(f"rasterize: need 0 < near_plane < far_plane, got {near_plane} and {far_plane}")
    if not eps2d >= 0:
        raise ValueError(f"rasterize: eps2d must be >= 0 (pixels^2), got {eps2d}")

    if means.ndim != 2 or means.shape[-1] != 3:
        raise ValueError(f"rasterize: means must have shape [N, 3], got {list(means.shape)}")
    n = means.shape[0]
    if colors.ndim != 2 or colors.shape[0] != n or colors.shape[1] < 1:
        raise ValueError(f"rasterize: colors must have shape [N={n}, D>=1], got {list(colors.shape)}")
    if viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4):
        raise ValueError(f"rasterize: viewmats must have shape [C, 4, 4], got {list(viewmats.shape)}")
    c = viewmats.shape[0]
    expected = {
        "quats": (n, 4), "scales": (n, 3), "opacities": (n,), "Ks": (c, 3, 3),
        "backgrounds": (c, colors.shape[1]),
    }  # fmt: skip
    for name, shape in expected.items():
        if name in named and tuple(named[name].shape) != shape:
            raise ValueError(
                f"rasterize: {name} must have shape {list(shape)} (N={n} Gaussians, C={c} cameras, "
                f"D={colors.shape[1]} channels), got {list(named[name].shape)}"
            )
    devices = {name: t.device for name, t in named.items()}
    if len(set(devices.values())) > 1:
        raise ValueError(f"rasterize: all tensors must be on one device, got {devices}")
    dtypes = {name: t.dtype for name, t in named.items()}
    if len(set(dtypes.values())) > 1:
        raise ValueError(f"rasterize: all tensors must have one dtype, got {dtypes}")
    if backend == "gsplat" and not means.is_cuda:
        raise ValueError(
            "rasterize: backend='gsplat' needs CUDA tensors (gsplat has no CPU path); "
            "use backend='cpu' or 'auto' on the CPU"
        )

    # value checks: a cheap pass (sums propagate NaN/inf, extrema for ranges) with one device sync;
    # only when it flags something, the counting pass below finds and names the bad entries
    with torch.no_grad():
        quick = [t.sum() for t in named.values()]
        if n:
            omin, omax = torch.aminmax(opacities)
            quick += [scales.min(), omin, 1 - omax, quats.norm(dim=-1).min()]
        if c:
            quick.append(torch.minimum(Ks[:, 0, 0], Ks[:, 1, 1]).min())
        values = torch.stack(quick).tolist() if quick else []
    ok = all(math.isfinite(v) for v in values[: len(named)])
    ranges = values[len(named) :]
    if n:
        scale_min, opac_min, opac_gap, quat_norm_min = ranges[:4]
        ok = ok and scale_min > 0 and opac_min >= 0 and opac_gap >= 0 and quat_norm_min > 0
    if c:
        ok = ok and ranges[-1] > 0
    if ok:
        return
    _raise_bad_values(named, scales, opacities, quats, Ks, n, c)


def _raise_bad_values(named, scales, opacities, quats, Ks, n, c) -> None:
    """Count the bad entries of each check and raise for the first failing one (see check_inputs)."""
    import torch

    with torch.no_grad():
        checks = {
            name: (~torch.isfinite(t)).reshape(t.shape[0], -1 if t.numel() else 1).any(dim=1).sum()
            for name, t in named.items()
        }
        checks["scales<=0"] = (scales <= 0).any(dim=-1).sum()
        checks["opacities_range"] = ((opacities < 0) | (opacities > 1)).sum()
        checks["quats=0"] = (quats.abs().sum(dim=-1) == 0).sum()
        checks["focal"] = ((Ks[:, 0, 0] <= 0) | (Ks[:, 1, 1] <= 0)).sum()
        names = list(checks)
        counts = torch.stack([v.to(torch.int64) for v in checks.values()]).tolist()
    bad = dict(zip(names, counts, strict=True))
    for name in named:
        if bad[name]:
            unit = "cameras" if name in ("viewmats", "Ks", "backgrounds") else "Gaussians"
            raise ValueError(
                f"rasterize: {name} has NaN or infinite values in {bad[name]} of "
                f"{named[name].shape[0]} {unit}; fix or drop them before rendering"
            )
    if bad["scales<=0"]:
        raise ValueError(
            f"rasterize: scales must be > 0 (linear, not log), got {bad['scales<=0']} of {n} Gaussians "
            "with a zero or negative scale; pass exp(log_scales)"
        )
    if bad["opacities_range"]:
        raise ValueError(
            f"rasterize: opacities must lie in [0, 1], got {bad['opacities_range']} of {n} outside; "
            "pass sigmoid(logits)"
        )
    if bad["quats=0"]:
        raise ValueError(f"rasterize: quats has {bad['quats=0']} of {n} all-zero quaternions (no rotation)")
    if bad["focal"]:
        raise ValueError(
            f"rasterize: Ks has a non-positive focal length (fx or fy <= 0) in {bad['focal']} of {c} cameras"
        )
