"""Small pure functions of camera geometry: conventions, intrinsics, distortion, image-size relations."""

from __future__ import annotations

import math
import re

import numpy as np

# OpenGL / NeRF camera axes (+x right, +y up, looking down -z) → OpenCV (+x right, +y down, +z forward).
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])

# COLMAP camera models: id → (name, number of parameters). Every model COLMAP defines, so that a binary
# cameras.bin can be read past any of them and a refusal names the model.
COLMAP_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
    12: ("SIMPLE_DIVISION", 4),
    13: ("DIVISION", 5),
    14: ("SIMPLE_FISHEYE", 3),
    15: ("FISHEYE", 4),
    16: ("EUCM", 6),
    17: ("EQUIRECTANGULAR", 2),
}
COLMAP_MODEL_IDS = {name: i for i, (name, _) in COLMAP_MODELS.items()}
SUPPORTED_COLMAP_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


def natural_key(name: str) -> tuple:
    """Sort key under which numbers in names compare as numbers: r_2 before r_10."""
    return tuple((0, int(t), t) if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name))


def qvec_to_rotmat(qvec: np.ndarray) -> np.ndarray:
    """COLMAP quaternion (w, x, y, z) → [3, 3] rotation matrix (normalised first)."""
    w, x, y, z = np.asarray(qvec, dtype=np.float64) / np.linalg.norm(qvec)
    return np.array(
        [
            [1 - 2 * y * y - 2 * z * z, 2 * x * y - 2 * w * z, 2 * z * x + 2 * w * y],
            [2 * x * y + 2 * w * z, 1 - 2 * x * x - 2 * z * z, 2 * y * z - 2 * w * x],
            [2 * z * x - 2 * w * y, 2 * y * z + 2 * w * x, 1 - 2 * x * x - 2 * y * y],
        ]
    )


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """[3, 3] rotation → quaternion (w, x, y, z) with w >= 0 (inverse of `qvec_to_rotmat`)."""
    R = np.asarray(R, dtype=np.float64)
    K = (
        np.array(
            [
                [R[0, 0] - R[1, 1] - R[2, 2], 0, 0, 0],
                [R[1, 0] + R[0, 1], R[1, 1] - R[0, 0] - R[2, 2], 0, 0],
                [R[2, 0] + R[0, 2], R[2, 1] + R[1, 2], R[2, 2] - R[0, 0] - R[1, 1], 0],
                [R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1], R[0, 0] + R[1, 1] + R[2, 2]],
            ]
        )
        / 3.0
    )
    vals, vecs = np.linalg.eigh(K)
    q = vecs[[3, 0, 1, 2], np.argmax(vals)]
    return -q if q[0] < 0 else q


