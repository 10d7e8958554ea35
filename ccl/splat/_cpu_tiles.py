"""Tile-based compositing on the CPU: binning of projected Gaussians into tiles, then per-tile blending.

Two implementations with the same inputs and outputs:

- the C++ kernel of cpu_kernel.cpp, loaded by `_cpu_kernel` (forward and analytic backward,
  float32/float64, threads over tiles), wrapped in `_TileComposite`, an autograd Function that saves
  its inputs and the binning;
- a PyTorch fallback that loops over tiles and blends each with the dense rule of `_reference`
  restricted to that tile's Gaussians (autograd backward), used when the kernel cannot be built.

Both bin like gsplat's `isect_tiles`: a Gaussian goes to every tile its projected box touches, and
each tile's list is in depth order. Peak memory is the tile lists plus one tile's pixels x Gaussians,
never all pixels x all Gaussians.
"""

from __future__ import annotations

import ctypes
import logging

import torch
from torch import Tensor

from ccl.splat._cpu_kernel import load_kernel
from ccl.splat._cpu_kernel import tensor_pointer as _ptr

log = logging.getLogger(__name__)


def bin_tiles(
    means2d: Tensor,  # [C, N, 2]
    depths: Tensor,  # [C, N]
    radii: Tensor,  # [C, N, 2] int32, 0 = culled
    width: int,
    height: int,
    tile_size: int,
) -> tuple[Tensor, Tensor]:
    """-> (offsets [C * T + 1] int64, ids [n_isects] int64): tile t of camera c holds Gaussians
    ids[offsets[c*T + t] : offsets[c*T + t + 1]], front to back. T = tiles_x * tiles_y, row-major."""
    n_cams, n = depths.shape
    tx, ty = -(-width // tile_size), -(-height // tile_size)
    with torch.no_grad():
        m = means2d.detach() / tile_size
        r = radii.to(means2d.dtype) / tile_size
        lo = torch.floor(m - r).to(torch.int64)
        hi = torch.ceil(m + r).to(torch.int64)
        lo[..., 0].clamp_(0, tx), hi[..., 0].clamp_(0, tx)
        lo[..., 1].clamp_(0, ty), hi[..., 1].clamp_(0, ty)
        span = (hi - lo).clamp(min=0)
        count = span[..., 0] * span[..., 1] * (radii > 0).all(dim=-1)  # [C, N]
        # depth order per camera (stable: ties by index, as gsplat's radix sort)
        order = torch.sort(depths.detach(), dim=1, stable=True).indices  # [C, N]
        cnt = torch.gather(count, 1, order).reshape(-1)  # [C*N] in depth order
        gid = order.reshape(-1)
        cam = torch.arange(n_cams).repeat_interleave(n)
        rep = torch.repeat_interleave(torch.arange(n_cams * n), cnt)
        start = torch.cumsum(cnt, 0) - cnt
        local = torch.arange(rep.numel()) - start[rep]
        g, c = gid[rep], cam[rep]
        w = span[c, g, 0]
        tile = (lo[c, g, 1] + local // w.clamp(min=1)) * tx + lo[c, g, 0] + local % w.clamp(min=1)
        key = c * (tx * ty) + tile
        key, perm = torch.sort(key, stable=True)  # stable keeps depth order inside a tile
        ids = g[perm]
        offsets = torch.zeros(n_cams * tx * ty + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(torch.bincount(key, minlength=n_cams * tx * ty), 0)
    return offsets, ids


def _composite_tiles_torch(
    means2d, conics, opacities, colors, depths, radii, width, height, backgrounds, tile_size
):
    """PyTorch tile loop with the dense rule per tile; same inputs and outputs as `composite_tiles`."""
    from ccl.splat._reference import _composite_chunk, with_depth_channel

    colors, backgrounds = with_depth_channel(colors, depths, backgrounds)
    n_cams, _, k = colors.shape
    tx, ty = -(-width // tile_size), -(-height // tile_size)
    offsets, ids = bin_tiles(means2d, depths, radii, width, height, tile_size)
    offsets = offsets.tolist()
    dt = means2d.dtype
    outs, ts = [], []
    for c in range(n_cams):
        vals, tvals, pidx = [], [], []
        for t in range(tx * ty):
            x0, y0 = (t % tx) * tile_size, (t // tx) * tile_size
            ys, xs = torch.meshgrid(
                torch.arange(y0, min(y0 + tile_size, height)),
                torch.arange(x0, min(x0 + tile_size, width)),
                indexing="ij",
            )
            ys, xs = ys.reshape(-1), xs.reshape(-1)
            g = ids[offsets[c * tx * ty + t] : offsets[c * tx * ty + t + 1]]
            pix = torch.stack([xs, ys], dim=-1).to(dt) + 0.5
            o, tf = _composite_chunk(pix, means2d[c, g], conics[c, g], opacities[g], colors[c, g])
            vals.append(o)
            tvals.append(tf)
            pidx.append(ys * width + xs)
        p = torch.cat(pidx)
        out = torch.zeros(height * width, k, dtype=dt).index_copy(0, p, torch.cat(vals))
        tf = torch.ones(height * width, dtype=dt).index_copy(0, p, torch.cat(tvals))
        outs.append(out.reshape(height, width, k))
        ts.append(tf.reshape(height, width, 1))
    out, t_final = torch.stack(outs), torch.stack(ts)
    if backgrounds is not None:
        out = out + t_final * backgrounds[:, None, None, :]
    alpha = 1.0 - t_final
    return out[..., :-1], alpha, out[..., -1:] / alpha.clamp(min=1e-10)


def _threads() -> ctypes.c_int:
    """Kernel threads: torch's intra-op thread count (torch.set_num_threads controls both)."""
    return ctypes.c_int(torch.get_num_threads())


class _TileComposite(torch.autograd.Function):
    """C++ tile compositing. Saves its inputs, the binning and three per-pixel by-products of the
    forward (final transmittance, index of the last blended Gaussian in the tile list, the expected
    depth), as gsplat does."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, depths, backgrounds, radii, offsets, ids, dims):
        lib = load_kernel()
        sfx = "f64" if means2d.dtype == torch.float64 else "f32"
        n_cams, d = depths.shape[0], colors.shape[-1]
        width, height = int(dims[3]), int(dims[4])
        out = means2d.new_empty(n_cams, height, width, d)
        alpha = means2d.new_empty(n_cams, height, width, 1)
        depth = means2d.new_empty(n_cams, height, width, 1)
        t_final = means2d.new_empty(n_cams, height, width)
        last = torch.empty(n_cams, height, width, dtype=torch.int32)
        getattr(lib, f"ccl_splat_fwd_{sfx}")(
            _ptr(dims), _ptr(means2d), _ptr(conics), _ptr(opacities), _ptr(colors), _ptr(depths),
            _ptr(backgrounds), _ptr(radii), _ptr(offsets), _ptr(ids), _ptr(out), _ptr(alpha), _ptr(depth),
            _ptr(t_final), _ptr(last), _threads(),
        )  # fmt: skip
        ctx.save_for_backward(
            means2d,
            conics,
            opacities,
            colors,
            depths,
            backgrounds,
            radii,
            offsets,
            ids,
            dims,
            t_final,
            last,
            depth,
        )
        return out, alpha, depth

    @staticmethod
    def backward(ctx, v_out, v_alpha, v_depth):
        (means2d, conics, opacities, colors, depths, backgrounds, radii, offsets, ids, dims, t_final, last,
         depth) = ctx.saved_tensors  # fmt: skip
        lib = load_kernel()
        sfx = "f64" if means2d.dtype == torch.float64 else "f32"
        v_out, v_alpha, v_depth = (None if v is None else v.contiguous() for v in (v_out, v_alpha, v_depth))
        v_means2d, v_conics = torch.empty_like(means2d), torch.empty_like(conics)
        v_opac, v_colors, v_depths = (
            torch.empty_like(opacities),
            torch.empty_like(colors),
            torch.empty_like(depths),
        )
        v_bg = None if backgrounds is None else torch.empty_like(backgrounds)
        getattr(lib, f"ccl_splat_bwd_{sfx}")(
            _ptr(dims), _ptr(means2d), _ptr(conics), _ptr(opacities), _ptr(colors), _ptr(depths),
            _ptr(backgrounds), _ptr(radii), _ptr(offsets), _ptr(ids), _ptr(t_final), _ptr(last), _ptr(depth),
            _ptr(v_out), _ptr(v_alpha), _ptr(v_depth), _ptr(v_means2d), _ptr(v_conics), _ptr(v_opac),
            _ptr(v_colors), _ptr(v_depths), _ptr(v_bg), _threads(),
        )  # fmt: skip
        return v_means2d, v_conics, v_opac, v_colors, v_depths, v_bg, None, None, None, None


class _ProjectFused(torch.autograd.Function):
    """C++ twin of `projection.project_gaussians` (gradients to means, quats, scales; none to cameras)."""

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, Ks, dims, fparams):
        lib = load_kernel()
        sfx = "f64" if means.dtype == torch.float64 else "f32"
        n_cams, n = int(dims[0]), int(dims[1])
        means2d = means.new_empty(n_cams, n, 2)
        conics = means.new_empty(n_cams, n, 3)
        depths = means.new_empty(n_cams, n)
        radii = torch.empty(n_cams, n, 2, dtype=torch.int32)
        getattr(lib, f"ccl_splat_project_fwd_{sfx}")(
            _ptr(dims), _ptr(fparams), _ptr(means), _ptr(quats), _ptr(scales), _ptr(opacities), _ptr(viewmats),
            _ptr(Ks), _ptr(means2d), _ptr(conics), _ptr(depths), _ptr(radii), _threads(),
        )  # fmt: skip
        ctx.mark_non_differentiable(radii)
        ctx.save_for_backward(means, quats, scales, viewmats, Ks, dims, fparams)
        return means2d, conics, depths, radii

    @staticmethod
    def backward(ctx, v_means2d, v_conics, v_depths, _v_radii):
        means, quats, scales, viewmats, Ks, dims, fparams = ctx.saved_tensors
        lib = load_kernel()
        sfx = "f64" if means.dtype == torch.float64 else "f32"
        n_cams, n = int(dims[0]), int(dims[1])
        zeros = means.new_zeros
        v_means2d = zeros(n_cams, n, 2) if v_means2d is None else v_means2d.contiguous()
        v_conics = zeros(n_cams, n, 3) if v_conics is None else v_conics.contiguous()
        v_depths = zeros(n_cams, n) if v_depths is None else v_depths.contiguous()
        v_means, v_quats, v_scales = (
            torch.empty_like(means),
            torch.empty_like(quats),
            torch.empty_like(scales),
        )
        getattr(lib, f"ccl_splat_project_bwd_{sfx}")(
            _ptr(dims), _ptr(fparams), _ptr(means), _ptr(quats), _ptr(scales), _ptr(viewmats), _ptr(Ks),
            _ptr(v_means2d), _ptr(v_conics), _ptr(v_depths), _ptr(v_means), _ptr(v_quats), _ptr(v_scales),
            _threads(),
        )  # fmt: skip
        return v_means, v_quats, v_scales, None, None, None, None, None


def project_gaussians_cpu(
    means, quats, scales, viewmats, Ks, width, height, *, opacities, eps2d, near_plane, far_plane
):
    """`projection.project_gaussians` by the C++ kernel, or by PyTorch when the kernel is unavailable or
    the cameras need gradients (the kernel computes none for viewmats and Ks)."""
    from ccl.splat.projection import Projection, project_gaussians

    lib = load_kernel()
    if (
        lib is None
        or means.dtype not in (torch.float32, torch.float64)
        or (torch.is_grad_enabled() and (viewmats.requires_grad or Ks.requires_grad))
    ):
        return project_gaussians(
            means, quats, scales, viewmats, Ks, width, height, opacities=opacities, eps2d=eps2d,
            near_plane=near_plane, far_plane=far_plane,
        )  # fmt: skip
    dims = torch.tensor([viewmats.shape[0], means.shape[0], width, height], dtype=torch.int64)
    fparams = torch.tensor([eps2d, near_plane, far_plane], dtype=means.dtype)
    means2d, conics, depths, radii = _ProjectFused.apply(
        means.contiguous(), quats.contiguous(), scales.contiguous(), opacities.contiguous(),
        viewmats.detach().contiguous(), Ks.detach().contiguous(), dims, fparams,
    )  # fmt: skip
    return Projection(means2d=means2d, conics=conics, depths=depths, radii=radii)


def bin_tiles_kernel(lib, means2d, depths, radii, dims) -> tuple[Tensor, Tensor]:
    """`bin_tiles` in C++ (same lists, same order)."""
    sfx = "f64" if means2d.dtype == torch.float64 else "f32"
    n_cams, n = depths.shape
    n_tiles = n_cams * int(dims[6]) * int(dims[7])
    counts = torch.zeros(n_tiles, dtype=torch.int64)
    m2 = means2d.detach()
    getattr(lib, f"ccl_splat_bin_count_{sfx}")(_ptr(dims), _ptr(m2), _ptr(radii), _ptr(counts))
    offsets = torch.zeros(n_tiles + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=offsets[1:])
    order = torch.sort(depths.detach(), dim=1, stable=True).indices.contiguous()
    ids = torch.empty(int(offsets[-1]), dtype=torch.int64)
    getattr(lib, f"ccl_splat_bin_fill_{sfx}")(
        _ptr(dims), _ptr(m2), _ptr(radii), _ptr(order), _ptr(offsets), _ptr(ids)
    )
    return offsets, ids


def composite_tiles(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, D]
    depths: Tensor,  # [C, N]
    radii: Tensor,  # [C, N, 2] int32
    width: int,
    height: int,
    backgrounds: Tensor | None,  # [C, D]
    *,
    tile_size: int = 16,
) -> tuple[Tensor, Tensor, Tensor]:
    """-> (colors [C, H, W, D] with background, alpha [C, H, W, 1], expected depth [C, H, W, 1]);
    the C++ kernel when it loads, else the PyTorch tile loop."""
    if means2d.dtype not in (torch.float32, torch.float64) or load_kernel() is None:
        return _composite_tiles_torch(
            means2d, conics, opacities, colors, depths, radii, width, height, backgrounds, tile_size
        )
    n_cams, n = depths.shape
    tx, ty = -(-width // tile_size), -(-height // tile_size)
    dims = torch.tensor([n_cams, n, colors.shape[-1], width, height, tile_size, tx, ty], dtype=torch.int64)
    means2d, radii = means2d.contiguous(), radii.contiguous()
    offsets, ids = bin_tiles_kernel(load_kernel(), means2d, depths, radii, dims)
    return _TileComposite.apply(
        means2d, conics.contiguous(), opacities.contiguous(), colors.contiguous(), depths.contiguous(),
        None if backgrounds is None else backgrounds.contiguous(), radii, offsets, ids, dims,
    )  # fmt: skip
