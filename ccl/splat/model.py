"""The Gaussian parameters: a typed container, its initialisation, view-dependent colour, checks.

Parameters are stored unconstrained, as 3DGS optimises them: log scales, opacity logits, unnormalised
quaternions (w, x, y, z) and spherical-harmonics colour coefficients (colour = max(SH(dir) + 0.5, 0)).
During training they live in a `torch.nn.ParameterDict` under gsplat's strategy names (`means`, `quats`,
`scales`, `opacities`, `sh0`, `shN`, and `features` for a language field), so that gsplat's densification
strategies can clone, split and prune them with their optimiser states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)

# file tensor name → strategy (ParameterDict) name; file names carry their units.
FILE_TO_PARAM = {
    "means": "means",
    "quats": "quats",
    "log_scales": "scales",
    "opacity_logits": "opacities",
    "sh0": "sh0",
    "shN": "shN",
}
PARAM_TO_FILE = {v: k for k, v in FILE_TO_PARAM.items()}


@dataclass
class Gaussians:
    """A set of G 3D Gaussians with SH colours (torch tensors, unconstrained parametrisation)."""

    means: Any  # [G, 3] float32, world coordinates
    quats: Any  # [G, 4] float32, (w, x, y, z), not necessarily normalised
    log_scales: Any  # [G, 3] float32, log of the standard deviations along the rotated axes
    opacity_logits: Any  # [G] float32, opacity = sigmoid
    sh0: Any  # [G, 1, 3] float32, degree-0 SH coefficient per colour channel
    shN: Any  # [G, K - 1, 3] float32, K = (sh_degree + 1)², higher coefficients (K - 1 = 0 for degree 0)

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return int(round(math.sqrt(self.shN.shape[1] + 1))) - 1

    def tensors(self) -> dict[str, Any]:
        """File tensor name → tensor."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to(self, device: Any) -> Gaussians:
        return Gaussians(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def detach(self) -> Gaussians:
        return Gaussians(**{f.name: getattr(self, f.name).detach().clone() for f in fields(self)})

    @classmethod
    def from_tensors(cls, tensors: dict[str, Any]) -> Gaussians:
        return cls(**{f.name: tensors[f.name] for f in fields(cls)})

    def param_dict(self, *, requires_grad: bool = True) -> Any:
        """A `torch.nn.ParameterDict` under gsplat's strategy names (copies of the tensors)."""
        import torch

        return torch.nn.ParameterDict(
            {
                FILE_TO_PARAM[k]: torch.nn.Parameter(v.detach().clone(), requires_grad=requires_grad)
                for k, v in self.tensors().items()
            }
        )

    @classmethod
    def from_param_dict(cls, params: Any) -> Gaussians:
        return cls.from_tensors(
            {PARAM_TO_FILE[k]: v.detach() for k, v in params.items() if k in PARAM_TO_FILE}
        )


def activated(params: Any) -> tuple[Any, Any, Any, Any]:
    """(means, unit quats wxyz, scales, opacities) for the rasterizer, from a ParameterDict or mapping."""
    import torch.nn.functional as F

    return (
        params["means"],
        F.normalize(params["quats"], dim=-1),
        params["scales"].exp(),
        params["opacities"].sigmoid(),
    )


def sh_to_rgb(sh0: Any, shN: Any, means: Any, camera_center: Any) -> Any:
    """View-dependent colour [G, 3] of every Gaussian seen from `camera_center` [3] (3DGS convention)."""
    import torch

    degree = int(round(math.sqrt(shN.shape[1] + 1))) - 1
    rgb = SH_C0 * sh0[:, 0]
    if degree > 0:
        d = torch.nn.functional.normalize(means.detach() - camera_center, dim=-1)
        x, y, z = d[:, 0:1], d[:, 1:2], d[:, 2:3]
        sh = shN
        rgb = rgb - SH_C1 * y * sh[:, 0] + SH_C1 * z * sh[:, 1] - SH_C1 * x * sh[:, 2]
        if degree > 1:
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            rgb = (
                rgb
                + SH_C2[0] * xy * sh[:, 3]
                + SH_C2[1] * yz * sh[:, 4]
                + SH_C2[2] * (2 * zz - xx - yy) * sh[:, 5]
                + SH_C2[3] * xz * sh[:, 6]
                + SH_C2[4] * (xx - yy) * sh[:, 7]
            )
            if degree > 2:
                rgb = (
                    rgb
                    + SH_C3[0] * y * (3 * xx - yy) * sh[:, 8]
                    + SH_C3[1] * xy * z * sh[:, 9]
                    + SH_C3[2] * y * (4 * zz - xx - yy) * sh[:, 10]
                    + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[:, 11]
                    + SH_C3[4] * x * (4 * zz - xx - yy) * sh[:, 12]
                    + SH_C3[5] * z * (xx - yy) * sh[:, 13]
                    + SH_C3[6] * x * (xx - 3 * yy) * sh[:, 14]
                )
    return (rgb + 0.5).clamp_min(0.0)


def rgb_to_sh0(rgb: np.ndarray) -> np.ndarray:
    """Colours in [0, 1] [G, 3] → degree-0 SH coefficients [G, 1, 3]."""
    return ((np.asarray(rgb, dtype=np.float32) - 0.5) / SH_C0)[:, None, :]


def knn_mean_distance(xyz: np.ndarray, k: int = 3, *, chunk_bytes: int = 1 << 28) -> np.ndarray:
    """Root mean squared distance of every point to its k nearest neighbours [P] (3DGS's scale init).

    Exact, by chunks of a dense distance matrix (memory bounded by `chunk_bytes`).
    """
    import torch

    pts = torch.from_numpy(np.array(xyz, dtype=np.float32))  # a writable copy
    n = len(pts)
    if n <= 1:
        return np.ones(n, dtype=np.float32)
    k = min(k, n - 1)
    rows = max(1, chunk_bytes // (4 * n))
    out = torch.empty(n)
    for s in range(0, n, rows):
        d2 = torch.cdist(pts[s : s + rows], pts).square()
        d2[torch.arange(d2.shape[0]), torch.arange(s, s + d2.shape[0])] = float("inf")  # not itself
        out[s : s + rows] = d2.topk(k, dim=1, largest=False).values.mean(dim=1).sqrt()
    return out.numpy()


def init_gaussians(
    points_xyz: np.ndarray,
    points_rgb: np.ndarray,
    *,
    sh_degree: int,
    init_opacity: float,
    init_scale: float,
) -> Gaussians:
    """Gaussians at the points: isotropic, scale = init_scale × RMS distance to the 3 nearest points.

    `points_rgb` uint8 [P, 3]. Identity rotations, uniform opacity, view-independent initial colour.
    """
    import torch

    xyz = np.asarray(points_xyz, dtype=np.float32)
    dist = knn_mean_distance(xyz)
    # coincident points would give log(0): floor at a thousandth of the median spacing
    floor = max(float(np.median(dist)) * 1e-3, 1e-7) if len(dist) else 1e-7
    log_scales = np.log(np.maximum(dist, floor) * init_scale)[:, None].repeat(3, axis=1)
    g = len(xyz)
    quats = np.zeros((g, 4), dtype=np.float32)
    quats[:, 0] = 1.0
    k = (sh_degree + 1) ** 2
    return Gaussians(
        means=torch.from_numpy(xyz.copy()),
        quats=torch.from_numpy(quats),
        log_scales=torch.from_numpy(log_scales.astype(np.float32)),
        opacity_logits=torch.full((g,), math.log(init_opacity / (1 - init_opacity)), dtype=torch.float32),
        sh0=torch.from_numpy(rgb_to_sh0(np.asarray(points_rgb, dtype=np.float32) / 255.0)),
        shN=torch.zeros(g, k - 1, 3, dtype=torch.float32),
    )


# Random initialisation (a scene without points): where the cameras look, never at the cameras.
VIEW_HALF_ANGLE_DEG = 25.0  # a point is "in view" inside this cone about the optical axis (phones: ±30-35°)
NEAR_FRACTION = 0.25  # no point closer to any camera than this × the median camera-to-subject distance
FAR_FACTOR = 1.5  # nor farther along a camera's axis than this × its distance to the subject
MIN_VIEWS = 2  # a point must be in view of this many cameras (all of them when fewer)


def random_points_in_view(
    centers: np.ndarray, forwards: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """n random points in the region the cameras look at, none near a camera; random colours.

    `centers`, `forwards` [C, 3]: camera centres and viewing directions (world). The subject is the
    point nearest every optical axis (least squares): the centre of an orbit. When the axes are near
    parallel (a forward-facing capture) it is undefined, and each camera's subject distance is twice
    the cameras' spread. A point is kept when it lies, for at least `MIN_VIEWS` cameras, inside the
    `VIEW_HALF_ANGLE_DEG` cone about the axis at a depth up to `FAR_FACTOR` × that camera's subject
    distance, and is farther than `NEAR_FRACTION` × the median subject distance from every camera. Points
    started at the cameras (a box drawn from the camera centres) sit in front of every held-out view as
    haze that training views, which see them edge-on or not at all, never remove.
    """
    centers = np.asarray(centers, dtype=np.float64)
    forwards = np.asarray(forwards, dtype=np.float64)
    forwards = forwards / np.maximum(np.linalg.norm(forwards, axis=1, keepdims=True), 1e-12)
    spread = max(float(np.linalg.norm(centers - centers.mean(0), axis=1).max()), 1e-3)
    depth = _subject_depths(centers, forwards, spread)  # [C]
    near = NEAR_FRACTION * float(np.median(depth))
    need = min(MIN_VIEWS, len(centers))
    cos_cone = np.cos(np.deg2rad(VIEW_HALF_ANGLE_DEG))
    kept: list[np.ndarray] = []
    n_kept = 0
    for _ in range(200):  # acceptance is high (> 20 % on orbits and forward captures): a few rounds
        m = max(4 * (n - n_kept), 256)
        cam = rng.integers(0, len(centers), size=m)
        dirs = _directions_in_cone(forwards[cam], cos_cone, rng)
        dist = rng.uniform(near, FAR_FACTOR * depth[cam])
        pts = centers[cam] + dirs * dist[:, None]
        rel = pts[:, None, :] - centers[None, :, :]  # [m, C, 3]
        r = np.linalg.norm(rel, axis=2)
        along = np.einsum("mcd,cd->mc", rel, forwards)
        in_view = (along >= cos_cone * r) & (along <= FAR_FACTOR * depth[None, :])
        ok = (in_view.sum(1) >= need) & (r.min(1) > near)
        kept.append(pts[ok])
        n_kept += int(ok.sum())
        if n_kept >= n:
            break
    xyz = np.concatenate(kept)[:n]
    if len(xyz) < n:  # cameras that share no view: fill from single cameras' cones (each beyond `near`)
        cam = rng.integers(0, len(centers), size=n - len(xyz))
        dirs = _directions_in_cone(forwards[cam], cos_cone, rng)
        dist = rng.uniform(near, FAR_FACTOR * depth[cam] + near)
        xyz = np.concatenate([xyz, centers[cam] + dirs * dist[:, None]])
    rgb = rng.integers(0, 256, size=(n, 3), dtype=np.uint8)
    return xyz.astype(np.float32), rgb


def _subject_depths(centers: np.ndarray, forwards: np.ndarray, spread: float) -> np.ndarray:
    """Per camera, the distance along its axis to what the cameras look at (see random_points_in_view)."""
    projectors = np.eye(3)[None] - forwards[:, :, None] * forwards[:, None, :]  # [C, 3, 3]: off-axis part
    A, b = projectors.sum(0), np.einsum("cij,cj->i", projectors, centers)
    eigs = np.linalg.eigvalsh(A)
    if eigs[0] > 0.05 * len(centers):  # axes in at least two directions: a well-posed nearest point
        focus = np.linalg.solve(A, b)
        depth = np.einsum("cd,cd->c", focus - centers, forwards)
        if np.median(depth) > 0:  # in front of the cameras (not the axes' crossing behind them)
            return np.maximum(depth, 0.25 * float(np.median(depth)))
    return np.full(len(centers), 2.0 * spread)


def _directions_in_cone(axes: np.ndarray, cos_max: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors uniform (in solid angle) within the cone of half-angle acos(cos_max) about each axis."""
    m = len(axes)
    cos_t = rng.uniform(cos_max, 1.0, size=m)
    sin_t = np.sqrt(1.0 - cos_t**2)
    phi = rng.uniform(0, 2 * np.pi, size=m)
    helper = np.where(np.abs(axes[:, [0]]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    u = np.cross(axes, helper)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(axes, u)
    return axes * cos_t[:, None] + (u * np.cos(phi)[:, None] + v * np.sin(phi)[:, None]) * sin_t[:, None]


def scene_scale(centers: np.ndarray) -> float:
    """3DGS's scene extent: 1.1 × the largest distance of a camera centre from their mean."""
    centers = np.asarray(centers, dtype=np.float64)
    return 1.1 * max(float(np.linalg.norm(centers - centers.mean(0), axis=1).max()), 1e-3)


def check_finite_gaussians(g: Gaussians, *, where: str) -> None:
    """Refuse non-finite parameters and zero scales, naming the tensor, how many and the first index."""
    import torch

    zero = (g.log_scales.exp() <= 0).any(dim=1)  # log scale −inf (or below float range): scale 0
    if zero.any():
        first = int(zero.nonzero()[0, 0])
        raise ValueError(
            f"{where}: {int(zero.sum())} of {len(g)} Gaussians have a zero scale (first: Gaussian {first}, "
            f"log_scales {g.log_scales[first].tolist()}); scales must be positive: retrain the field"
        )
    for name, t in g.tensors().items():
        bad = ~torch.isfinite(t)
        if bad.any():
            rows = bad.reshape(len(t), -1).any(dim=1)
            first = int(rows.nonzero()[0, 0])
            kind = "NaN" if torch.isnan(t).any() else "infinite"
            raise ValueError(
                f"{where}: tensor {name!r} holds {kind} values in {int(rows.sum())} of {len(t)} Gaussians "
                f"(first: Gaussian {first}); the field is corrupt: retrain it (`snakemake <this file> --force` replaces it)"
            )
    zero_q = g.quats.norm(dim=-1) == 0
    if zero_q.any():
        raise ValueError(
            f"{where}: Gaussian {int(zero_q.nonzero()[0, 0])} has an all-zero quaternion (no rotation); "
            "retrain the field"
        )
