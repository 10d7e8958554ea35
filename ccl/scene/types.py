"""The scene hand-off: posed pinhole cameras and sparse points (numpy only, no torch).

Pixel convention (COLMAP's, gsplat's, instant-ngp's): the top-left corner of the image is (0, 0), so the
centre of pixel (i, j) is at (i + 0.5, j + 0.5). Downscaling by an integer factor f then divides fx, fy,
cx and cy by f exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def _frozen_array(a: np.ndarray, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    a = np.array(a, dtype=dtype)  # a copy: the caller's array stays writable and independent
    if a.size == 0 and shape[0] == -1:
        a = a.reshape(0, *shape[1:])
    assert a.shape == shape or (shape[0] == -1 and a.ndim == 2 and a.shape[1] == shape[1]), a.shape
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Distortion:
    """An image file that must be undistorted before use (OpenCV's radial-tangential model).

    `load_image` remaps the file with `cv2.initUndistortRectifyMap(K, coeffs, None, K, ...)` at the file's
    size and K, then keeps `crop_xywh` of it: the largest rectangle whose every pixel has its source
    inside the photo (ops.valid_rectangle), so no black border reaches a stage, a loss or a metric. The
    camera's K is K shifted by the crop's corner (before downscale).
    """

    K: np.ndarray  # [3, 3] float64 intrinsics of the image file (pixel centres at +0.5)
    coeffs: np.ndarray  # [5] float64 OpenCV order (k1, k2, p1, p2, k3)
    crop_xywh: tuple[int, int, int, int] | None = None  # the valid rectangle; None: the whole image

    def __post_init__(self) -> None:
        object.__setattr__(self, "K", _frozen_array(self.K, np.float64, (3, 3)))
        object.__setattr__(self, "coeffs", _frozen_array(self.coeffs, np.float64, (5,)))


@dataclass(frozen=True, eq=False)
class Camera:
    """One posed view. `K` and `width`/`height` are those of the image `load_image` returns."""

    name: str  # image file stem, "frame_00000"
    image_path: Path
    width: int  # after downscale
    height: int
    K: np.ndarray  # [3, 3] float64 pinhole intrinsics (after undistortion and downscale)
    world_to_camera: np.ndarray  # [4, 4] float64, OpenCV convention (+x right, +y down, +z forward)
    file_size_wh: tuple[int, int] = (0, 0)  # (width, height) of the image file on disk
    distortion: Distortion | None = field(default=None)  # set when the file must be undistorted

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_path", Path(self.image_path))
        object.__setattr__(self, "K", _frozen_array(self.K, np.float64, (3, 3)))
        object.__setattr__(self, "world_to_camera", _frozen_array(self.world_to_camera, np.float64, (4, 4)))
        if self.file_size_wh == (0, 0):
            object.__setattr__(self, "file_size_wh", (int(self.width), int(self.height)))

    @property
    def source_wh(self) -> tuple[int, int]:
        """(width, height) of the image before downscale: the file's, or its undistorted valid crop's."""
        d = self.distortion
        if d is not None and d.crop_xywh is not None:
            return d.crop_xywh[2], d.crop_xywh[3]
        return self.file_size_wh

    @property
    def camera_to_world(self) -> np.ndarray:  # [4, 4] float64
        return np.linalg.inv(self.world_to_camera)

    @property
    def center(self) -> np.ndarray:  # [3] float64, camera centre in world coordinates
        R, t = self.world_to_camera[:3, :3], self.world_to_camera[:3, 3]
        return -R.T @ t

    def project(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points [N, 3] → (pixel coordinates [N, 2] float64, camera-space depth [N] float64)."""
        xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        cam = xyz @ self.world_to_camera[:3, :3].T + self.world_to_camera[:3, 3]
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (cam @ self.K.T)[:, :2] / z[:, None]
        return uv, z


@dataclass(frozen=True, eq=False)
class Scene:
    name: str
    root: Path  # absolute path of the scene folder
    cameras: tuple[Camera, ...]  # sorted by name (numbers compare as numbers); index = frame index
    points_xyz: np.ndarray  # [P, 3] float32 (may be empty)
    points_rgb: np.ndarray  # [P, 3] uint8

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "points_xyz", _frozen_array(self.points_xyz, np.float32, (-1, 3)))
        object.__setattr__(self, "points_rgb", _frozen_array(self.points_rgb, np.uint8, (-1, 3)))
        assert len(self.points_xyz) == len(self.points_rgb)

    @property
    def frame_names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def camera(self, name: str) -> Camera:
        for c in self.cameras:
            if c.name == name:
                return c
        raise KeyError(f"scene {self.name!r} has no frame {name!r}; frames: {self.frame_names[:5]}...")
