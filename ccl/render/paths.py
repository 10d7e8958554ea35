"""Camera paths for videos: made from a scene's training cameras, or read from nerfstudio's camera-path
JSON (what its viewer's "Render" panel saves and `ns-render camera-path` reads).

    orbit        a circle around the training cameras' look-at centre (the point nearest all their optical
                 axes), at their mean distance and height, about their mean up direction
    spiral       the orbit with its height rising and falling once over the path
    interpolate  through the training views in their order: positions linear, rotations slerped

Generated paths take the first training camera's intrinsics and size. Every camera is a
`ccl.scene.Camera` (OpenCV axes: +x right, +y down, +z forward).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PATH_KINDS = ("orbit", "spiral", "interpolate")
NERFSTUDIO_FIELDS = ("camera_type", "render_height", "render_width", "camera_path")  # top-level, required
NERFSTUDIO_CAMERA_FIELDS = ("camera_to_world", "fov")  # each entry of camera_path
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])  # camera axes: nerfstudio (OpenGL) -> ccl (OpenCV)


def _camera(name: str, c2w: np.ndarray, K: np.ndarray, width: int, height: int) -> Any:
    from ccl.scene import Camera

    return Camera(
        name=name, image_path=Path(""), width=int(width), height=int(height), K=K,
        world_to_camera=np.linalg.inv(c2w),
    )  # fmt: skip


def look_at_centre(cameras: Sequence[Any]) -> np.ndarray:
    """[3] the point nearest every camera's optical axis (least squares)."""
    a, b = np.zeros((3, 3)), np.zeros(3)
    for c in cameras:
        d = c.camera_to_world[:3, 2]
        p = np.eye(3) - np.outer(d, d)
        a += p
        b += p @ c.center
    return np.linalg.lstsq(a, b, rcond=None)[0]


def mean_up(cameras: Sequence[Any]) -> np.ndarray:
    """[3] unit: the cameras' mean up direction (OpenCV: up is −y)."""
    up = -np.mean([c.camera_to_world[:3, 1] for c in cameras], axis=0)
    return up / np.linalg.norm(up)


