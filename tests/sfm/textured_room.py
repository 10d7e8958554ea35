"""A small scene that structure from motion can solve in seconds: the inside of a box room (floor and four
walls) covered in non-repeating blob texture, ray-cast from cameras on an arc looking at its middle.

The synthetic tabletop scene needs 60 views of 640x480 and minutes of SIFT; this one registers from ten
views of 320x240, so the fast tests can run rules poses and triangulate_points for real. Writers give
it in the layouts users bring: a photo folder, a transforms.json without points, a COLMAP model
without points3D.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from scene.scene_testkit import look_at, nerf_frames

from ccl.scene import ops
from ccl.scene.colmap import ColmapCamera, ColmapImage, write_model

W, H = 320, 240
FOCAL = 260.0  # px: a 63 degree horizontal field of view
HALF = 2.0  # the room spans [-HALF, HALF]² and height 2 * HALF
TEXELS = 256  # texture samples per room side
# (origin, u axis, v axis) of each surface: world point = origin + s·u + t·v, s, t in [0, 2·HALF]
SURFACES = [
    ((-HALF, -HALF, 0.0), (1, 0, 0), (0, 1, 0)),  # floor
    ((-HALF, HALF, 0.0), (1, 0, 0), (0, 0, 1)),  # wall y = +HALF
    ((-HALF, -HALF, 0.0), (1, 0, 0), (0, 0, 1)),  # wall y = -HALF
    ((HALF, -HALF, 0.0), (0, 1, 0), (0, 0, 1)),  # wall x = +HALF
    ((-HALF, -HALF, 0.0), (0, 1, 0), (0, 0, 1)),  # wall x = -HALF
]


def textures(seed: int = 0) -> list[np.ndarray]:
    """One [TEXELS, TEXELS, 3] float32 texture a surface: noise at three scales, so SIFT finds blobs of
    many sizes and no two patches look alike."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in SURFACES:
        tex = np.zeros((TEXELS, TEXELS, 3), np.float32)
        for cells, weight in ((8, 0.5), (32, 0.3), (128, 0.2)):
            coarse = rng.uniform(0, 1, (cells, cells, 3)).astype(np.float32)
            tex += weight * cv2.resize(coarse, (TEXELS, TEXELS), interpolation=cv2.INTER_CUBIC)
        out.append(np.clip(tex, 0, 1))
    return out


def intrinsics() -> np.ndarray:
    return ops.intrinsics_matrix(FOCAL, FOCAL, W / 2, H / 2)


def arc_poses(n: int = 10, *, arc_deg: float = 90.0) -> list[np.ndarray]:
    """World-to-camera (OpenCV) of `n` cameras on an arc of radius 1.2 at height 1.0, looking at a point
    above the room's middle: neighbours arc_deg / (n - 1) apart."""
    angles = np.deg2rad(np.linspace(0.0, arc_deg, n)) + 0.4
    return [look_at((1.2 * np.cos(a), 1.2 * np.sin(a), 1.0), target=(0.0, 0.0, 0.6)) for a in angles]


def render(w2c: np.ndarray, texs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(image [H, W, 3] uint8, depth [H, W] float64 along the optical axis) of the room from `w2c`."""
    K = intrinsics()
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    rays_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    R, t = w2c[:3, :3], w2c[:3, 3]
    centre = -R.T @ t
    rays = rays_cam @ R  # world directions (R.T @ d per pixel), z-depth 1 along the optical axis
    depth = np.full((H, W), np.inf)
    image = np.zeros((H, W, 3), np.float32)
    for (origin, a, b), tex in zip(SURFACES, texs, strict=True):
        origin, a, b = (np.asarray(x, np.float64) for x in (origin, a, b))
        normal = np.cross(a, b)
        denom = rays @ normal
        with np.errstate(divide="ignore", invalid="ignore"):
            z = ((origin - centre) @ normal) / denom
        hit = centre + rays * z[..., None]
        s, q = (hit - origin) @ a, (hit - origin) @ b
        inside = (z > 1e-6) & (s >= 0) & (s <= 2 * HALF) & (q >= 0) & (q <= 2 * HALF) & (z < depth)
        scale = (TEXELS - 1) / (2 * HALF)
        sample = cv2.remap(
            tex, (s * scale).astype(np.float32), (q * scale).astype(np.float32), cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )  # fmt: skip
        image[inside] = sample[inside]
        depth[inside] = z[inside]
    return (image * 255 + 0.5).astype(np.uint8), depth


def write_photos(folder: Path, n: int = 10, *, ext: str = ".jpg") -> list[np.ndarray]:
    """The room's views as photos IMG_0000.jpg, … in `folder`; returns their world-to-camera poses."""
    folder.mkdir(parents=True, exist_ok=True)
    texs, poses = textures(), arc_poses(n)
    for i, w2c in enumerate(poses):
        image, _ = render(w2c, texs)
        assert cv2.imwrite(str(folder / f"IMG_{i:04d}{ext}"), image[:, :, ::-1])
    return poses


def write_nerf_without_points(root: Path, n: int = 10) -> list[np.ndarray]:
    """transforms.json (true poses, no ply_file_path) + images/; returns the poses."""
    poses = write_photos(root / "images", n, ext=".png")
    names = [f"images/IMG_{i:04d}.png" for i in range(n)]
    K = intrinsics()
    meta = {"fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2], "cy": K[1, 2], "w": W, "h": H,
            "frames": nerf_frames(poses, names)}  # fmt: skip
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    return poses


def write_colmap_without_points(root: Path, n: int = 10) -> list[np.ndarray]:
    """images/ + sparse/0 (binary: cameras, images, an empty points3D); returns the poses."""
    poses = write_photos(root / "images", n, ext=".jpg")
    K = intrinsics()
    cams = [ColmapCamera(1, "PINHOLE", W, H, np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]))]
    images = [
        ColmapImage(i + 1, ops.rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3], 1, f"IMG_{i:04d}.jpg")
        for i, w2c in enumerate(poses)
    ]
    write_model(
        root / "sparse" / "0", cams, images, np.zeros((0, 3)), np.zeros((0, 3), np.uint8), format="bin"
    )
    return poses


def distance_to_room(xyz: np.ndarray) -> np.ndarray:
    """[N] distance of each point from the nearest of the room's surfaces."""
    xyz = np.asarray(xyz, np.float64)
    return np.min(np.abs(np.stack([xyz[:, 2], xyz[:, 1] - HALF, xyz[:, 1] + HALF, xyz[:, 0] - HALF,
                                   xyz[:, 0] + HALF], 1)), axis=1)  # fmt: skip
