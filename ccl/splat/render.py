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


# render_transmittance's probes: a probe is a Gaussian of this opacity and size added at a point; its alpha
# stays above the rasterizer's 1/255 cut on the pixels around its centre (its 2D footprint is the
# rasterizer's eps2d dilation, about half a pixel) and it dims what lies behind it by a few per cent only
PROBE_OPACITY = 0.05
PROBE_SCALE = 1e-6  # scene units: far below a pixel at any depth the rasterizer draws


def render_transmittance(gaussians: Gaussians, camera: Camera, points: Any, *, backend: str = "auto") -> Any:
    """→ [P] tensor on the Gaussians' device: the transmittance of the field at each world point `points`
    [P, 3] (a tensor) seen by `camera`, the share of light the Gaussians drawn in front of it (by camera
    depth, at the pixels it projects to) let through: 1 in front of everything, 0 behind an opaque surface.
    A point is in front of the first surface at its pixel, the depth where the accumulated opacity
    crosses 0.5 (a median depth), when its transmittance is above 0.5. A point not drawn (behind the
    camera, off the image) has 0.

    Measured with the rasterizer itself, so with each backend's own sorting, cut-offs and clamps: a probe
    Gaussian (PROBE_OPACITY, PROBE_SCALE) is put at every point, and the blend weight each probe gets is
    read from the gradient of the rendered image with respect to the probe's colour, once with the field
    and once with the probes alone; the ratio is the field's transmittance in front of the probe, averaged
    over the pixel or so its footprint covers (the probes' dimming of one another is in both and cancels)."""
    import torch

    from ccl.splat.model import activated
    from ccl.splat.rasterize import rasterize

    g = gaussians
    means, quats, scales, opacities = (
        t.detach()
        for t in activated(
            {"means": g.means, "quats": g.quats, "scales": g.log_scales, "opacities": g.opacity_logits}
        )
    )
    device, dtype = means.device, means.dtype
    points = torch.as_tensor(points).to(device=device, dtype=dtype)
    n = points.shape[0]
    probe_quats = torch.zeros(n, 4, dtype=dtype, device=device)
    probe_quats[:, 0] = 1.0
    probe_scales = torch.full((n, 3), PROBE_SCALE, dtype=dtype, device=device)
    probe_opacities = torch.full((n,), PROBE_OPACITY, dtype=dtype, device=device)
    viewmats, ks = camera_tensors([camera], device)
    viewmats, ks = viewmats.to(dtype), ks.to(dtype)

    def probe_weights(with_field: bool) -> Any:
        probe = torch.zeros(n, 1, dtype=dtype, device=device, requires_grad=True)
        m, q, s, o, c = points, probe_quats, probe_scales, probe_opacities, probe
        if with_field:
            m, q, s, o = (torch.cat(pair) for pair in ((means, m), (quats, q), (scales, s), (opacities, o)))
            c = torch.cat([torch.zeros(len(means), 1, dtype=dtype, device=device), probe])
        with torch.enable_grad():
            out = rasterize(m, q, s, o, c, viewmats, ks, camera.width, camera.height, backend=backend)
            (grad,) = torch.autograd.grad(out.colors.sum(), probe)
        return grad[:, 0]  # the probe's blend weights summed over the pixels

    if n == 0:
        return torch.zeros(0, dtype=dtype, device=device)
    with_field, alone = probe_weights(True), probe_weights(False)
    ratio = with_field / alone.clamp(min=torch.finfo(dtype).tiny)
    return torch.where(alone > 0, ratio, torch.zeros_like(ratio)).clamp(0.0, 1.0)


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
