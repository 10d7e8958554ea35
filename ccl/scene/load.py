"""`load_scene`: a scene folder (COLMAP model or NeRF transforms.json) → `Scene`, checked before any work.

Both formats become a list of views (image file, size the model says, pinhole K, distortion, pose);
`_build_cameras` then reads each image's header, checks its size against the model (allowing images
stored downscaled by an integer factor, as 3DGS's images_2/ folders are) and applies
`scene_load.downscale`.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ccl.config import config_source, config_where
from ccl.scene import ops
from ccl.scene.colmap import read_model
from ccl.scene.config import SceneLoadConfig
from ccl.scene.ply import read_ply_points
from ccl.scene.types import Camera, Distortion, Scene

log = logging.getLogger(__name__)

SOURCES = ("colmap", "nerf", "synthetic")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG", ".bmp", ".tif", ".tiff", ".webp")
NERF_UNSUPPORTED_MODELS = ("OPENCV_FISHEYE", "FISHEYE", "EQUIRECTANGULAR", "FULL_OPENCV")


@dataclass
class _View:
    """One image as the model describes it, before its file is checked."""

    name: str
    image_path: Path
    model_wh: tuple[int, int] | None  # None: take the file's size (NeRF without w/h)
    K: np.ndarray | None  # [3, 3] float64 at model_wh; None: from `fov` once the size is known
    coeffs: np.ndarray | None  # [5] OpenCV distortion, None when pinhole
    world_to_camera: np.ndarray  # [4, 4] float64, OpenCV convention
    where: str  # "camera 3 in .../cameras.bin" or "frame 12 of .../transforms.json", for messages
    fov: dict | None = None  # NeRF intrinsics still to resolve against the image size


def load_scene(
    path: str | Path,
    *,
    source: str,
    cfg: SceneLoadConfig,
    name: str | None = None,
    images: str = "images",
) -> Scene:
    """Load a scene folder: `source` is "colmap" (images/ + sparse/0), "nerf" or "synthetic" (transforms.json).

    Raises FileNotFoundError / ValueError naming the file, the problem and the fix for: a missing
    folder, no images, an unsupported camera model, missing keys, an image whose size disagrees with
    its camera. Reads image headers only, never pixels.
    """
    if source not in SOURCES:
        raise ValueError(
            f"scene source must be one of {SOURCES}, got {source!r} (key `source` in {config_source()})"
        )
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: scene folder not found; check the scene's `path` in {config_source()} "
            "(relative paths are taken from the directory snakemake runs in)"
        )
    if source == "colmap":
        root = path
        views, xyz, rgb = _colmap_views(path, cfg=cfg, images=images)
    else:
        json_path = _find_transforms(path)
        root = json_path.parent
        views, xyz, rgb = _nerf_views(json_path)
    cameras = _build_cameras(views, cfg=cfg)
    scene = Scene(
        name=name or root.name,
        root=root,
        cameras=tuple(sorted(cameras, key=lambda c: ops.natural_key(c.name))),
        points_xyz=xyz,
        points_rgb=rgb,
    )
    n_dist = sum(c.distortion is not None for c in scene.cameras)
    log.info(
        "scene %s (%s, %s): %d cameras at %dx%d (downscale %d, %d to undistort), %d sparse points",
        scene.name, source, root, len(scene.cameras), scene.cameras[0].width, scene.cameras[0].height,
        cfg.downscale, n_dist, len(xyz),
    )  # fmt: skip
    return scene


# --- COLMAP -------------------------------------------------------------------------------------------


def _has_images(folder: Path) -> bool:
    return any(p.suffix in IMAGE_EXTENSIONS and p.is_file() for p in folder.rglob("*"))


def _colmap_views(
    root: Path, *, cfg: SceneLoadConfig, images: str
) -> tuple[list[_View], np.ndarray, np.ndarray]:
    image_dir = root / images
    if not image_dir.is_dir() or not _has_images(image_dir):
        what = "does not exist" if not image_dir.is_dir() else "holds no image files"
        raise FileNotFoundError(
            f"{image_dir}: the scene's image folder {what}; a COLMAP scene folder holds {images}/ and "
            f"{cfg.colmap_model}/: check the scene's `path`, or set its `images:` key to the image folder's name"
        )
    model_dir = root / cfg.colmap_model
    model = read_model(model_dir)
    cam_file = model.file("cameras")
    for cam in model.cameras.values():
        n_params = (
            ops.COLMAP_MODELS[ops.COLMAP_MODEL_IDS[cam.model]][1]
            if cam.model in ops.COLMAP_MODEL_IDS
            else None
        )
        if n_params is not None and len(cam.params) != n_params:
            raise ValueError(
                f"{cam_file}: camera {cam.camera_id} ({cam.model}) has {len(cam.params)} parameters, the model "
                f"has {n_params}; the file is corrupt: re-export the model from COLMAP"
            )
        if cam.model not in ops.SUPPORTED_COLMAP_MODELS:
            raise ValueError(
                f"{cam_file}: camera {cam.camera_id} uses the {cam.model} model, which ccl.scene does not "
                f"undistort (supported: {', '.join(ops.SUPPORTED_COLMAP_MODELS)}); undistort the scene first: "
                f"`colmap image_undistorter --image_path {image_dir} --input_path {model_dir} "
                "--output_path <new folder>` and point the scene's `path` at <new folder>"
            )
    views = []
    for im in model.images.values():
        cam = model.cameras.get(im.camera_id)
        if cam is None:
            raise ValueError(
                f"{model.file('images')}: image {im.image_id} ({im.name}) refers to camera {im.camera_id}, "
                f"which {cam_file} does not define (it has {sorted(model.cameras)}); the model is "
                "incomplete: re-export it from COLMAP"
            )
        K, coeffs = ops.colmap_intrinsics(cam.model, cam.params)
        w2c = ops.pose_matrix(ops.qvec_to_rotmat(im.qvec), im.tvec)
        where = f"camera {cam.camera_id} ({cam.model}, {cam.width}x{cam.height}) in {cam_file}"
        views.append(
            _View(Path(im.name).stem, image_dir / im.name, (cam.width, cam.height), K, coeffs, w2c, where)
        )
    if not views:
        raise ValueError(
            f"{model.file('images')}: the model registers no images; re-run COLMAP's mapper on the scene"
        )
    views = _drop_missing(views, source_file=model.file("images"), image_dir=image_dir)
    return views, model.points_xyz.astype(np.float32), model.points_rgb


# --- NeRF / instant-ngp transforms.json ---------------------------------------------------------------


def _find_transforms(path: Path) -> Path:
    if path.is_file():
        return path
    json_path = path / "transforms.json"
    if not json_path.is_file():
        others = sorted(p.name for p in path.glob("transforms*.json"))
        hint = (
            f"it has {others}: point the scene's `path` at one of them (e.g. {path / others[0]})"
            if others
            else "a NeRF / instant-ngp scene folder holds transforms.json beside its images; "
            "for a COLMAP folder (images/ + sparse/0) set `source: colmap`"
        )
        raise FileNotFoundError(f"{json_path}: not found; {hint}")
    return json_path


def _resolve_frame_image(base: Path, file_path: str) -> Path:
    """file_path relative to the json's folder, with or without its extension (Blender: ./train/r_0)."""
    p = Path(file_path)
    p = p if p.is_absolute() else base / p
    if p.is_file():
        return p
    for ext in IMAGE_EXTENSIONS:
        q = p.with_name(p.name + ext)
        if q.is_file():
            return q
    return p


