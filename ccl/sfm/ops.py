"""Small pure helpers of structure from motion: which matcher, which photos share a camera, whether a
scene has points, and the similarity alignment that compares recovered camera centres with true ones."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ccl.scene.colmap import detect_format


def choose_matcher(n_images: int, *, matcher: str, exhaustive_max_images: int, vocab_tree_path: str) -> str:
    """The matcher to run: `matcher` unless "auto", which is exhaustive up to `exhaustive_max_images`
    (every pair: the most robust, n² pairs), beyond it a vocabulary tree when one is given, else
    sequential (a walk or a video in file-name order)."""
    if matcher != "auto":
        return matcher
    if n_images <= exhaustive_max_images:
        return "exhaustive"
    return "vocab_tree" if vocab_tree_path else "sequential"


def camera_groups(
    names: Sequence[str], sizes: Sequence[tuple[int, int]], *, camera_mode: str
) -> list[list[int]]:
    """Indices of the photos that share one camera, in first-seen order.

    per_size: one camera per image size; per_folder: per (sub-folder, size); single: one for all (the
    caller has refused mixed sizes); per_image: one each.
    """
    if camera_mode == "per_image":
        return [[i] for i in range(len(names))]
    groups: dict[object, list[int]] = {}
    for i, (name, size) in enumerate(zip(names, sizes, strict=True)):
        key = {"single": 0, "per_size": size, "per_folder": (str(Path(name).parent), size)}[camera_mode]
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def colmap_model_has_points(model_dir: str | os.PathLike) -> bool:
    """Whether a COLMAP model folder holds at least one 3D point (a header read, no points parsed)."""
    model_dir = Path(model_dir)
    fmt = detect_format(model_dir)
    if fmt == "bin":
        path = model_dir / "points3D.bin"
        if not path.is_file() or path.stat().st_size < 8:
            return False
        with path.open("rb") as f:
            return struct.unpack("<Q", f.read(8))[0] > 0
    if fmt == "txt":
        path = model_dir / "points3D.txt"
        if not path.is_file():
            return False
        with path.open(encoding="utf-8") as f:
            return any(line.strip() and not line.lstrip().startswith("#") for line in f)
    return False


def nerf_has_points(json_path: str | os.PathLike) -> bool:
    """Whether a transforms.json names a point cloud (`ply_file_path`)."""
    try:
        meta = json.loads(Path(json_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # unreadable: the scene loader reports it; nothing to triangulate for
    return isinstance(meta, dict) and bool(meta.get("ply_file_path"))


def scene_lacks_points(entry: dict, *, colmap_model: str = "sparse/0") -> bool:
    """Whether a `colmap` or `nerf` scene entry has poses but no points (its folder read, cheaply)."""
    if entry["source"] not in ("colmap", "nerf") or not entry.get("path"):
        return False
    path = Path(entry["path"]).expanduser()
    if entry["source"] == "colmap":
        model = path / colmap_model
        return detect_format(model) is not None and not colmap_model_has_points(model)
    if entry["source"] == "nerf":
        json_path = path if path.is_file() else path / "transforms.json"
        return json_path.is_file() and not nerf_has_points(json_path)
    return False


def scene_pose_files(entry: dict, *, colmap_model: str = "sparse/0") -> list[Path]:
    """The files holding a colmap / nerf scene's poses: its transforms.json, or its model's cameras and
    images (those present; the scene loader names what is missing)."""
    path = Path(entry["path"]).expanduser()
    if entry["source"] == "nerf":
        return [path if path.is_file() else path / "transforms.json"]
    model = path / colmap_model
    fmt = detect_format(model) or "bin"
    return [p for p in (model / f"cameras.{fmt}", model / f"images.{fmt}") if p.is_file()]


def similarity_align(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R, t) minimising Σ‖s·R·source_i + t − target_i‖² (Umeyama 1991): [N, 3] each, N ≥ 3."""
    src = np.asarray(source, np.float64)
    dst = np.asarray(target, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0
    R = u @ sign @ vt
    var_s = (xs**2).sum() / len(src)
    s = float(np.trace(np.diag(d) @ sign) / var_s) if var_s > 0 else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


def centre_errors(recovered: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per camera, the distance of its recovered centre (similarity-aligned onto the true ones) from its
    true centre, in the true scene's units: [N]."""
    s, R, t = similarity_align(recovered, true)
    aligned = s * np.asarray(recovered, np.float64) @ R.T + t
    return np.linalg.norm(aligned - np.asarray(true, np.float64), axis=1)
