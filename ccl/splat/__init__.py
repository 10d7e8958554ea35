"""Gaussian field: the rasterizer (gsplat on CUDA, ccl's own tile kernel on the CPU) and its training.

`import ccl.splat` is light: torch and gsplat are imported inside the functions that need them.
"""

from ccl.splat.rasterize import RenderOutput, check_inputs, rasterize

__all__ = ["RenderOutput", "check_inputs", "rasterize"]

# --- training exports (colour field, language field, checkpoints) go below this line ---
