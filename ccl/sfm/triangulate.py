"""`triangulate_points`: a scene with poses but no points → points triangulated from its known poses.

NeRF captures (transforms.json without ply_file_path) and COLMAP models without points3D give the
colour field nothing to start from; Gaussians drawn at random start in empty space and held-out views
look through the haze they leave. Here COLMAP (pycolmap, CPU) finds SIFT features in the scene's images
as ccl.scene loads them (undistorted, downscaled: the cameras' K are those images'), matches them, and
triangulates tracks with every pose and intrinsic held fixed. The points go to a PLY that the scene
manifest names and train_rgb starts from. When nothing can be triangulated (too few features, no
overlap) the PLY is empty, the report says why, and the field starts from random points in the cameras'
viewed region.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ccl.config import as_params
from ccl.io import atomic_write_json
from ccl.io.atomic import TEMP_MARK, atomic_path
from ccl.io.provenance import file_record
from ccl.runlog import announce, progress, warn_user
from ccl.sfm import _colmap, ops
from ccl.sfm.config import SfmConfig, check_vocab_tree

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def triangulate_points(
    out_ply: str | os.PathLike,
    *,
    scene_dir: str | os.PathLike,
    source: str,
    scene_load: Any,
    cfg: SfmConfig,
    report_path: str | os.PathLike,
    images: str = "images",
    cache_dir: str | os.PathLike | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Triangulate points for the scene at `scene_dir` (`source` colmap or nerf) from its poses; write
    them as a PLY (x y z, red green blue; possibly empty) and the report JSON; return the report."""
    from ccl.optional_deps import import_optional

    announce(log, f"triangulate_points: reading the scene at {scene_dir}, then SIFT, matching, triangulation")
    pycolmap = import_optional("pycolmap")

    from ccl.scene import load_image, load_scene
    from ccl.scene.ply import write_ply_points

    check_vocab_tree(cfg)
    _colmap.quiet_pycolmap()
    scene = load_scene(scene_dir, source=source, cfg=scene_load, images=images)
    cams = list(scene.cameras)
    out_ply, report_path = Path(out_ply), Path(report_path)
    out_ply.parent.mkdir(parents=True, exist_ok=True)
    matcher = ops.choose_matcher(
        len(cams), matcher=cfg.matcher, exhaustive_max_images=cfg.exhaustive_max_images,
        vocab_tree_path=cfg.vocab_tree_path,
    )  # fmt: skip
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(
        prefix=f".{out_ply.name}.work.", suffix=TEMP_MARK, dir=out_ply.parent
    ) as work:
        work = Path(work)
        image_dir = work / "images"
        image_dir.mkdir()
        names = []
        for c in progress(cams, desc="images", unit="image"):
            names.append(
                _stage_image(c, image_dir, scene_load=scene_load, cache_dir=cache_dir, load_image=load_image)
            )
        intrinsics = [(c.width, c.height, *np.round(c.K[[0, 1, 0, 1], [0, 1, 2, 2]], 6)) for c in cams]
        groups: dict[tuple, list[int]] = {}
        for i, key in enumerate(intrinsics):
            groups.setdefault(key, []).append(i)
        params = [",".join(repr(float(v)) for v in key[2:]) for key in groups]  # fx, fy, cx, cy
        database = work / "database.db"
        _colmap.extract(
            database, image_dir, names, list(groups.values()), camera_model="PINHOLE",
            max_image_size=cfg.max_image_size, max_num_features=cfg.max_num_features, dsp_sift=cfg.dsp_sift,
            threads=threads,
            camera_params=params,
        )  # fmt: skip
        _colmap.match(database, matcher=matcher, threads=threads, overlap=cfg.sequential_overlap,
                      vocab_tree_path=cfg.vocab_tree_path, min_inliers=cfg.min_pair_inliers)  # fmt: skip
        known = _known_model(database, dict(zip(names, cams, strict=True)), work / "known")
        options = pycolmap.IncrementalPipelineOptions()
        options.num_threads = threads
        options.random_seed = _colmap.RANDOM_SEED
        announce(log, f"triangulating the matches of {len(names)} posed photos (one step)")
        rec = pycolmap.triangulate_points(pycolmap.Reconstruction(known), database, image_dir, work / "out",
                                          options=options)  # fmt: skip
        points = list(rec.points3D.values())
        xyz = np.array([p.xyz for p in points], np.float32).reshape(-1, 3)
        rgb = np.array([p.color for p in points], np.uint8).reshape(-1, 3)
        lengths = [p.track.length() for p in points]
        seen = {el.image_id for p in points for el in p.track.elements}
        counts = _colmap.image_counts(database) if not points else {}
    with atomic_path(out_ply) as tmp:
        write_ply_points(tmp, xyz, rgb, binary=True)
    why = None
    if not points:
        kp = sorted(c.keypoints for c in counts.values())
        pairs = sum(c.verified_pairs for c in counts.values()) // 2
        why = (
            f"no track could be triangulated: {pairs} verified image pairs, features per image "
            f"{kp[0] if kp else 0}..{kp[-1] if kp else 0} (textureless, tiny or non-overlapping images)"
        )
        warn_user(
            log, f"{scene.root}: {why}; the colour field starts from random points in the cameras' view"
        )
    report = {
        "format_version": FORMAT_VERSION,
        "generator": "ccl.sfm.triangulate_points",
        "scene": str(scene.root),
        "source": source,
        "images_total": len(cams),
        "images_with_points": len(seen),
        "points": len(points),
        "mean_track_length": float(np.mean(lengths)) if lengths else 0.0,
        "mean_reprojection_error_px": float(rec.compute_mean_reprojection_error()) if points else None,
        "no_points_because": why,
        "matcher": matcher,
        "seconds": time.perf_counter() - t0,
        "config": as_params(cfg),
        "scene_load": as_params(scene_load),
        "inputs": {
            "scene": [
                file_record(p)
                for p in ops.scene_pose_files(
                    {"source": source, "path": str(scene_dir)}, colmap_model=scene_load.colmap_model
                )
            ]
        },
        "outputs": {"points": str(out_ply.absolute())},
    }
    atomic_write_json(report_path, report)
    log.info(
        "triangulated %d points seen in %d of %d images (mean track %.2f, reprojection error %s px)",
        len(points), len(seen), len(cams), report["mean_track_length"],
        "n/a" if why else f"{report['mean_reprojection_error_px']:.3f}",
    )  # fmt: skip
    return report