def _nerf_views(json_path: Path) -> tuple[list[_View], np.ndarray, np.ndarray]:
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{json_path}: not a text file (byte {e.start} is not UTF-8): a transforms.json is JSON text; "
            "point the scene's `path` at the real file, or regenerate it"
        ) from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{json_path}: not valid JSON ({e}); fix or regenerate the file") from None
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list) or not frames:
        raise ValueError(
            f"{json_path}: no `frames` list (keys: {sorted(meta) if isinstance(meta, dict) else type(meta).__name__}); "
            "a NeRF transforms.json holds `frames: [{file_path, transform_matrix}, ...]`"
        )
    model = str(meta.get("camera_model", "OPENCV")).upper()
    base = json_path.parent
    views = []
    for i, fr in enumerate(frames):
        if not isinstance(fr, dict):
            raise ValueError(f"{json_path}: frame {i} is a {type(fr).__name__}, not an object; fix the file")

        def get(key, fr=fr):
            return fr.get(key, meta.get(key))

        missing = [k for k in ("file_path", "transform_matrix") if k not in fr]
        if get("fl_x") is None and get("camera_angle_x") is None:
            missing.append("fl_x or camera_angle_x")
        if missing:
            raise ValueError(
                f"{json_path}: frame {i}{_frame_label(fr)} lacks {', '.join(repr(k) for k in missing)}; every "
                "frame needs file_path and transform_matrix, and the intrinsics (fl_x, or camera_angle_x) "
                "must be given at the top level or in the frame: regenerate the file (colmap2nerf.py or "
                "ns-process-data) or add the keys"
            )
        fr_model = str(fr.get("camera_model", model)).upper()
        if fr_model in NERF_UNSUPPORTED_MODELS or get("is_fisheye") or get("k4") not in (None, 0, 0.0):
            raise ValueError(
                f"{json_path}: frame {i}{_frame_label(fr)} uses a fisheye / {fr_model} camera, which "
                "ccl.scene does not undistort; undistort the images first (e.g. COLMAP's "
                "image_undistorter, then use the COLMAP folder with `source: colmap`)"
            )
        try:
            c2w = np.asarray(fr["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            c2w = np.full((0,), np.nan)
        if c2w.shape not in ((4, 4), (3, 4)) or not np.isfinite(c2w).all():
            raise ValueError(
                f"{json_path}: frame {i}{_frame_label(fr)}: transform_matrix must be a finite 4x4 (or 3x4) "
                f"camera-to-world matrix, got shape {c2w.shape}; fix the file"
            )
        try:
            w, h = get("w"), get("h")
            model_wh = (int(w), int(h)) if w is not None and h is not None else None
            fov = {k: get(k) for k in ("fl_x", "fl_y", "cx", "cy", "camera_angle_x", "camera_angle_y")}
            fov = {k: None if v is None else float(v) for k, v in fov.items()}
            coeffs = np.array([float(get(k) or 0.0) for k in ("k1", "k2", "p1", "p2", "k3")])
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"{json_path}: frame {i}{_frame_label(fr)}: an intrinsics or distortion value is not a "
                f"number ({e}); fix the file (w, h, fl_x, fl_y, cx, cy, camera_angle_x/y, k1, k2, p1, p2, k3)"
            ) from None
        image_path = _resolve_frame_image(base, str(fr["file_path"]))
        views.append(
            _View(
                name=image_path.stem,
                image_path=image_path,
                model_wh=model_wh,
                K=None,
                coeffs=coeffs if np.any(coeffs != 0.0) else None,
                world_to_camera=ops.opengl_c2w_to_opencv_w2c(c2w),
                where=f"frame {i} of {json_path}",
                fov=fov,
            )
        )
    views = _drop_missing(views, source_file=json_path, image_dir=base)
    unreadable = []
    for v in views:
        if v.model_wh is None:  # w, h absent: the image's own size (NeRF-synthetic's camera_angle_x only)
            size = _image_size(v.image_path)
            if isinstance(size, str):
                unreadable.append(size)
                continue
            v.model_wh = size
        v.K = _nerf_intrinsics(v.fov, *v.model_wh)
    if unreadable:
        raise ValueError(
            f"{json_path}: {len(unreadable)} of its image files cannot be read as images: {unreadable[:6]}; "
            "replace them, or remove their frames from the file"
        )
    ply = meta.get("ply_file_path")
    if ply:
        ply_path = Path(ply) if Path(ply).is_absolute() else base / ply
        if not ply_path.is_file():
            raise FileNotFoundError(
                f"{json_path}: ply_file_path names {ply_path}, which does not exist; restore the file or "
                "remove the key (the Gaussians then start from random points)"
            )
        xyz, rgb = read_ply_points(ply_path)
    else:
        xyz, rgb = np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
    return views, xyz, rgb


def _frame_label(fr: dict) -> str:
    return f" ({fr['file_path']})" if "file_path" in fr else ""


def _nerf_intrinsics(fov: dict, w: int, h: int) -> np.ndarray:
    fx = fov["fl_x"] if fov["fl_x"] is not None else ops.focal_from_fov(float(fov["camera_angle_x"]), w)
    if fov["fl_y"] is not None:
        fy = fov["fl_y"]
    elif fov["camera_angle_y"] is not None and fov["fl_x"] is None:
        fy = ops.focal_from_fov(float(fov["camera_angle_y"]), h)
    else:
        fy = fx
    cx = fov["cx"] if fov["cx"] is not None else w / 2.0
    cy = fov["cy"] if fov["cy"] is not None else h / 2.0
    return ops.intrinsics_matrix(float(fx), float(fy), float(cx), float(cy))


# --- shared: missing files, image headers, sizes, downscale -------------------------------------------


def _under_another_case(missing: list[Path]) -> list[tuple[Path, Path]]:
    """(missing path, the file there whose name differs only in case) for each such file."""
    out = []
    for path in missing:
        if path.parent.is_dir():
            same = [p for p in path.parent.iterdir() if p.name.lower() == path.name.lower() and p.is_file()]
            if same:
                out.append((path, same[0]))
    return out


def _drop_missing(views: list[_View], *, source_file: Path, image_dir: Path) -> list[_View]:
    """The views whose image file exists; a missing file's frame is skipped with a warning (models often
    name images a user has since removed), but a path that is there and is no image file is refused."""
    not_files = [v.image_path for v in views if v.image_path.is_symlink() or v.image_path.exists()]
    not_files = [p for p in not_files if not p.is_file()]
    if not_files:
        what = [
            f"{p} ({'a link to the missing ' + str(p.readlink()) if p.is_symlink() else 'a folder'})"
            for p in not_files
        ]
        raise ValueError(
            f"{source_file}: {len(what)} image path(s) are not image files: {what[:4]}; "
            "make each one the image file (a link to an unmounted drive? mount it), or remove its frame"
        )
    present = [v for v in views if v.image_path.is_file()]
    n_missing = len(views) - len(present)
    if not present:
        raise FileNotFoundError(
            f"{source_file}: none of its {len(views)} images exist (first: {views[0].image_path}); the "
            f"scene folder has no images: check the scene's `path` (and `images:` for COLMAP scenes), "
            f"looked in {image_dir}"
        )
    if n_missing:
        first = next(v for v in views if not v.image_path.is_file())
        log.warning(
            "%s: %d of %d images are missing and their frames are skipped (first: %s)",
            source_file, n_missing, len(views), first.image_path,
        )  # fmt: skip
        cased = _under_another_case([v.image_path for v in views if not v.image_path.is_file()])
        if cased:
            log.warning(
                "%s: %d of the missing images are there under another case (e.g. %s for %s): the names "
                "must match exactly; rename those files to the names in %s (or the names there to the files')",
                source_file, len(cased), cased[0][1].name, cased[0][0].name, source_file.name,
            )  # fmt: skip
    names = [v.name for v in present]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(
            f"{source_file}: several images share the file stem(s) {dup[:5]}; frame names are file stems "
            "and must be unique: rename the images (and the model's references to them)"
        )
    return present


def _image_size(path: Path) -> tuple[int, int] | str:
    """(width, height) from the file's header, without decoding the pixels; why not, if it cannot."""
    from PIL import Image, UnidentifiedImageError

    if path.stat().st_size == 0:
        return f"{path}: cannot be read as an image (empty: 0 bytes)"
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (UnidentifiedImageError, OSError) as e:
        return f"{path}: cannot be read as an image ({e})"


# Undistortion must leave at least this fraction of the image in its valid rectangle: below it, the
# coefficients are likely wrong (a sign, a unit) or the lens is one this model cannot undistort.
MIN_VALID_FRACTION = 0.5


def _valid_crop(v: _View, K: np.ndarray, file_wh: tuple[int, int]) -> tuple[int, int, int, int]:
    rect, fraction = _valid_rectangle(K.tobytes(), np.asarray(v.coeffs, np.float64).tobytes(), *file_wh)
    if rect[2] * rect[3] < MIN_VALID_FRACTION * file_wh[0] * file_wh[1]:
        raise ValueError(
            f"{v.image_path}: undistorting it with its camera's coefficients {np.round(v.coeffs, 4).tolist()} "
            f"leaves a valid rectangle of {rect[2]}x{rect[3]} of its {file_wh[0]}x{file_wh[1]} pixels "
            f"({fraction:.0%} of the pixels have a source in the photo at all): under "
            f"{MIN_VALID_FRACTION:.0%}. The coefficients are likely wrong (sign, units, another camera's), "
            "or the lens needs a model this loader does not undistort (fisheye): re-estimate the camera "
            "with another camera model (source: images with sfm.camera_model, e.g. OPENCV), or undistort the "
            "photos first (COLMAP's image_undistorter) and load its output as `source: colmap`"
        )
    return rect


@functools.lru_cache(maxsize=16)
def _valid_rectangle(K_bytes: bytes, coeffs_bytes: bytes, width: int, height: int):
    K = np.frombuffer(K_bytes, np.float64).reshape(3, 3)
    return ops.valid_rectangle(K, np.frombuffer(coeffs_bytes, np.float64), width, height)


def _build_cameras(views: list[_View], *, cfg: SceneLoadConfig) -> list[Camera]:
    f = cfg.downscale
    cameras, bad, scales, unreadable = [], [], {}, []
    for v in views:
        assert v.model_wh is not None and v.K is not None
        file_wh = _image_size(v.image_path)
        if isinstance(file_wh, str):
            unreadable.append(file_wh)
            continue
        s = ops.file_scale(v.model_wh, file_wh)
        if s is None:
            bad.append((v, file_wh))
            continue
        scales.setdefault(s, []).append(v.image_path)
        (mw, mh), (fw, fh) = v.model_wh, file_wh
        K_file = ops.scale_intrinsics(v.K, fw / mw, fh / mh) if s > 1 else v.K
        distortion, K_src, (sw, sh) = None, K_file, file_wh
        if v.coeffs is not None:  # undistorted onto K_file, then cropped to its valid rectangle
            crop = _valid_crop(v, K_file, file_wh)
            distortion = Distortion(K=K_file, coeffs=v.coeffs, crop_xywh=crop)
            K_src = K_file.copy()
            K_src[:2, 2] -= crop[:2]
            sw, sh = crop[2], crop[3]
        if sw // f < 1 or sh // f < 1:
            raise ValueError(
                f"{config_where('scene_load')}.downscale = {f} shrinks {v.image_path} ({sw}x{sh}) to nothing; "
                "use a smaller factor"
            )
        width, height = ops.working_size((sw, sh), downscale=f, max_side=cfg.max_image_side)
        cameras.append(
            Camera(
                name=v.name,
                image_path=v.image_path,
                width=width,
                height=height,
                # crop to whole multiples of f and shrink by f, then resize to the longest-side limit
                K=ops.scale_intrinsics(K_src, width / (sw // f * f), height / (sh // f * f)),
                world_to_camera=v.world_to_camera,
                file_size_wh=file_wh,
                distortion=distortion,
            )
        )
    if unreadable:
        raise ValueError(
            f"{len(unreadable)} of {len(views)} image files cannot be read as images: {unreadable[:6]}"
            f"{' …' if len(unreadable) > 6 else ''}; replace them, or remove their frames from the model"
        )
    if bad:
        v, (fw, fh) = bad[0]
        mw, mh = v.model_wh
        raise ValueError(
            f"{v.image_path}: image is {fw}x{fh} but {v.where} says {mw}x{mh} (nor is it that size "
            f"downscaled by an integer factor); {len(bad)} of {len(views)} images disagree. The images are "
            "not the ones the model was made from: point the scene at the matching image folder "
            "(`images:` for COLMAP scenes) or rebuild the model from these images"
        )
    if len(scales) > 1:  # a half-size image among full-size ones: each stage would see another size
        common = max(scales, key=lambda k: len(scales[k]))
        odd = [f"{p} (1/{k})" for k, paths in scales.items() if k != common for p in paths]
        raise ValueError(
            f"{len(odd)} of {len(views)} images are stored at another scale than the rest (1/{common} of the "
            f"model's size): {odd[:5]}; one scene has one image size: replace them with the "
            f"{'full-size' if common == 1 else f'1/{common}-size'} files"
        )
    return cameras
