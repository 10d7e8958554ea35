"""`RenderOutput`, what every rasterizer backend returns (its own module: the backends build it and the
dispatcher `rasterize` returns it, so neither has to import the other for it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class RenderOutput:
    """What `rasterize` returns for C cameras of H x W pixels."""

    colors: Tensor  # [C, H, W, D] rendered channels (D = colors.shape[-1] of the input), background added
    alpha: Tensor  # [C, H, W, 1] accumulated opacity, 1 - final transmittance
    depth: Tensor  # [C, H, W, 1] expected camera z: sum(w_i z_i) / max(alpha, 1e-10) (gsplat's "ED"); 0 where empty
    means2d: Tensor  # [C, N, 2] projected centres in pixels; in the graph, so .retain_grad() works for densification
    radii: Tensor  # [C, N, 2] int32 projected box half-sizes in pixels; 0 = culled in that camera

    def strategy_info(self) -> dict[str, Any]:
        """The `info` dict gsplat's DefaultStrategy / MCMCStrategy hooks read (unpacked layout)."""
        c, h, w = self.colors.shape[:3]
        return {
            "means2d": self.means2d,
            "radii": self.radii,
            "width": w,
            "height": h,
            "n_cameras": c,
            "gaussian_ids": None,
        }
