"""Dense reference compositor: every Gaussian against every pixel, in plain PyTorch, autograd backward.

This is the oracle the tile rasterizers are tested against and the "straightforward dense PyTorch
compositor" of the benchmark. Per pixel, front to back in depth order (stable sort, ties by index, as
gsplat's radix sort), with gsplat's per-pixel rules (RasterizeToPixels3DGSFwd.cu):

    sigma = 0.5 (a dx^2 + c dy^2) + b dx dy,  (dx, dy) = mean2d - pixel centre
    alpha = min(ALPHA_MAX, opacity * exp(-sigma));  skipped if sigma < 0 or alpha < 1/255
    stop (exclusive) at the first Gaussian after which the transmittance would be <= 1e-4
    colour = sum_i c_i alpha_i T_i + T_final * background;  rendered alpha = 1 - T_final

No tile culling is needed: outside a Gaussian's projected box its alpha is already below 1/255
(see projection.py), so the dense rule and the tile rule select the same Gaussian-pixel pairs.
Memory is bounded by `pair_budget` (pixels x Gaussians per chunk, 8M by default) per step; with grad enabled each chunk is checkpointed
(recomputed in backward), so peak memory stays one chunk's worth rather than pixels x Gaussians.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ccl.splat.projection import ALPHA_THRESHOLD

ALPHA_MAX = 0.999  # gsplat 1.5.3 clamps a Gaussian-pixel alpha at 0.999 (RasterizeToPixels3DGSFwd.cu)
T_MIN = 1e-4  # gsplat: a pixel is done once its transmittance would fall to 1e-4 or below


def _composite_chunk(
    pix: Tensor,  # [P, 2] pixel centres
    means2d: Tensor,  # [M, 2] depth-sorted
    conics: Tensor,  # [M, 3]
    opacities: Tensor,  # [M]
    colors: Tensor,  # [M, K]
) -> tuple[Tensor, Tensor]:
    dx = means2d[None, :, 0] - pix[:, None, 0]  # [P, M]
    dy = means2d[None, :, 1] - pix[:, None, 1]
    sigma = 0.5 * (conics[:, 0] * dx * dx + conics[:, 2] * dy * dy) + conics[:, 1] * dx * dy
    alpha = torch.clamp(opacities * torch.exp(-sigma), max=ALPHA_MAX)
    keep = (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    one_minus = 1.0 - alpha
    t_after = torch.cumprod(one_minus, dim=1)  # [P, M]
    with torch.no_grad():
        included = t_after > T_MIN  # monotone along M: once a pixel is done it stays done
    t_before = torch.cat([torch.ones_like(t_after[:, :1]), t_after[:, :-1]], dim=1)
    weights = torch.where(included, alpha * t_before, torch.zeros_like(alpha))  # [P, M]
    t_final = torch.where(included, one_minus, torch.ones_like(one_minus)).prod(dim=1)  # [P]
    return weights @ colors, t_final


def with_depth_channel(
    colors: Tensor,  # [N, D]
    depths: Tensor,  # [C, N]
    backgrounds: Tensor | None,  # [C, D]
) -> tuple[Tensor, Tensor | None]:
    """-> per-camera channels [C, N, D + 1] with camera z last, and backgrounds [C, D + 1] (0 for z), as
    gsplat's "RGB+ED" render mode blends depth as one more channel."""
    n_cams = depths.shape[0]
    feats = torch.cat([colors.expand(n_cams, -1, -1), depths[..., None]], dim=-1)
    if backgrounds is not None:
        backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(n_cams, 1)], dim=-1)
    return feats, backgrounds


def composite_reference(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, D]
    depths: Tensor,  # [C, N]
    radii: Tensor,  # [C, N, 2] int32
    width: int,
    height: int,
    backgrounds: Tensor | None,  # [C, D]
    tile_size: int = 16,  # unused: no tiles here
) -> tuple[Tensor, Tensor, Tensor]:
    """-> (colors [C, H, W, D] with background, alpha [C, H, W, 1], expected depth [C, H, W, 1])."""
    feats, bgs = with_depth_channel(colors, depths, backgrounds)
    outs, alphas = [], []
    for c in range(means2d.shape[0]):
        o, a = composite_dense(
            means2d[c], conics[c], opacities, feats[c], depths[c], radii[c], width, height,
            None if bgs is None else bgs[c],
        )  # fmt: skip
        outs.append(o)
        alphas.append(a)
    out, alpha = torch.stack(outs), torch.stack(alphas)
    return out[..., :-1], alpha, out[..., -1:] / alpha.clamp(min=1e-10)


def composite_dense(
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, K]
    depths: Tensor,  # [N]
    radii: Tensor,  # [N, 2] int32, 0 = culled
    width: int,
    height: int,
    background: Tensor | None = None,  # [K]
    *,
    pair_budget: int = 1 << 23,
) -> tuple[Tensor, Tensor]:
    """One camera -> (colors [H, W, K], alpha [H, W, 1]) by brute force over all pixels x Gaussians."""
    keep = (radii > 0).all(dim=-1)
    idx = torch.nonzero(keep).squeeze(1)
    idx = idx[torch.sort(depths.detach()[idx], stable=True).indices]
    m2, co, op, col = means2d[idx], conics[idx], opacities[idx], colors[idx]
    dev, dt = means2d.device, means2d.dtype
    ys, xs = torch.meshgrid(
        torch.arange(height, device=dev, dtype=dt), torch.arange(width, device=dev, dtype=dt), indexing="ij"
    )
    pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1) + 0.5  # [H*W, 2]
    outs, ts = [], []
    pixel_chunk = max(1, pair_budget // max(1, idx.numel()))
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (m2, co, op, col))
    for s in range(0, pix.shape[0], pixel_chunk):
        p = pix[s : s + pixel_chunk]
        if grad:
            o, t = checkpoint(_composite_chunk, p, m2, co, op, col, use_reentrant=False)
        else:
            o, t = _composite_chunk(p, m2, co, op, col)
        outs.append(o)
        ts.append(t)
    out = torch.cat(outs).reshape(height, width, -1)
    t_final = torch.cat(ts).reshape(height, width, 1)
    if background is not None:
        out = out + t_final * background
    return out, 1.0 - t_final
