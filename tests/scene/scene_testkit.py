"""Builders of tiny scene folders for the ccl.scene tests: ground-truth cameras written as COLMAP models
(text, binary) and NeRF transforms.json, with small generated images."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ccl.scene import ops
from ccl.scene.colmap import ColmapCamera, ColmapImage, write_model
from ccl.scene.ply import write_ply_points

W, H = 64, 48
K_GT = ops.intrinsics_matrix(70.0, 72.0, 31.0, 25.0)
# A point in front of every camera; its projection is the round-trip check.
POINT = np.array([0.1, -0.2, 0.15])


def look_at(center, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World-to-camera [4, 4], OpenCV axes, camera at `center` looking at `target` with world +z up."""
    c = np.asarray(center, np.float64)
    z = np.asarray(target, np.float64) - c
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return ops.pose_matrix(R, -R @ c)


def gt_poses(n: int = 4) -> list[np.ndarray]:
    angles = np.linspace(0.0, 2 * np.pi, n, endpoint=False) + 0.3
    return [look_at((2.5 * np.cos(a), 2.5 * np.sin(a), 1.0 + 0.1 * i)) for i, a in enumerate(angles)]


def project(K: np.ndarray, w2c: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    cam = w2c[:3, :3] @ xyz + w2c[:3, 3]
    uv = K @ cam
    return uv[:2] / uv[2]


def write_image(path: Path, w: int = W, h: int = H, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A smooth random RGB(A) image; returns it as RGB(A)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(4, 4, channels), dtype=np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    if img.ndim == 2:
        img = img[:, :, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = img[:, :, [2, 1, 0, 3][:channels]] if channels >= 3 else img
    assert cv2.imwrite(str(path), bgr)
    return img


def points(n: int = 20, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, 0.5, (n, 3)).astype(np.float32), rng.integers(0, 256, (n, 3), dtype=np.uint8)


def make_colmap_scene(
    root: Path,
    *,
    fmt: str = "txt",
    model: str = "PINHOLE",
    params: list[float] | None = None,
    n: int = 4,
    image_wh: tuple[int, int] = (W, H),
    ext: str = ".jpg",
) -> Path:
    """images/frame_0000{i}.jpg + sparse/0 (LERF-OVS layout), one shared camera."""
    if params is None:
        params = [K_GT[0, 0], K_GT[1, 1], K_GT[0, 2], K_GT[1, 2]]
    cams = [ColmapCamera(1, model, W, H, np.array(params, np.float64))]
    imgs = []
    for i, w2c in enumerate(gt_poses(n)):
        name = f"frame_{i + 1:05d}{ext}"
        write_image(root / "images" / name, *image_wh, seed=i)
        imgs.append(ColmapImage(i + 1, ops.rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3], 1, name))
    write_model(root / "sparse" / "0", cams, imgs[::-1], *points(), format=fmt)  # order: not by name
    return root


def nerf_frames(poses, names) -> list[dict]:
    return [
        {"file_path": name, "transform_matrix": ops.opencv_w2c_to_opengl_c2w(w2c).tolist()}
        for name, w2c in zip(names, poses, strict=True)
    ]


def make_nerf_scene(
    root: Path, *, n: int = 4, ply: str | None = "points3d.ply", binary_ply: bool = False, **extra
) -> Path:
    """transforms.json (shared fl_x, fl_y, cx, cy, w, h; OpenGL poses) + images/*.png + points3d.ply."""
    root.mkdir(parents=True, exist_ok=True)
    names = [f"images/frame_{i:05d}.png" for i in range(n)]
    for i, name in enumerate(names):
        write_image(root / name, seed=i)
    meta = {
        "fl_x": K_GT[0, 0], "fl_y": K_GT[1, 1], "cx": K_GT[0, 2], "cy": K_GT[1, 2], "w": W, "h": H,
        "aabb_scale": 4,
        "frames": nerf_frames(gt_poses(n), names),
    }  # fmt: skip
    if ply:
        write_ply_points(root / ply, *points(), binary=binary_ply)
        meta["ply_file_path"] = ply
    meta.update(extra)
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    return root
