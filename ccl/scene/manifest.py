"""The scene manifest (results/{scene}/scene.json): the scene checked once, which every later stage reads.

`write_manifest` loads and checks a scene (bad input stops the workflow here, before any expensive
stage) and records where it is and how it was read; `load_scene_from_manifest` reloads the same scene
and refuses a manifest that no longer matches the folder or the config.

A `source: images` scene is read as the COLMAP model that rule poses made of its photos (`source`
colmap, `sfm_from` the photo folder). A scene with poses but no points may name a points file (rule
triangulate_points' PLY): the scene then carries those points, the colour field starts from them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccl.config import config_source
from ccl.io import atomic_write_json
from ccl.io.provenance import content_sha256, file_record, recorded_sha256
from ccl.scene.config import SceneLoadConfig
from ccl.scene.images import check_images_decode
from ccl.scene.load import load_scene
from ccl.scene.types import Scene

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class FrameEntry:
    name: str
    image_path: str  # absolute
    width: int  # after downscale
    height: int
    image_sha256: str | None = None  # the image file's content (None: a manifest of an earlier ccl)
    # the camera as the stages see it, so that a results folder renders without the photos (None: earlier)
    K: list[list[float]] | None = None  # [3][3] pinhole intrinsics after undistortion and downscale
    world_to_camera: list[list[float]] | None = None  # [4][4], OpenCV convention


@dataclass(frozen=True)
class SceneManifest:
    path: Path  # the manifest file itself
    name: str
    source: str  # synthetic, colmap, nerf
    root: Path  # absolute scene folder
    images: str  # image folder inside root (COLMAP scenes)
    colmap_model: str
    protocol: str  # lerf_ovs, 3dovs, none
    labels: Path | None  # absolute folder of LERF-OVS label JSONs, None if the scene has none
    downscale: int
    frames: tuple[FrameEntry, ...]
    n_points: int
    points: dict | None = None  # file_record of a points file (PLY) the scene starts from, None: its own
    sfm_from: str | None = None  # the photo folder a `source: images` scene's model was made from


def write_manifest(
    out_path: str | os.PathLike,
    *,
    name: str,
    entry: Mapping[str, Any],
    source_dir: str | os.PathLike,
    cfg: SceneLoadConfig,
    workers: int = 1,
    points_file: str | os.PathLike | None = None,
) -> Path:
    """Load and check the scene `entry` (its config.yaml entry) read from `source_dir`, every image
    decoded in full (`workers` threads); write the manifest. `points_file`: a PLY of points the scene
    starts from instead of its own (a scene with poses but no points).

    The JSON is {format_version, name, source, root, images, colmap_model, protocol, labels, downscale,
    frames: [{name, image_path, width, height, image_sha256}], n_points, points, sfm_from}: each image's
    content hash, so that every stage can tell an image replaced in place (same name and size).
    """
    source = entry["source"]
    sfm_from = None
    if source == "images":  # the photos' COLMAP model (rule poses), or the folder itself if it is one
        source, sfm_from = "colmap", str(Path(entry["path"]).expanduser().absolute())
        if Path(source_dir).expanduser().absolute() == Path(sfm_from):
            from ccl.runlog import warn_user

            warn_user(
                log,
                f"scene {name}: {sfm_from} is a COLMAP scene already (images/ and {cfg.colmap_model}), "
                "so it is used as it is, without structure from motion; set its `source: colmap` to say so "
                "(or point `path` at the photos alone to recover the poses anew)",
            )
    images = entry.get("images", "images") if sfm_from is None else "images"
    labels = _labels_dir(name, entry, Path(source_dir))
    scene = load_scene(source_dir, source=source, cfg=cfg, name=name, images=images)
    n_points = len(scene.points_xyz)
    if points_file is not None:
        from ccl.scene.ply import read_ply_points

        n_points = len(read_ply_points(points_file)[0])
    check_images_decode(list(scene.cameras), workers=workers)
    if source == "synthetic" and labels is None and (scene.root / "labels").is_dir():
        labels = (scene.root / "labels").absolute()
    doc = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "source": source,
        "root": str(scene.root),
        "images": images,
        "colmap_model": cfg.colmap_model,
        "protocol": entry.get("protocol", "lerf_ovs"),
        "labels": None if labels is None else str(labels),
        "downscale": cfg.downscale,
        "frames": [
            {
                "name": c.name,
                "image_path": str(c.image_path),
                "width": c.width,
                "height": c.height,
                "image_sha256": content_sha256(c.image_path),
                "K": c.K.tolist(),
                "world_to_camera": c.world_to_camera.tolist(),
            }
            for c in scene.cameras
        ],
        "n_points": n_points,
        "points": None if points_file is None else file_record(points_file),
        "sfm_from": sfm_from,
    }
    return atomic_write_json(out_path, doc)


def scene_input_files(entry: Mapping[str, Any], *, colmap_model: str) -> list[Path]:
    """The user's files a real scene's manifest is made of, for the workflow to watch (`entry`: the
    scene's config entry, paths resolved): every image file in its image folder (those the model lists,
    and those it does not, whose arrival replans the scene) and its pose files. Empty for a synthetic
    scene (rule synthetic_scene makes it). A photo folder's model is rule poses' output, which
    depends on the photos itself."""
    from ccl.sfm import list_photo_files
    from ccl.sfm.ops import scene_pose_files

    source = entry["source"]
    if source not in ("colmap", "nerf", "images"):
        return []
    root = Path(entry["path"]).expanduser()
    if source == "nerf":
        folder = root.parent if root.is_file() else root
    else:
        folder = root / (entry.get("images", "images") if source == "colmap" else "images")
    poses = scene_pose_files(
        {**entry, "source": "nerf" if source == "nerf" else "colmap"}, colmap_model=colmap_model
    )
    images = list_photo_files(folder) if folder.is_dir() else []
    return [*poses, *images]


def _labels_dir(name: str, entry: Mapping[str, Any], source_dir: Path) -> Path | None:
    labels = entry.get("labels")
    if labels is None:
        return None
    path = Path(labels).expanduser().absolute()
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path}: labels folder not found (scene {name!r}, key `labels` in {config_source()}); fix the path, "
            "or remove the key if the scene has no LERF-OVS labels (set `protocol: none` to skip evaluation)"
        )
    return path


def read_manifest(manifest_path: str | os.PathLike) -> SceneManifest:
    path = Path(manifest_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: scene manifest not found; run the scene_manifest rule first")
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: manifest format_version {doc.get('format_version')!r}, this ccl writes {FORMAT_VERSION}; "
            "remake it: `snakemake --forcerun scene_manifest` (the old file is replaced, never read)"
        )
    return SceneManifest(
        path=path,
        name=doc["name"],
        source=doc["source"],
        root=Path(doc["root"]),
        images=doc["images"],
        colmap_model=doc["colmap_model"],
        protocol=doc["protocol"],
        labels=None if doc["labels"] is None else Path(doc["labels"]),
        downscale=int(doc["downscale"]),
        frames=tuple(FrameEntry(**fr) for fr in doc["frames"]),
        n_points=int(doc["n_points"]),
        points=doc.get("points"),
        sfm_from=doc.get("sfm_from"),
    )


def load_scene_cameras(manifest_path: str | os.PathLike, *, cfg: SceneLoadConfig) -> Scene:
    """The scene's cameras, for what needs no photo (ccl render, query, view): the scene as
    `load_scene_from_manifest` loads it when its folder is here, else the cameras the manifest stores
    (no images, no points), so a results folder copied to another machine renders and queries."""
    m = read_manifest(manifest_path)
    if m.root.exists():
        return load_scene_from_manifest(manifest_path, cfg=cfg)
    if any(f.K is None or f.world_to_camera is None for f in m.frames):
        raise FileNotFoundError(
            f"{m.path}: the scene folder {m.root} is not on this machine (moved, or this results folder was "
            "copied from another one), and this manifest, written by an earlier ccl, stores no cameras: put "
            f"the scene folder back at {m.root}, or remake the manifest where the scene is "
            "(snakemake --forcerun scene_manifest)"
        )
    from ccl.scene.types import Camera

    cameras = [
        Camera(name=f.name, image_path=Path(f.image_path), width=f.width, height=f.height, K=f.K,
               world_to_camera=f.world_to_camera)
        for f in m.frames
    ]  # fmt: skip
    return Scene(name=m.name, root=m.root, cameras=tuple(cameras), points_xyz=[], points_rgb=[])


def load_scene_from_manifest(manifest_path: str | os.PathLike, *, cfg: SceneLoadConfig) -> Scene:
    """The scene a manifest describes, loaded with `cfg`; refuses a manifest that no longer matches."""
    m = read_manifest(manifest_path)
    rerun = "rerun the scene_manifest rule (snakemake --forcerun scene_manifest)"
    if not m.root.exists():
        raise FileNotFoundError(
            f"{m.path}: this needs the scene's images, and its scene folder {m.root}, where they were when "
            "the manifest was written, is not on this machine (moved, or this results folder was copied "
            f"from another one): put the folder back at {m.root}, or point the scene's `path` in your "
            "config at where it is now and rerun (rendering, queries and the viewer need no images)"
        )
    if m.downscale != cfg.downscale or (m.source == "colmap" and m.colmap_model != cfg.colmap_model):
        raise ValueError(
            f"{m.path}: written with scene_load downscale={m.downscale}, colmap_model={m.colmap_model!r}, "
            f"but this stage has downscale={cfg.downscale}, colmap_model={cfg.colmap_model!r}; {rerun}"
        )
    scene = load_scene(m.root, source=m.source, cfg=cfg, name=m.name, images=m.images)
    got = [(c.name, c.width, c.height) for c in scene.cameras]
    want = [(f.name, f.width, f.height) for f in m.frames]
    if got != want:
        raise ValueError(
            f"{m.path}: the scene folder {m.root} changed since the manifest was written "
            f"({len(want)} frames then, {len(got)} now); {rerun}"
        )
    changed = [
        c.image_path
        for c, f in zip(scene.cameras, m.frames, strict=True)
        if f.image_sha256 is not None and content_sha256(c.image_path) != f.image_sha256
    ]
    if changed:
        raise ValueError(
            f"{m.path}: {len(changed)} image(s) of scene {m.name!r} changed since the manifest was written "
            f"(same names and sizes, other contents: {', '.join(map(str, changed[:3]))}"
            f"{' …' if len(changed) > 3 else ''}); what was made of the old images no longer fits them: "
            f"{rerun}, which remakes everything after it"
        )
    if m.points is not None:
        from ccl.scene.ply import read_ply_points

        points = Path(m.points["path"])
        if not points.is_file() or content_sha256(points) != recorded_sha256(m.points):
            what = "is missing" if not points.is_file() else "changed since the manifest was written"
            raise ValueError(f"{m.path}: its points file {points} {what}; {rerun}")
        xyz, rgb = read_ply_points(points)
        scene = dataclasses.replace(scene, points_xyz=xyz, points_rgb=rgb)
    return scene
