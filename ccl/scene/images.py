"""`load_image`: a camera's image as the Camera describes it (undistorted, downscaled), cached on disk.

Like 3DGS / LangSplat, the image the later stages see is the undistorted pinhole image at the working
resolution; it is computed once and kept as a PNG under the cache folder (the workflow passes
results/{scene}/cache/), keyed by the source file (path, size, mtime) and the transformation, so a
changed file or setting never reuses a stale image. Images that need no transformation are read as they are.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from ccl.io import atomic_path
from ccl.scene import ops
from ccl.scene.config import SceneLoadConfig
from ccl.scene.types import Camera

log = logging.getLogger(__name__)


def load_image(
    camera: Camera, *, cfg: SceneLoadConfig, cache_dir: str | os.PathLike | None = None
) -> np.ndarray:
    """→ [H, W, 3] uint8 RGB, H = camera.height, W = camera.width (undistorted and downscaled).

    An undecodable file raises ValueError naming it.
    """
    f = cfg.downscale
    fw, fh = camera.file_size_wh
    size = ops.working_size(camera.source_wh, downscale=f, max_side=cfg.max_image_side)
    if size != (camera.width, camera.height):
        raise ValueError(
            f"camera {camera.name}: its size {camera.width}x{camera.height} is not {fw}x{fh} at "
            f"scene_load.downscale = {f}, max_image_side = {cfg.max_image_side} ({size[0]}x{size[1]}); "
            "load the scene and its images with the same scene_load config"
        )
    if size == (fw, fh) and camera.distortion is None:
        return _decode(camera)
    cache_path = _cache_path(camera, f, Path(cache_dir)) if cache_dir is not None else None
    if cache_path is not None and cache_path.is_file():
        img = _read_rgb(cache_path)
        if img is not None and img.shape == (camera.height, camera.width, 3):
            return img
        log.warning("%s: unreadable cache entry, rebuilding it", cache_path)
    img = _decode(camera)
    if camera.distortion is not None:
        import cv2

        d = camera.distortion
        map1, map2 = _undistort_maps(d.K.tobytes(), d.coeffs.tobytes(), fw, fh)
        img = cv2.remap(img, map1, map2, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if d.crop_xywh is not None:  # only pixels with a source in the photo (no black border)
            x0, y0, w, h = d.crop_xywh
            img = img[y0 : y0 + h, x0 : x0 + w]
    if f > 1:
        img = downscale_image(img, f)
    if img.shape[:2] != (camera.height, camera.width):  # over max_image_side: resized to it
        import cv2

        img = cv2.resize(img, (camera.width, camera.height), interpolation=cv2.INTER_AREA)
    img = np.ascontiguousarray(img)
    if cache_path is not None:
        import cv2

        with atomic_path(cache_path) as tmp:
            if not cv2.imwrite(str(tmp), img[:, :, ::-1]):
                raise OSError(f"{cache_path}: could not write the cached image (disk full or read-only?)")
    return img


def downscale_image(img: np.ndarray, factor: int) -> np.ndarray:
    """Shrink by an integer factor with area averaging; the right and bottom remainders are cropped.

    Cropping (rather than stretching) keeps the intrinsics exactly K / factor.
    """
    import cv2

    h, w = img.shape[0] // factor, img.shape[1] // factor
    return cv2.resize(img[: h * factor, : w * factor], (w, h), interpolation=cv2.INTER_AREA)


def _cache_path(camera: Camera, factor: int, cache_dir: Path) -> Path:
    st = camera.image_path.stat()
    h = hashlib.sha256()
    h.update(f"{camera.image_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{factor}".encode())
    sw, sh = camera.source_wh
    if camera.distortion is not None and camera.distortion.crop_xywh is not None:
        h.update(repr(camera.distortion.crop_xywh).encode())
    if (camera.width, camera.height) != (sw // factor, sh // factor):
        h.update(f"|{camera.width}x{camera.height}".encode())  # resized to max_image_side
    if camera.distortion is not None:
        h.update(camera.distortion.K.tobytes() + camera.distortion.coeffs.tobytes())
    return cache_dir / "images" / f"x{factor}" / f"{camera.name}.{h.hexdigest()[:12]}.png"


@functools.lru_cache(maxsize=4)
def _undistort_maps(
    K_bytes: bytes, coeffs_bytes: bytes, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    K = np.frombuffer(K_bytes, np.float64).reshape(3, 3)
    coeffs = np.frombuffer(coeffs_bytes, np.float64)
    return ops.undistort_maps(K, coeffs, width, height)


def check_images_decode(cameras: list[Camera], *, workers: int = 1) -> None:
    """Decode every camera's image file once, in full (`workers` threads: the decoders release the GIL),
    and refuse the scene naming every file that is truncated or corrupt. OpenCV, which the stages read
    with, decodes a truncated JPEG into grey rows with only a libjpeg warning on the console; PIL raises."""
    from concurrent.futures import ThreadPoolExecutor

    def problem(camera: Camera) -> str | None:
        from PIL import Image

        try:
            with Image.open(camera.image_path) as im:
                im.load()  # every pixel: a truncated file raises here, not at the header
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError… for broken files
            return f"{camera.image_path} ({str(e) or type(e).__name__})"
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        bad = [p for p in pool.map(problem, cameras) if p is not None]
    if bad:
        raise ValueError(
            f"{len(bad)} of {len(cameras)} images cannot be decoded in full (truncated or corrupt): "
            f"{bad[:6]}{' …' if len(bad) > 6 else ''}; replace them with complete copies (a copy cut short?), "
            "or remove their frames from the scene"
        )


def _read_rgb(path: Path) -> np.ndarray | None:
    """Any 8/16-bit grey, RGB or RGBA file → [H, W, 3] uint8 RGB (alpha composited over black); None if undecodable."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # UNCHANGED: no EXIF rotation, as COLMAP and PIL's size
    if img is None:
        return None
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = (np.clip(img.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        img = (img[:, :, :3].astype(np.float32) * alpha + 0.5).astype(np.uint8)
    return np.ascontiguousarray(img[:, :, 2::-1])


def _decode(camera: Camera) -> np.ndarray:
    img = _read_rgb(camera.image_path)
    if img is None:
        raise ValueError(
            f"{camera.image_path}: cannot be decoded as an image (corrupt, truncated or an unsupported "
            "format); replace the file, or remove the frame from the scene"
        )
    fw, fh = camera.file_size_wh
    if img.shape[:2] != (fh, fw):
        raise ValueError(
            f"{camera.image_path}: decodes to {img.shape[1]}x{img.shape[0]} but its header said {fw}x{fh} "
            "when the scene was loaded; the file changed: rerun from the scene_manifest rule"
        )
    return img