def pose_matrix(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """[3, 3] rotation and [3] translation → [4, 4] rigid transform."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def opengl_c2w_to_opencv_w2c(c2w_gl: np.ndarray) -> np.ndarray:
    """NeRF transform_matrix (camera-to-world, OpenGL axes) → world-to-camera [4, 4], OpenCV axes."""
    c2w = np.asarray(c2w_gl, dtype=np.float64)
    if c2w.shape == (3, 4):
        c2w = np.vstack([c2w, [0.0, 0.0, 0.0, 1.0]])
    return np.linalg.inv(c2w @ GL_TO_CV)


def opencv_w2c_to_opengl_c2w(w2c: np.ndarray) -> np.ndarray:
    """Inverse of `opengl_c2w_to_opencv_w2c` (for writers and tests)."""
    return np.linalg.inv(np.asarray(w2c, dtype=np.float64)) @ GL_TO_CV


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics of the image resized by (sx, sy); exact in the pixel-corner convention."""
    S = np.diag([sx, sy, 1.0])
    return S @ np.asarray(K, dtype=np.float64)


def focal_from_fov(fov_rad: float, size_px: float) -> float:
    """Focal length in pixels from a full field-of-view angle (NeRF's camera_angle_x)."""
    return 0.5 * size_px / math.tan(0.5 * fov_rad)


def colmap_intrinsics(model: str, params: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A supported COLMAP model → (pinhole K [3, 3], OpenCV coeffs [5] or None when undistorted).

    Callers check `model in SUPPORTED_COLMAP_MODELS` first (they know the file to name in the error).
    """
    p = [float(v) for v in params]
    zero = [0.0] * 5
    if model == "SIMPLE_PINHOLE":
        f, cx, cy = p
        return intrinsics_matrix(f, f, cx, cy), None
    if model == "PINHOLE":
        fx, fy, cx, cy = p
        return intrinsics_matrix(fx, fy, cx, cy), None
    if model == "SIMPLE_RADIAL":
        f, cx, cy, k = p
        coeffs = [k, 0.0, 0.0, 0.0, 0.0]
        K = intrinsics_matrix(f, f, cx, cy)
    elif model == "RADIAL":
        f, cx, cy, k1, k2 = p
        coeffs = [k1, k2, 0.0, 0.0, 0.0]
        K = intrinsics_matrix(f, f, cx, cy)
    elif model == "OPENCV":
        fx, fy, cx, cy, k1, k2, p1, p2 = p
        coeffs = [k1, k2, p1, p2, 0.0]
        K = intrinsics_matrix(fx, fy, cx, cy)
    else:
        raise AssertionError(f"unsupported COLMAP model {model} reached colmap_intrinsics")
    return K, (None if coeffs == zero else np.array(coeffs))


def valid_rectangle(
    K: np.ndarray, coeffs: np.ndarray, width: int, height: int
) -> tuple[tuple[int, int, int, int], float]:
    """The largest-found axis-aligned rectangle (x0, y0, w, h) of the undistorted image (same K and size)
    whose every pixel is remapped from inside the photo, and the fraction of the image's pixels that
    are valid at all. Found by peeling, one at a time, the border row or column with the most invalid
    pixels until none is left (the invalid region of a lens is a border band, so this keeps the most)."""
    map_x, map_y = undistort_maps(K, coeffs, width, height)
    # OpenCV's pixel centres are integers: bilinear reads stay inside the photo for sources in [0, size-1]
    valid = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    fraction = float(valid.mean())
    bad = ~valid
    x0, y0, x1, y1 = 0, 0, width, height
    rows, cols = bad.sum(axis=1), bad.sum(axis=0)  # kept up to date for the current rectangle
    while x1 > x0 and y1 > y0:
        edges = {"top": rows[y0], "bottom": rows[y1 - 1], "left": cols[x0], "right": cols[x1 - 1]}
        worst = max(edges, key=edges.get)
        if edges[worst] == 0:
            break
        if worst == "top":
            cols[x0:x1] -= bad[y0, x0:x1]
            y0 += 1
        elif worst == "bottom":
            cols[x0:x1] -= bad[y1 - 1, x0:x1]
            y1 -= 1
        elif worst == "left":
            rows[y0:y1] -= bad[y0:y1, x0]
            x0 += 1
        else:
            rows[y0:y1] -= bad[y0:y1, x1 - 1]
            x1 -= 1
    return (x0, y0, x1 - x0, y1 - y0), fraction


def distort_points(uv: np.ndarray, K: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """Pinhole pixel coordinates [N, 2] → where they land in the distorted image (OpenCV model).

    The reference the undistortion is tested against: undistorted(uv) == distorted(distort_points(uv)).
    """
    uv = np.asarray(uv, dtype=np.float64)
    k1, k2, p1, p2, k3 = np.asarray(coeffs, dtype=np.float64)
    x = (uv[:, 0] - K[0, 2]) / K[0, 0]
    y = (uv[:, 1] - K[1, 2]) / K[1, 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd * K[0, 0] + K[0, 2], yd * K[1, 1] + K[1, 2]], axis=1)


def undistort_maps(
    K: np.ndarray, coeffs: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps that undistort an image of this size onto the same pinhole K.

    OpenCV puts pixel centres at integer coordinates; our K puts them at +0.5, so K is shifted by half a
    pixel for OpenCV and the output keeps our K exactly.
    """
    import cv2

    K_cv = np.asarray(K, dtype=np.float64).copy()
    K_cv[0, 2] -= 0.5
    K_cv[1, 2] -= 0.5
    return cv2.initUndistortRectifyMap(
        K_cv, np.asarray(coeffs, np.float64), None, K_cv, (width, height), cv2.CV_32FC1
    )


def working_size(file_wh: tuple[int, int], *, downscale: int, max_side: int) -> tuple[int, int]:
    """The size (w, h) the stages see an image file of `file_wh` at: downscaled by the integer factor
    `downscale` (right and bottom remainders cropped), then, while its longest side is over `max_side`
    (0: no limit), resized to that longest side, as 3DGS rescales images wider than 1.6k pixels."""
    fw, fh = file_wh
    w, h = fw // downscale, fh // downscale
    if max_side and max(w, h) > max_side:
        s = max_side / max(w, h)
        w, h = max(1, round(w * s)), max(1, round(h * s))
    return w, h


def file_scale(expected_wh: tuple[int, int], file_wh: tuple[int, int]) -> int | None:
    """The integer factor s by which an image file is smaller than its camera, or None.

    s = 1 when the sizes agree; s >= 2 when the file is the camera's image downscaled by s (each side
    floor or ceil of size / s, as image tools round), as in 3DGS's images_2 / images_4 folders.
    """
    (w, h), (fw, fh) = expected_wh, file_wh
    if (fw, fh) == (w, h):
        return 1
    if fw <= 0 or fh <= 0 or fw > w or fh > h:
        return None
    s = round(w / fw)
    if s < 2:
        return None
    ok_w = fw in (w // s, -(-w // s))
    ok_h = fh in (h // s, -(-h // s))
    return s if ok_w and ok_h else None
