"""Render helpers for evaluation: the colour image, the decoded class map and the refined feature map.

Each takes a field and a `ccl.scene.Camera` (K, world_to_camera, width, height) and returns numpy
arrays for one view. The refined feature of a pixel is the codebook prototype its decoder picks
(paper eq. 10): `render_prototype_features(...) == prototypes[render_class_map(...)]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ccl.device import resolve_device as resolve_device  # re-exported: ccl.splat, tests

DECODE_CHUNK = 1 << 16  # pixels decoded at once by render_class_map

if TYPE_CHECKING:
    from ccl.scene import Camera
    from ccl.splat.checkpoint import LanguageField
    from ccl.splat.model import Gaussians


def camera_tensors(cameras: Sequence[Camera], device: Any = "cpu") -> tuple[Any, Any]:
    """(viewmats [C, 4, 4], Ks [C, 3, 3]) float32 tensors of the cameras (world-to-camera, OpenCV)."""
    import torch

    viewmats = torch.tensor(
        np.stack([c.world_to_camera for c in cameras]), dtype=torch.float32, device=device
    )
    ks = torch.tensor(np.stack([c.K for c in cameras]), dtype=torch.float32, device=device)
    return viewmats, ks


def camera_center(camera: Camera, device: Any = "cpu") -> Any:
    import torch

    return torch.tensor(camera.center, dtype=torch.float32, device=device)


def render_channels(
    gaussians: Gaussians,
    camera: Camera,
    *,
    rgb: bool = True,
    features: Any = None,
    background: Sequence[float] | None = None,
    params: Any = None,
    backend: str = "auto",
) -> Any:
    """Rasterize colour (3 channels, view-dependent SH) and/or per-Gaussian `features` [G, F] into one view.

    With `params` (a ParameterDict under the strategy names, as in training) gradients flow to it;
    otherwise `gaussians` is used. Returns the rasterizer's RenderOutput (C = 1); channels are colour
    first, then features. The background applies to the colour channels (features get 0).
    """
    import torch

    from ccl.splat.model import activated, sh_to_rgb
    from ccl.splat.rasterize import rasterize

    if params is None:
        params = {
            "means": gaussians.means,
            "quats": gaussians.quats,
            "scales": gaussians.log_scales,
            "opacities": gaussians.opacity_logits,
            "sh0": gaussians.sh0,
            "shN": gaussians.shN,
        }
    device = params["means"].device
    means, quats, scales, opacities = activated(params)
    chans, bg = [], []
    if rgb:
        chans.append(sh_to_rgb(params["sh0"], params["shN"], means, camera_center(camera, device)))
        bg.extend(background if background is not None else (0.0, 0.0, 0.0))
    if features is not None:
        chans.append(features)
        bg.extend([0.0] * features.shape[1])
    assert chans, "render_channels: nothing to render"
    colors = chans[0] if len(chans) == 1 else torch.cat(chans, dim=1)
    viewmats, ks = camera_tensors([camera], device)
    backgrounds = torch.tensor([bg], dtype=colors.dtype, device=device) if any(bg) else None
    return rasterize(
        means, quats, scales, opacities, colors, viewmats, ks, camera.width, camera.height,
        backgrounds=backgrounds, backend=backend,
    )  # fmt: skip


def render_rgb(
    field: Gaussians, camera: Camera, *, background: Sequence[float] = (0.0, 0.0, 0.0)
) -> np.ndarray:
    """→ [H, W, 3] float32 colour image in [0, 1] of the colour field seen by `camera`."""
    import torch

    with torch.no_grad():
        out = render_channels(field, camera, background=background)
    return out.colors[0].clamp(0, 1).cpu().numpy()


def render_class_map(language_field: LanguageField, camera: Camera) -> np.ndarray:
    """→ [H, W] int64: the class (codebook prototype index) the decoder picks at every pixel."""
    import torch

    with torch.no_grad():
        feat = _render_features(language_field, camera)  # [H, W, F]
        flat = feat.reshape(-1, feat.shape[-1])
        # decode in chunks: the logits of a full-resolution view (H·W × N floats) need not exist at once
        out = torch.cat([language_field.decoder(c).argmax(dim=-1) for c in flat.split(DECODE_CHUNK)])
    return out.reshape(feat.shape[:2]).cpu().numpy()


def render_class_logits(language_field: LanguageField, camera: Camera) -> np.ndarray:
    """→ [H, W, N] float32 decoder logits at every pixel (softmax of these = class probabilities)."""
    return _decode_view(language_field, camera).cpu().numpy()


def render_prototype_features(
    language_field: LanguageField, codebook_prototypes: np.ndarray, camera: Camera
) -> np.ndarray:
    """→ [H, W, D] float32: the refined feature map, the prototype each pixel's decoder picks.

    `codebook_prototypes` [N, D] (the codebook file's `prototypes`), N = the field's n_classes.
    """
    protos = np.asarray(codebook_prototypes, dtype=np.float32)
    if protos.ndim != 2 or protos.shape[0] != language_field.n_classes:
        raise ValueError(
            f"render_prototype_features: prototypes have shape {list(protos.shape)}, expected "
            f"[{language_field.n_classes}, D] (the language field decodes into {language_field.n_classes} "
            "classes): pass the codebook the field was trained with (same variant and scale)"
        )
    return protos[render_class_map(language_field, camera)]


def _render_features(language_field: LanguageField, camera: Camera) -> Any:
    out = render_channels(language_field.gaussians, camera, rgb=False, features=language_field.features)
    return out.colors[0]  # [H, W, F]


def _decode_view(language_field: LanguageField, camera: Camera) -> Any:
    import torch

    with torch.no_grad():
        return language_field.decoder(_render_features(language_field, camera))  # [H, W, N]
