"""`recover_poses`: a folder of photos → a COLMAP model (undistorted PINHOLE images + sparse model) and
a JSON of how well it registered.

The steps are COLMAP's (pycolmap, CPU): SIFT, matching (`sfm.matcher`), incremental mapping, and
undistortion to PINHOLE, which is what ccl.scene reads with `source: colmap`. EXIF-rotated photos are
first staged upright (COLMAP reads pixels as stored, a viewer shows them rotated); the others are linked,
never copied. The largest model is kept; a model registering fewer than `sfm.min_registered_fraction`
of the photos stops the run, naming the photos left out and, from their feature and match counts, why.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ccl.config import as_params
from ccl.io import atomic_write_json
from ccl.io.atomic import TEMP_MARK, atomic_directory
from ccl.io.provenance import file_record
from ccl.runlog import announce, warn_user
from ccl.sfm import _colmap, ops
from ccl.sfm.config import SfmConfig, check_vocab_tree
from ccl.sfm.photos import PhotoSet, check_photo_folder

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FEW_FEATURES = 200  # below this a photo is likely blurred, textureless or tiny
JPEG_QUALITY = 95  # undistorted images (COLMAP re-encodes them)


def recover_poses(
    photo_dir: str | os.PathLike,
    model_dir: str | os.PathLike,
    *,
    cfg: SfmConfig,
    report_path: str | os.PathLike,
    colmap_model: str = "sparse/0",
    threads: int = 1,
) -> dict[str, Any]:
    """Recover the cameras of the photos under `photo_dir`; write `model_dir` (images/ undistorted,
    `colmap_model`/ the PINHOLE model) and the report JSON; return the report.

    Raises ValueError naming the photos and the fix when the folder fails `check_photo_folder`, when
    nothing registers, or when fewer than `cfg.min_registered_fraction` of the photos register.
    """
    from ccl.optional_deps import import_optional

    announce(log, f"poses: reading the photos in {photo_dir}, then SIFT, matching, mapping and undistortion")
    pycolmap = import_optional("pycolmap")

    check_vocab_tree(cfg)
    _colmap.quiet_pycolmap()
    photos = check_photo_folder(photo_dir, camera_mode=cfg.camera_mode)
    for note in photos.notes:
        log.info("%s", note)
    names = [p.name for p in photos.photos]
    model_dir, report_path = Path(model_dir), Path(report_path)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    matcher = ops.choose_matcher(
        len(names), matcher=cfg.matcher, exhaustive_max_images=cfg.exhaustive_max_images,
        vocab_tree_path=cfg.vocab_tree_path,
    )  # fmt: skip
    groups = ops.camera_groups(
        names, [(p.width, p.height) for p in photos.photos], camera_mode=cfg.camera_mode
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(
        prefix=f".{model_dir.name}.work.", suffix=TEMP_MARK, dir=model_dir.parent
    ) as work:
        work = Path(work)
        image_dir = _stage_upright(photos, work / "input")
        database = work / "database.db"
        # each stage reports its own progress (SIFT per photo, matching per pair, mapping per image)
        for step in ("features", "matching", "mapping", "undistortion"):
            if step == "features":
                _colmap.extract(
                    database, image_dir, names, groups, camera_model=cfg.camera_model,
                    max_image_size=cfg.max_image_size, max_num_features=cfg.max_num_features, dsp_sift=cfg.dsp_sift,
                    threads=threads,
                )  # fmt: skip
            elif step == "matching":
                _colmap.match(database, matcher=matcher, threads=threads, overlap=cfg.sequential_overlap,
                              vocab_tree_path=cfg.vocab_tree_path, min_inliers=cfg.min_pair_inliers)  # fmt: skip
            elif step == "mapping":
                options = pycolmap.IncrementalPipelineOptions()
                options.num_threads = threads
                options.random_seed = _colmap.RANDOM_SEED
                models = _colmap.incremental_mapping(
                    database, image_dir, work / "sparse", options=options, n_images=len(names)
                )
                rec, sizes = _largest(models)
                registered = set() if rec is None else {im.name for im in rec.images.values()}
                _check_registered(photos, registered, sizes, database, cfg=cfg, matcher=matcher)
                report = _report(photos, rec, sizes, cfg=cfg, matcher=matcher, groups=groups)
            else:
                announce(log, f"undistorting the {report['images_registered']} registered photos")
                with atomic_directory(model_dir) as tmp:
                    _undistort(rec, image_dir, tmp, colmap_model=colmap_model, work=work)
    report["seconds"] = time.perf_counter() - t0
    report["outputs"] = {"model": str(model_dir.absolute())}
    atomic_write_json(report_path, report)
    log.info(
        "poses: %d of %d photos registered, %d points, mean reprojection error %.3f px, mean track length "
        "%.2f (%s, %.0f s)", report["images_registered"], report["images_total"], report["points"],
        report["mean_reprojection_error_px"], report["mean_track_length"], matcher, report["seconds"],
    )  # fmt: skip
    return report


def _stage_upright(photos: PhotoSet, folder: Path) -> Path:
    """The photos under `folder` by their names: EXIF-rotated ones written upright (JPEG quality 95 or
    PNG, as they were, without the tag), the others linked."""
    from PIL import Image, ImageOps

    for p in photos.photos:
        dst = folder / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if p.orientation == 1:
            os.symlink(p.path, dst)
            continue
        with Image.open(p.path) as im:
            upright = ImageOps.exif_transpose(im)
            kwargs = {"quality": JPEG_QUALITY} if p.format == "JPEG" else {}
            upright.save(dst, format=p.format, **kwargs)  # exif_transpose dropped the orientation tag
    return folder


def _largest(models: dict) -> tuple[Any, list[int]]:
    """The model registering most images (None if there is none) and every model's image count."""
    if not models:
        return None, []
    recs = sorted(models.values(), key=lambda r: r.num_reg_images(), reverse=True)
    return recs[0], [r.num_reg_images() for r in recs]


