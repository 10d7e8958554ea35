"""Cameras of the synthetic scene: an orbit round the table, pinhole intrinsics, and primary rays.

Image coordinates follow gsplat / instant-ngp: pixel (u, v) covers [u, u+1) × [v, v+1), so its centre
is at (u + 0.5, v + 0.5) and the principal point of a centred camera is (w / 2, h / 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ccl.synthetic.config import SyntheticConfig

LOOK_AT = np.array([0.0, 0.0, 0.08])  # the table centre, a little above the surface
WORLD_UP = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class OrbitCamera:
    name: str  # "frame_00000"
    K: np.ndarray  # [3, 3] float64
    camera_to_world_gl: np.ndarray  # [4, 4] float64, OpenGL (+x right, +y up, looks down -z)
    width: int
    height: int

    @property
    def position(self) -> np.ndarray:  # [3]
        return self.camera_to_world_gl[:3, 3]

    @property
    def world_to_camera_cv(self) -> np.ndarray:
        """[4, 4] float64, OpenCV convention (+x right, +y down, +z forward)."""
        c2w = self.camera_to_world_gl @ np.diag([1.0, -1.0, -1.0, 1.0])
        return np.linalg.inv(c2w)


def intrinsics(cfg: SyntheticConfig) -> np.ndarray:
    """[3, 3] pinhole K with square pixels from the horizontal field of view."""
    f = 0.5 * cfg.width / np.tan(0.5 * np.deg2rad(cfg.fov_deg))
    return np.array([[f, 0.0, cfg.width / 2.0], [0.0, f, cfg.height / 2.0], [0.0, 0.0, 1.0]])


def look_at_gl(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[4, 4] camera-to-world (OpenGL) of a camera at `position` looking at `target`, z up."""
    forward = target - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, WORLD_UP)
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, position
    return c2w


def orbit_cameras(cfg: SyntheticConfig, rng: np.random.Generator) -> list[OrbitCamera]:
    """`n_views` cameras evenly round a circle (random start angle), radius and height jittered."""
    K = intrinsics(cfg)
    start = rng.uniform(0.0, 2.0 * np.pi)
    jitter = rng.uniform(-1.0, 1.0, size=(cfg.n_views, 2)) * cfg.orbit_jitter
    cams = []
    for i in range(cfg.n_views):
        angle = start + 2.0 * np.pi * i / cfg.n_views
        r = cfg.orbit_radius * (1.0 + jitter[i, 0])
        h = cfg.orbit_height * (1.0 + jitter[i, 1])
        pos = np.array([r * np.cos(angle), r * np.sin(angle), h])
        cams.append(OrbitCamera(f"frame_{i:05d}", K, look_at_gl(pos, LOOK_AT), cfg.width, cfg.height))
    return cams


def pixel_rays(cam: OrbitCamera, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World rays through every pixel at sub-pixel `offsets` [S, 2] (in [0, 1), (x, y)).

    Returns origins [S·H·W, 3] and directions [S·H·W, 3], ordered (sample, row, column). Directions have
    unit component along the viewing axis, so a hit's ray parameter t is its camera-space depth z.
    """
    K = cam.K
    v, u = np.mgrid[0 : cam.height, 0 : cam.width].astype(np.float64)
    xs = (u[None] + offsets[:, 0, None, None] - K[0, 2]) / K[0, 0]
    ys = (v[None] + offsets[:, 1, None, None] - K[1, 2]) / K[1, 1]
    c2w = cam.camera_to_world_gl
    right, up, back = c2w[:3, 0], c2w[:3, 1], c2w[:3, 2]
    d = xs.reshape(-1, 1) * right - ys.reshape(-1, 1) * up - back
    o = np.broadcast_to(cam.position, d.shape)
    return np.ascontiguousarray(o), d


def sample_offsets(supersample: int) -> np.ndarray:
    """[S², 2] regular sub-pixel grid (x, y) in [0, 1)."""
    g = (np.arange(supersample) + 0.5) / supersample
    x, y = np.meshgrid(g, g)
    return np.stack([x.ravel(), y.ravel()], axis=1)
