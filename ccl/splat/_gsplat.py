"""Thin wrapper over `gsplat.rasterization` (CUDA only; gsplat has no CPU path).

Imported lazily by `ccl.splat.rasterize` so `import ccl.splat` never needs gsplat or CUDA.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccl.splat.render_output import RenderOutput

if TYPE_CHECKING:
    from torch import Tensor


def rasterize_gsplat(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, D]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    *,
    backgrounds: Tensor | None,  # [C, D]
    near_plane: float,
    far_plane: float,
    eps2d: float,
    tile_size: int,
) -> RenderOutput:
    try:
        from gsplat import rasterization
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "backend='gsplat' needs gsplat (pip install gsplat==1.5.3) and a CUDA build of torch; "
            "on the CPU use backend='cpu'"
        ) from e

    d = colors.shape[-1]
    out, alpha, meta = rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, packed=False, tile_size=tile_size,
        backgrounds=backgrounds, render_mode="RGB+ED", rasterize_mode="classic", sh_degree=None,
    )  # fmt: skip
    return RenderOutput(
        colors=out[..., :d], alpha=alpha, depth=out[..., d:], means2d=meta["means2d"], radii=meta["radii"]
    )