def look_at(position: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """[4, 4] camera-to-world (OpenCV axes) of a camera at `position` looking at `target`."""
    z = target - position
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    x = x / np.linalg.norm(x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, np.cross(z, x), z, position
    return c2w


def orbit_path(cameras: Sequence[Any], n_frames: int, *, spiral: bool = False) -> list[Any]:
    """`n_frames` cameras on a circle (or, `spiral`, a circle whose height rises and falls once) around
    the training cameras' look-at centre, starting beside the first training camera."""
    centre, up = look_at_centre(cameras), mean_up(cameras)
    rel = np.stack([c.center for c in cameras]) - centre
    heights = rel @ up
    flat = rel - np.outer(heights, up)
    radius = float(np.mean(np.linalg.norm(flat, axis=1)))
    e1 = flat[0] / np.linalg.norm(flat[0])
    e2 = np.cross(up, e1)
    amplitude = max(float(np.ptp(heights)) / 2, 0.1 * radius) if spiral else 0.0
    first = cameras[0]
    out = []
    for k in range(n_frames):
        t = 2 * math.pi * k / n_frames
        h = float(np.mean(heights)) + amplitude * math.sin(t)
        pos = centre + h * up + radius * (math.cos(t) * e1 + math.sin(t) * e2)
        out.append(_camera(f"path_{k:05d}", look_at(pos, centre, up), first.K, first.width, first.height))
    return out


def _quat(r: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] -> unit quaternion wxyz."""
    w = math.sqrt(max(0.0, 1 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
    q = np.array([w, x, y, z])
    return q / np.linalg.norm(q)


def _rot(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    if np.dot(a, b) < 0:
        b = -b
    d = float(np.clip(np.dot(a, b), -1.0, 1.0))
    if d > 0.9995:
        q = a + t * (b - a)
    else:
        th = math.acos(d)
        q = (math.sin((1 - t) * th) * a + math.sin(t * th) * b) / math.sin(th)
    return q / np.linalg.norm(q)


def interpolate_path(cameras: Sequence[Any], n_frames: int) -> list[Any]:
    """`n_frames` cameras through the training views in order (the first frame is the first view, the
    last the last view): positions linear, rotations slerped, between consecutive views."""
    if len(cameras) < 2:
        raise ValueError("--path interpolate: the scene has one training view; use --path orbit")
    first = cameras[0]
    poses = [c.camera_to_world for c in cameras]
    quats = [_quat(p[:3, :3]) for p in poses]
    out = []
    for k in range(n_frames):
        u = k * (len(cameras) - 1) / max(n_frames - 1, 1)
        i = min(int(u), len(cameras) - 2)
        t = u - i
        c2w = np.eye(4)
        c2w[:3, :3] = _rot(_slerp(quats[i], quats[i + 1], t))
        c2w[:3, 3] = (1 - t) * poses[i][:3, 3] + t * poses[i + 1][:3, 3]
        out.append(_camera(f"path_{k:05d}", c2w, first.K, first.width, first.height))
    return out


def read_nerfstudio_path(path: str | os.PathLike) -> tuple[list[Any], float | None]:
    """(cameras, fps or None) of a nerfstudio camera-path JSON, read as its viewer writes it:
    `render_width`, `render_height`, `camera_type` ("perspective"), `camera_path`: [{`camera_to_world`:
    16 numbers, a row-major 4x4 with OpenGL camera axes, `fov`: vertical, degrees}], `fps` (optional).
    Poses are taken in the scene's world coordinates. Anything else is refused, naming the field."""
    path = Path(path)
    where = f"--path {path}"
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not JSON ({e}); expected nerfstudio's camera-path JSON") from e
    if not isinstance(data, dict):
        raise ValueError(
            f"{where}: a JSON {type(data).__name__}; expected nerfstudio's camera-path JSON object"
        )
    missing = [k for k in NERFSTUDIO_FIELDS if k not in data]
    if missing:
        raise ValueError(
            f"{where}: not a nerfstudio camera path: no field {', '.join(map(repr, missing))} (it has "
            f"{sorted(data)}); save the path from nerfstudio's viewer (Render > Generate command), or use "
            f"--path {'|'.join(PATH_KINDS)}"
        )
    if str(data["camera_type"]).lower() != "perspective":
        raise ValueError(f"{where}: camera_type {data['camera_type']!r}; only 'perspective' is rendered")
    w, h = int(data["render_width"]), int(data["render_height"])
    entries = data["camera_path"]
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{where}: camera_path holds no camera")
    cams = []
    for k, e in enumerate(entries):
        gone = [f for f in NERFSTUDIO_CAMERA_FIELDS if f not in e]
        if gone:
            raise ValueError(f"{where}: camera_path[{k}] has no field {', '.join(map(repr, gone))}")
        m = np.asarray(e["camera_to_world"], dtype=np.float64)
        if m.size != 16 or not np.isfinite(m).all():
            raise ValueError(f"{where}: camera_path[{k}].camera_to_world: expected 16 finite numbers (a 4x4)")
        f = 0.5 * h / math.tan(math.radians(float(e["fov"])) / 2)
        K = np.array([[f, 0.0, w / 2], [0.0, f, h / 2], [0.0, 0.0, 1.0]])
        cams.append(_camera(f"path_{k:05d}", m.reshape(4, 4) @ OPENGL_TO_OPENCV, K, w, h))
    fps = data.get("fps")
    return cams, (float(fps) if fps else None)


def camera_path(spec: str, cameras: Sequence[Any], *, n_frames: int) -> tuple[list[Any], float | None]:
    """(cameras, fps the path asks for or None) of `--path`: a kind (PATH_KINDS) or a JSON file."""
    if spec in PATH_KINDS:
        if n_frames < 1:
            raise ValueError(f"--frames {n_frames}: a path needs at least one frame")
        if spec == "interpolate":
            return interpolate_path(cameras, n_frames), None
        return orbit_path(cameras, n_frames, spiral=spec == "spiral"), None
    if not Path(spec).is_file():
        raise FileNotFoundError(
            f"--path {spec}: neither {', '.join(PATH_KINDS)} nor a file; give one of those or a nerfstudio "
            "camera-path JSON"
        )
    return read_nerfstudio_path(spec)


def outside_bounds(
    path: Sequence[Any], cameras: Sequence[Any], points: np.ndarray, *, pad: float = 0.1
) -> list[int]:
    """Indices of the path's cameras outside the scene's bounds: the box holding the training cameras and
    the field's Gaussian centres `points` [G, 3], padded by `pad` of its size on every side."""
    pts = np.concatenate(
        [np.stack([c.center for c in cameras]), np.asarray(points, np.float64).reshape(-1, 3)]
    )
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    margin = pad * (hi - lo)
    return [k for k, c in enumerate(path) if np.any(c.center < lo - margin) or np.any(c.center > hi + margin)]
