"""Gaussian field: the rasterizer (gsplat on CUDA, ccl's own tile kernel on the CPU) and its training.

`import ccl.splat` is light: torch and gsplat are imported inside the functions that need them.
"""

from ccl.splat.rasterize import check_inputs, rasterize
from ccl.splat.render_output import RenderOutput

__all__ = ["RenderOutput", "check_inputs", "rasterize"]

# --- training exports (colour field, language field, checkpoints) go below this line ---
from ccl.splat.checkpoint import (  # noqa: E402
    LanguageField,
    load_language_field,
    load_rgb_field,
    save_language_field,
    save_rgb_field,
)
from ccl.splat.config import LanguageConfig, RgbConfig  # noqa: E402
from ccl.splat.diagnostics import LanguageMetrics, RgbMetrics  # noqa: E402
from ccl.splat.model import Gaussians  # noqa: E402
from ccl.splat.render import (  # noqa: E402
    render_class_map,
    render_prototype_features,
    render_rgb,
    resolve_device,
)
from ccl.splat.train_language import fit_language, train_language  # noqa: E402
from ccl.splat.train_rgb import fit_rgb, train_rgb  # noqa: E402
from ccl.splat.trainer import TrainingDiverged  # noqa: E402

__all__ += [
    "Gaussians",
    "LanguageConfig",
    "LanguageField",
    "LanguageMetrics",
    "RgbConfig",
    "RgbMetrics",
    "TrainingDiverged",
    "fit_language",
    "fit_rgb",
    "load_language_field",
    "load_rgb_field",
    "render_class_map",
    "render_prototype_features",
    "render_rgb",
    "resolve_device",
    "save_language_field",
    "save_rgb_field",
    "train_language",
    "train_rgb",
]
