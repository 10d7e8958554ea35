"""`export_layout`: the synthetic scene in a benchmark's release layout, for runs with `source: colmap`.

Two layouts (docs/contracts.md, "Exported scenes"), both under `out_root` (the configs' `data_root`):

    lerf_ovs  <name>/images/frame_00001.jpg …, <name>/sparse/0/{cameras,images,points3D}.bin,
              label/<name>/frame_XXXXX.json + frame_XXXXX.jpg (LangSplat's release of LERF-OVS)
    3dovs     <name>/images/…, <name>/sparse/0/…, <name>/segmentations/classes.txt and
              <name>/segmentations/<index>/<class>.png (the 3D-OVS release)

Frames are renamed as LERF names them, frame_00001, frame_00002, … in the synthetic frame order (so
LangSplat's `int(number) - 1` and 3D-OVS's sorted-list index are that order); export.json in
`out_root` records the mapping and the source. The COLMAP model is binary, one PINHOLE camera, every
point of points3d.ply with its track: the views where it projects onto a pixel whose ground-truth depth
agrees with its own within `depth_tolerance` (relative), observed at its exact projection (error 0).
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ccl.io.atomic import atomic_directory
from ccl.scene.colmap import ColmapCamera, ColmapImage, ColmapTracks
from ccl.scene.types import Camera, Scene

log = logging.getLogger(__name__)

EXPORT_LAYOUTS = ("lerf_ovs", "3dovs")
EXPORT_FORMAT_VERSION = 1
JPEG_QUALITY = 95
# Relative depth agreement for a point to be observed in a view: the points carry noise of std
# `synthetic.point_noise` (0.004 at depth ~1.6) and land anywhere inside a pixel of another view.
DEPTH_TOLERANCE = 0.02
SYNTHETIC_GENERATOR = "ccl.synthetic.make_scene"


@dataclass(frozen=True, eq=False)
class _Source:
    """The synthetic scene folder, read and checked."""

    root: Path
    meta: dict  # scene.json
    scene: Scene  # loaded with source "synthetic", full resolution
    exported_names: dict[str, str]  # synthetic frame name -> exported name (frame_00001, …)


def export_layout(
    scene_dir: str | os.PathLike,
    out_root: str | os.PathLike,
    *,
    layout: str,
    name: str,
    jpeg_quality: int = JPEG_QUALITY,
    depth_tolerance: float = DEPTH_TOLERANCE,
) -> Path:
    """Write the synthetic scene at `scene_dir` as scene `name` of a `layout` data root at `out_root`.

    `out_root` is built under a temporary sibling name and renamed when complete (replacing an older
    one); `scene_dir` is only read. Returns `out_root`.
    """
    if layout not in EXPORT_LAYOUTS:
        raise ValueError(
            f"layout = {layout!r}: expected one of {list(EXPORT_LAYOUTS)} (the benchmark to export for)"
        )
    if (
        not name
        or name in (".", "..")
        or Path(name).name != name
        or (layout == "lerf_ovs" and name == "label")
    ):
        raise ValueError(
            f"name = {name!r}: expected a plain folder name (no '/'; not 'label', the labels' folder "
            "beside the scene in the LERF-OVS layout)"
        )
    if not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality = {jpeg_quality!r}: expected an integer in [1, 100]")
    if not depth_tolerance > 0:
        raise ValueError(f"depth_tolerance = {depth_tolerance!r}: expected a positive relative tolerance")
    source = _read_source(Path(scene_dir))
    out_root = Path(out_root)
    src, dst = source.root.resolve(), out_root.resolve()
    if dst == src or dst.is_relative_to(src) or src.is_relative_to(dst):
        raise ValueError(
            f"out_root = {out_root}: inside (or around) the scene folder {source.root}, which an export never "
            "writes to; export to a folder of its own, e.g. results/<scene>/export/<layout>"
        )
    with atomic_directory(out_root) as tmp:
        record = _write_export(
            tmp, source, layout=layout, name=name, jpeg_quality=jpeg_quality, depth_tolerance=depth_tolerance
        )
        (tmp / "export.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    log.info("exported %s as %s scene %r to %s", source.root, layout, name, out_root)
    return out_root


def synthetic_only(
    scene: str, source: str, scene_dir: str, *, layout: str, synthetic_scenes: list[str]
) -> str:
    """`scene_dir` (the workflow's input of rule export_scene) when `scene` is synthetic; a ValueError that
    says why and what to ask for otherwise: only the ground truth of a synthetic scene makes labels."""
    if source != "synthetic":
        raise ValueError(
            f"results/{scene}/export/{layout}: only synthetic scenes can be exported, scene {scene!r} has source "
            f"{source!r}; ask for the export of a synthetic scene (results/<scene>/export/{layout}; this "
            f"config's synthetic scenes: {', '.join(synthetic_scenes) or 'none'})"
        )
    return scene_dir


def _read_source(root: Path) -> _Source:
    from ccl.scene import SceneLoadConfig, load_scene

    scene_json = root / "scene.json"
    fix = "export a folder that rule synthetic_scene (ccl.synthetic.make_scene) wrote, e.g. results/synthetic/scene"
    if not scene_json.is_file():
        raise FileNotFoundError(f"{scene_json}: not found; {root} is not a synthetic scene folder: {fix}")
    meta = json.loads(scene_json.read_text(encoding="utf-8"))
    if meta.get("generator") != SYNTHETIC_GENERATOR:
        raise ValueError(
            f"{scene_json}: generator {meta.get('generator')!r}, expected {SYNTHETIC_GENERATOR!r}: only synthetic "
            f"scenes can be exported (their ground truth makes the labels); {fix}"
        )
    for rel in ("gt.h5", "points3d.ply", "labels"):
        if not (root / rel).exists():
            raise FileNotFoundError(
                f"{root / rel}: missing from the synthetic scene folder; rebuild it: {fix}"
            )
    # Full resolution, whatever the run's scene_load: the export is the release, not a run's view of it.
    scene = load_scene(root, source="synthetic", cfg=SceneLoadConfig(), name=root.name)
    frames = list(meta["frames"])
    if sorted(frames) != sorted(scene.frame_names):
        raise ValueError(
            f"{scene_json}: lists frames {frames[:3]}… but transforms.json has {scene.frame_names[:3]}…; the "
            f"folder is inconsistent: {fix}"
        )
    exported = {frame: f"frame_{k + 1:05d}" for k, frame in enumerate(frames)}
    return _Source(root.absolute(), meta, scene, exported)


def _write_export(
    tmp: Path, source: _Source, *, layout: str, name: str, jpeg_quality: int, depth_tolerance: float
) -> dict:
    import ccl
    from ccl.io import file_sha256, open_h5_for_read
    from ccl.scene.colmap import write_model
    from ccl.synthetic.gt import GT_KIND

    scene_root = tmp / name
    (scene_root / "images").mkdir(parents=True)
    cams = {c.name: c for c in source.scene.cameras}
    frames = list(source.exported_names)
    jpgs = {}
    for frame in frames:
        jpgs[frame] = _jpeg(cams[frame].image_path, jpeg_quality)
        (scene_root / "images" / f"{source.exported_names[frame]}.jpg").write_bytes(jpgs[frame])

    gt = open_h5_for_read(source.root / "gt.h5", kind=GT_KIND)
    try:
        categories = json.loads(gt.attrs["categories"])
        depth = {frame: gt[frame]["depth"][()] for frame in frames}
        cameras, images, tracks = colmap_model(
            [cams[f] for f in frames], [source.exported_names[f] + ".jpg" for f in frames],
            source.scene.points_xyz, [depth[f] for f in frames], depth_tolerance=depth_tolerance,
        )  # fmt: skip
        xyz, rgb = source.scene.points_xyz, source.scene.points_rgb
        write_model(scene_root / "sparse" / "0", cameras, images, xyz, rgb, format="bin", tracks=tracks)
        eval_frames = list(source.meta["eval_frames"])
        if layout == "lerf_ovs":
            labels_rel = f"label/{name}"
            _write_lerf_labels(tmp / labels_rel, source, eval_frames, jpgs)
            per_frame = {f: {"label": f"{labels_rel}/{source.exported_names[f]}.json"} for f in eval_frames}
        else:
            labels_rel = f"{name}/segmentations"
            category_id = {f: gt[f]["category_id"][()] for f in eval_frames}
            views = _write_3dovs_segmentations(tmp / labels_rel, frames, eval_frames, category_id, categories)
            per_frame = {f: {"view": f"{labels_rel}/{views[f]}"} for f in eval_frames}
    finally:
        gt.close()

    n_seen = np.bincount(tracks.point_index, minlength=len(source.scene.points_xyz))
    log.info(
        "COLMAP model: %d images, %d points, %d observations (track length mean %.1f, %d points unseen)",
        len(images), len(n_seen), len(tracks.point_index), n_seen.mean() if len(n_seen) else 0.0,
        int((n_seen == 0).sum()),
    )  # fmt: skip
    return {
        "format_version": EXPORT_FORMAT_VERSION,
        "generator": "ccl.synthetic.export_layout",
        "ccl_version": ccl.__version__,
        "layout": layout,
        "name": name,
        # The scene's entry in a config whose data_root is this folder (configs/lerf_ovs.yaml, 3dovs.yaml).
        "scene_entry": {"source": "colmap", "path": name, "labels": labels_rel, "protocol": layout},
        "source": {
            "scene_dir": str(source.root),
            "scene_json_sha256": file_sha256(source.root / "scene.json"),
            "gt_h5_sha256": file_sha256(source.root / "gt.h5"),
            "seed": source.meta.get("seed"),
            "params": source.meta.get("params"),
        },
        "jpeg_quality": jpeg_quality,
        "depth_tolerance": depth_tolerance,
        "colmap": {
            "model": f"{name}/sparse/0",
            "n_images": len(images),
            "n_points": len(n_seen),
            "n_observations": len(tracks.point_index),
            "n_points_unseen": int((n_seen == 0).sum()),
        },
        "frames": [
            {
                "source": f,
                "name": source.exported_names[f],
                "image": f"{name}/images/{source.exported_names[f]}.jpg",
                **per_frame.get(f, {}),
            }
            for f in frames
        ],
    }


def _jpeg(png_path: Path, quality: int) -> bytes:
    from PIL import Image

    with Image.open(png_path) as im:
        rgb = im.convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=quality, subsampling=0)  # 4:4:4: small images keep their edges
    return buf.getvalue()


def colmap_model(
    cameras: list[Camera],
    image_names: list[str],
    points_xyz: np.ndarray,
    depths: list[np.ndarray],
    *,
    depth_tolerance: float,
) -> tuple[list[ColmapCamera], list[ColmapImage], ColmapTracks]:
    """(cameras, images, tracks) of a COLMAP model of posed pinhole `cameras` [V] sharing one K and size.

    Image i is `image_names[i]` with id i + 1; point p is observed in a view when it lies in front of
    the camera, projects inside the image, and `depths[i]` [H, W] (camera z, inf = nothing) at that
    pixel is within `depth_tolerance` · z of its own depth.
    """
    from ccl.scene import ops

    first = cameras[0]
    for c in cameras:
        if (c.width, c.height) != (first.width, first.height) or not np.array_equal(c.K, first.K):
            raise ValueError(
                f"camera {c.name}: intrinsics differ from {first.name}'s; one shared camera expected"
            )
    K = first.K
    if K[0, 1] != 0.0:
        raise ValueError(f"camera {first.name}: skewed K {K.tolist()} has no COLMAP PINHOLE equivalent")
    cam = ColmapCamera(
        1, "PINHOLE", first.width, first.height, np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
    )
    images, point_index, image_id, xy = [], [], [], []
    xyz = np.asarray(points_xyz, np.float64).reshape(-1, 3)
    for i, (c, image_name, depth) in enumerate(zip(cameras, image_names, depths, strict=True)):
        w2c = c.world_to_camera
        images.append(ColmapImage(i + 1, ops.rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3].copy(), 1, image_name))
        seen, uv = visible_points(c, xyz, depth, depth_tolerance=depth_tolerance)
        point_index.append(np.flatnonzero(seen))
        image_id.append(np.full(int(seen.sum()), i + 1, np.int64))
        xy.append(uv[seen])
    tracks = ColmapTracks(
        np.concatenate(point_index), np.concatenate(image_id), np.concatenate(xy).reshape(-1, 2)
    )
    return [cam], images, tracks


def visible_points(
    camera: Camera, xyz: np.ndarray, depth: np.ndarray, *, depth_tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """(seen [P] bool, uv [P, 2] float64): which points `camera` sees, by the depth map [H, W] at their pixel."""
    uv, z = camera.project(xyz)
    h, w = depth.shape
    with np.errstate(invalid="ignore"):
        col, row = np.floor(uv[:, 0]), np.floor(uv[:, 1])
        inside = (z > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    at = np.full(len(z), np.inf)
    at[inside] = depth[row[inside].astype(np.int64), col[inside].astype(np.int64)]
    with np.errstate(invalid="ignore"):
        seen = inside & np.isfinite(at) & (np.abs(at - z) <= depth_tolerance * z)
    return seen, uv


def _write_lerf_labels(folder: Path, source: _Source, eval_frames: list[str], jpgs: dict[str, bytes]) -> None:
    """label/<name>/: per evaluated frame its label JSON (the synthetic one renamed) and its image, as
    LangSplat released them: 4-space indent, CRLF line endings, no final newline."""
    folder.mkdir(parents=True)
    for frame in eval_frames:
        src = source.root / "labels" / f"{frame}.json"
        if not src.is_file():
            raise FileNotFoundError(
                f"{src}: scene.json lists {frame} as an evaluation frame but it has no label; rebuild the "
                "synthetic scene (rule synthetic_scene)"
            )
        doc = json.loads(src.read_text(encoding="utf-8"))
        new = source.exported_names[frame]
        doc["info"]["name"] = f"{new}.jpg"
        text = json.dumps(doc, indent=4).replace("\n", "\r\n")
        (folder / f"{new}.json").write_bytes(text.encode("utf-8"))
        (folder / f"{new}.jpg").write_bytes(jpgs[frame])


def _write_3dovs_segmentations(
    folder: Path,
    frames: list[str],
    eval_frames: list[str],
    category_id: dict[str, np.ndarray],
    categories: list[str],
) -> dict[str, str]:
    """segmentations/: classes.txt (every category, sorted) and per evaluated frame a folder named by
    its index in the sorted image list holding `<class>.png` (255 = the class, 0 elsewhere)."""
    from PIL import Image

    bad = [c for c in categories if Path(c).name != c or not c.strip()]
    if bad:
        raise ValueError(f"categories {bad}: not usable as 3D-OVS mask file names (<class>.png)")
    folder.mkdir(parents=True)
    (folder / "classes.txt").write_text("".join(f"{c}\n" for c in sorted(categories)))
    digits = max(2, len(str(len(frames) - 1)))  # 3D-OVS names its view folders 00, 03, …
    views = {}
    for frame in eval_frames:
        views[frame] = f"{frames.index(frame):0{digits}d}"  # exported names sort in the synthetic order
        view = folder / views[frame]
        view.mkdir()
        for cid, c in enumerate(categories):
            mask = np.where(category_id[frame] == cid, 255, 0).astype(np.uint8)
            Image.fromarray(mask).save(view / f"{c}.png")
    return views
