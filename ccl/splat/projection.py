"""EWA projection of 3D Gaussians to the image plane, in plain PyTorch (autograd gives its backward).

The twin of gsplat 1.5.3's `fully_fused_projection` (pinhole camera, unpacked): the torch reference
`gsplat.cuda._torch_impl._fully_fused_projection` and the CUDA kernel `ProjectionEWA3DGSFused.cu`.
Conventions kept exactly:

- world-to-camera `viewmats` (OpenCV: x right, y down, z forward); pixel centres at `(j + 0.5, i + 0.5)`;
- the Jacobian of the perspective map evaluated at the camera-space mean whose x/z and y/z are clamped
  to 1.3 x the field of view (`_persp_proj`), so Gaussians far outside the frustum do not blow up;
- a low-pass dilation `eps2d` (0.3 px^2) added to the 2D covariance before inverting it;
- radii = ceil(extend * sqrt(diag(cov2d))) with extend = 3.33, tightened when opacities are given to
  `min(3.33, sqrt(2 ln(255 * opacity)))` (the CUDA kernel's opacity-aware box; beyond it a Gaussian's
  alpha is below 1/255 everywhere, so the box never drops a contribution); radius 0 = culled: depth
  outside (near_plane, far_plane), opacity < 1/255, or the box entirely outside the image.

Culled Gaussians get finite placeholder values (camera z replaced by 1) so that no NaN or inf reaches
autograd; consumers must ignore every Gaussian whose radii are 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0  # gsplat include/Common.h: a Gaussian-pixel alpha below this is skipped
RADIUS_EXTEND = 3.33  # gsplat: box half-size in standard deviations of the dilated 2D covariance


@dataclass(frozen=True)
class Projection:
    """Per-camera 2D Gaussians; entries whose radii are 0 are culled and hold placeholders."""

    means2d: Tensor  # [C, N, 2] pixel coordinates (x, y), differentiable
    conics: Tensor  # [C, N, 3] inverse dilated 2D covariance, upper triangle (xx, xy, yy), differentiable
    depths: Tensor  # [C, N] camera-space z, differentiable
    radii: Tensor  # [C, N, 2] int32 box half-size in pixels (x, y); 0 = culled


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """[..., 4] wxyz quaternions (any norm > 0) -> [..., 3, 3] rotation matrices."""
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rot = torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )
    return rot.reshape(quats.shape[:-1] + (3, 3))


def covariances(quats: Tensor, scales: Tensor) -> Tensor:
    """[N, 4] quats, [N, 3] linear scales -> [N, 3, 3] world covariances R S S^T R^T."""
    m = quat_to_rotmat(quats) * scales[..., None, :]
    return m @ m.transpose(-1, -2)


def project_gaussians(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    *,
    opacities: Tensor | None = None,  # [N]; enables the opacity-aware radius
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> Projection:
    """Project N Gaussians into C pinhole cameras (see the module docstring for the conventions)."""
    # cov2d = J Rv Sigma Rv^T J^T with Sigma = M M^T, M = R(q) S: computed as (J Rv M)(J Rv M)^T with
    # broadcast products, since batched 3x3 matmuls (bmm) are slow on the CPU for many tiny matrices.
    m = quat_to_rotmat(quats) * scales[..., None, :]  # [N, 3, 3]
    rot = viewmats[:, :3, :3]  # [C, 3, 3]
    trans = viewmats[:, :3, 3]  # [C, 3]
    means_c = torch.matmul(means, rot.transpose(-1, -2)) + trans[:, None, :]  # [C, N, 3]

    depths = means_c[..., 2]  # [C, N]
    in_depth = (depths > near_plane) & (depths < far_plane)
    tz = torch.where(in_depth, depths, torch.ones_like(depths))  # placeholder keeps culled entries finite
    tx, ty = means_c[..., 0], means_c[..., 1]

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    rz = 1.0 / tz
    txc = torch.clamp(tx * rz, min=-lim_x_neg, max=lim_x_pos)  # clamped x/z, y/z of the Jacobian
    tyc = torch.clamp(ty * rz, min=-lim_y_neg, max=lim_y_pos)

    # rows of J Rv: J = [[fx/z, 0, -fx x/z^2], [0, fy/z, -fy y/z^2]] (x, y clamped as above)
    row0 = (fx * rz)[..., None] * (rot[:, None, 0, :] - txc[..., None] * rot[:, None, 2, :])  # [C, N, 3]
    row1 = (fy * rz)[..., None] * (rot[:, None, 1, :] - tyc[..., None] * rot[:, None, 2, :])
    u0 = (row0[..., :, None] * m).sum(-2)  # [C, N, 3] = row0 @ M
    u1 = (row1[..., :, None] * m).sum(-2)
    means2d = torch.stack([fx * tx * rz + cx, fy * ty * rz + cy], dim=-1)  # [C, N, 2]

    a = (u0 * u0).sum(-1) + eps2d
    b = (u0 * u1).sum(-1)
    c = (u1 * u1).sum(-1) + eps2d
    det = a * c - b * b
    valid = in_depth & (det > 0)
    det = det.clamp(min=1e-10)
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)  # [C, N, 3]

    with torch.no_grad():
        extend = torch.full_like(det, RADIUS_EXTEND)
        if opacities is not None:
            op = opacities.detach().expand_as(det)
            valid = valid & (op >= ALPHA_THRESHOLD)
            extend = torch.minimum(extend, torch.sqrt(2.0 * torch.log(op.clamp(min=ALPHA_THRESHOLD) * 255.0)))
        radius = torch.stack(
            [torch.ceil(extend * a.clamp(min=0).sqrt()), torch.ceil(extend * c.clamp(min=0).sqrt())], dim=-1
        )
        mx, my = means2d[..., 0].detach(), means2d[..., 1].detach()
        inside = (
            (mx + radius[..., 0] > 0)
            & (mx - radius[..., 0] < width)
            & (my + radius[..., 1] > 0)
            & (my - radius[..., 1] < height)
        )
        keep = valid & inside & (radius[..., 0] > 0) & (radius[..., 1] > 0)
        radii = torch.where(keep[..., None], radius, torch.zeros_like(radius)).to(torch.int32)
    return Projection(means2d=means2d, conics=conics, depths=depths, radii=radii)