def _check_registered(
    photos: PhotoSet, registered: set[str], sizes: list[int], database: Path, *, cfg: SfmConfig, matcher: str
) -> None:
    n = len(photos.photos)
    if len(registered) >= cfg.min_registered_fraction * n:
        lost = [p.name for p in photos.photos if p.name not in registered]
        if lost:
            warn_user(log, f"{len(lost)} of {n} photos did not register and are not used: {lost[:8]}")
        return
    counts = _colmap.image_counts(database)
    lost = [p.name for p in photos.photos if p.name not in registered]
    why = []
    for name in lost[:8]:
        c = counts.get(name)
        if c is None or c.keypoints < FEW_FEATURES:
            cause = f"{0 if c is None else c.keypoints} features: blurred, textureless or tiny"
        elif c.verified_pairs == 0:
            cause = f"{c.keypoints} features, matched to no other photo: it shares no view with them"
        else:
            cause = f"{c.keypoints} features, {c.inliers} matches with {c.verified_pairs} photo(s): too little overlap"
        why.append(f"{name} ({cause})")
    split = f"; the photos formed {len(sizes)} separate models of {sizes} photos" if len(sizes) > 1 else ""
    head = "no photos registered" if not registered else f"{len(registered)} of {n} photos registered"
    other = (
        "set `sfm: {matcher: sequential}` if the photos are in capture order (a walk, a video), which "
        "keeps look-alike views apart"
        if matcher == "exhaustive"
        else "set `sfm: {matcher: exhaustive}` to match every pair (slower)"
    )
    raise ValueError(
        f"{photos.folder}: {head} (sfm.min_registered_fraction = {cfg.min_registered_fraction}), "
        f"{len(lost)} left out: {why}{'…' if len(lost) > 8 else ''}{split}; matcher {matcher}. Fix: take "
        "photos that overlap by about two thirds, moving around the scene rather than turning on the spot, "
        "sharp and of textured surfaces; move photos of other scenes out of the folder; "
        f"{other}; or lower sfm.min_registered_fraction to train on the registered ones"
    )


def _report(photos: PhotoSet, rec: Any, sizes: list[int], *, cfg: SfmConfig, matcher: str, groups) -> dict:
    registered = {im.name for im in rec.images.values()}
    lengths = [p.track.length() for p in rec.points3D.values()]
    return {
        "format_version": FORMAT_VERSION,
        "generator": "ccl.sfm.recover_poses (pycolmap " + _pycolmap_version() + ")",
        "images_total": len(photos.photos),
        "images_registered": len(registered),
        "registered_fraction": len(registered) / len(photos.photos),
        "unregistered": [p.name for p in photos.photos if p.name not in registered],
        "mean_reprojection_error_px": float(rec.compute_mean_reprojection_error()),
        "mean_track_length": float(np.mean(lengths)) if lengths else 0.0,
        "points": int(rec.num_points3D()),
        "cameras": int(rec.num_cameras()),
        "camera_groups": len(groups),
        "models": sizes,
        "matcher": matcher,
        "config": as_params(cfg),
        "notes": list(photos.notes),
        "inputs": {"photos": [file_record(p.path) for p in photos.photos]},
    }


def _pycolmap_version() -> str:
    import pycolmap

    return getattr(pycolmap, "__version__", "?")


def _undistort(rec: Any, image_dir: Path, out: Path, *, colmap_model: str, work: Path) -> None:
    """`rec`'s images undistorted to PINHOLE into out/images, its model into out/`colmap_model`."""
    import pycolmap

    sparse_in = work / "largest"
    sparse_in.mkdir()
    rec.write(sparse_in)
    staged = work / "undistorted"
    pycolmap.undistort_images(staged, sparse_in, image_dir, output_type="COLMAP", jpeg_quality=JPEG_QUALITY)
    shutil.move(staged / "images", out / "images")
    model = out / colmap_model
    model.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(staged / "sparse", model)