def _stage_image(camera: Any, folder: Path, *, scene_load: Any, cache_dir, load_image) -> str:
    """The image as ccl.scene gives it, under `folder`: linked when the file is that image already
    (no distortion, no downscale), else written as PNG. Returns its name there."""
    from PIL import Image

    if camera.distortion is None and (camera.width, camera.height) == tuple(camera.file_size_wh):
        name = camera.name + camera.image_path.suffix
        os.symlink(camera.image_path.absolute(), folder / name)
        return name
    name = camera.name + ".png"
    Image.fromarray(load_image(camera, cfg=scene_load, cache_dir=cache_dir)).save(folder / name)
    return name


def _known_model(database: Path, camera_of: dict[str, Any], folder: Path) -> Path:
    """A COLMAP model of the known poses under the database's image and camera ids, no points."""
    import pycolmap

    from ccl.scene.colmap import ColmapCamera, ColmapImage, write_model
    from ccl.scene.ops import rotmat_to_qvec

    with pycolmap.Database.open(database) as db:
        db_images, db_cameras = db.read_all_images(), db.read_all_cameras()
    cameras = [
        ColmapCamera(c.camera_id, "PINHOLE", c.width, c.height, np.asarray(c.params, np.float64))
        for c in db_cameras
    ]
    images = []
    for im in db_images:
        w2c = camera_of[im.name].world_to_camera
        images.append(
            ColmapImage(im.image_id, rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3].copy(), im.camera_id, im.name)
        )
    return write_model(folder, cameras, images, np.zeros((0, 3)), np.zeros((0, 3), np.uint8), format="bin")
