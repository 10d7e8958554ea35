"""COLMAP sparse models, text and binary: our own small reader, and a writer (fixtures, exported scenes).

The layouts are COLMAP's (src/colmap/scene/reconstruction_io.cc). The reader keeps only what a scene
needs: cameras (model, size, parameters), images (pose, camera, name) and the points' positions and
colours; 2D observations and tracks are skipped. The writer writes them when given (`ColmapTracks`),
as COLMAP does, else empty tracks. pycolmap reads the same files and is the tests' cross-check.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ccl.scene.ops import COLMAP_MODEL_IDS, COLMAP_MODELS

MODEL_FILES = ("cameras", "images", "points3D")


@dataclass(frozen=True, eq=False)
class ColmapCamera:
    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # [n] float64, COLMAP's parameter order for the model


@dataclass(frozen=True, eq=False)
class ColmapImage:
    image_id: int
    qvec: np.ndarray  # [4] float64, (w, x, y, z) of the world-to-camera rotation
    tvec: np.ndarray  # [3] float64, world-to-camera translation
    camera_id: int
    name: str  # path relative to the image folder


@dataclass(frozen=True, eq=False)
class ColmapTracks:
    """The points' 2D observations: observation i sees point row `point_index[i]` in image `image_id[i]`."""

    point_index: np.ndarray  # [O] int64, row of the model's points_xyz
    image_id: np.ndarray  # [O] int64, ColmapImage.image_id
    xy: np.ndarray  # [O, 2] float64, pixel coordinates (COLMAP's: image corner at (0, 0))


@dataclass(frozen=True, eq=False)
class ColmapModel:
    folder: Path
    format: str  # "bin" or "txt"
    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points_xyz: np.ndarray  # [P, 3] float64
    points_rgb: np.ndarray  # [P, 3] uint8

    def file(self, kind: str) -> Path:
        return self.folder / f"{kind}.{self.format}"


class _Reader:
    """Sequential reads from a binary file's bytes with an error naming the file when it ends early."""

    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError(
                f"{self.path}: ends after {len(self.data)} bytes while reading a record at byte {self.pos}; "
                "the file is truncated or not a COLMAP binary model: re-export it with "
                "`colmap model_converter --output_type BIN` (or TXT)"
            )
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def skip(self, n: int) -> None:
        self.read(f"<{n}x")

    def read_cstring(self) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise ValueError(f"{self.path}: an image name is not terminated; the file is truncated")
        s = self.data[self.pos : end].decode("utf-8")
        self.pos = end + 1
        return s


def _text_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped line) of every line that is not a comment; empty lines kept."""
    out = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            s = line.strip()
            if not s.startswith("#"):
                out.append((i, s))
    return out


def _bad_line(path: Path, lineno: int, what: str) -> ValueError:
    return ValueError(
        f"{path}:{lineno}: {what}; the file is not a COLMAP text model: re-export it with "
        "`colmap model_converter --output_type TXT`"
    )


def read_cameras_text(path: Path) -> dict[int, ColmapCamera]:
    cams = {}
    for lineno, s in _text_lines(path):
        if not s:
            continue
        t = s.split()
        try:
            cid, model, w, h = int(t[0]), t[1], int(t[2]), int(t[3])
            params = np.array([float(v) for v in t[4:]])
        except (IndexError, ValueError):
            raise _bad_line(path, lineno, "expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]") from None
        cams[cid] = ColmapCamera(cid, model, w, h, params)
    return cams


def read_cameras_binary(path: Path) -> dict[int, ColmapCamera]:
    r = _Reader(path)
    cams = {}
    (n,) = r.read("<Q")
    for _ in range(n):
        cid, model_id, w, h = r.read("<iiQQ")
        if model_id not in COLMAP_MODELS:
            raise ValueError(
                f"{path}: camera {cid} has model id {model_id}, which no COLMAP version defines; "
                "the file is corrupt or from an unknown tool: re-export it with COLMAP"
            )
        model, n_params = COLMAP_MODELS[model_id]
        params = np.array(r.read(f"<{n_params}d"))
        cams[cid] = ColmapCamera(cid, model, w, h, params)
    return cams


def read_images_text(path: Path) -> dict[int, ColmapImage]:
    images = {}
    lines = _text_lines(path)
    i = 0
    while i < len(lines):
        lineno, s = lines[i]
        i += 1
        if not s:
            continue
        t = s.split(maxsplit=9)
        try:
            iid = int(t[0])
            qvec = np.array([float(v) for v in t[1:5]])
            tvec = np.array([float(v) for v in t[5:8]])
            cid = int(t[8])
            name = t[9]
        except (IndexError, ValueError):
            raise _bad_line(path, lineno, "expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME") from None
        images[iid] = ColmapImage(iid, qvec, tvec, cid, name)
        i += 1  # the POINTS2D line that follows (possibly empty)
    return images


def read_images_binary(path: Path) -> dict[int, ColmapImage]:
    r = _Reader(path)
    images = {}
    (n,) = r.read("<Q")
    for _ in range(n):
        iid, qw, qx, qy, qz, tx, ty, tz, cid = r.read("<I7dI")
        name = r.read_cstring()
        (n_points2d,) = r.read("<Q")
        r.skip(24 * n_points2d)  # x, y double; point3D_id int64
        images[iid] = ColmapImage(iid, np.array([qw, qx, qy, qz]), np.array([tx, ty, tz]), cid, name)
    return images


def read_points3d_text(path: Path) -> tuple[np.ndarray, np.ndarray]:
    xyz, rgb = [], []
    for lineno, s in _text_lines(path):
        if not s:
            continue
        t = s.split(maxsplit=8)
        try:
            xyz.append((float(t[1]), float(t[2]), float(t[3])))
            rgb.append((int(t[4]), int(t[5]), int(t[6])))
        except (IndexError, ValueError):
            raise _bad_line(path, lineno, "expected POINT3D_ID X Y Z R G B ERROR TRACK[]") from None
    return np.array(xyz, np.float64).reshape(-1, 3), np.array(rgb, np.uint8).reshape(-1, 3)


def read_points3d_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    r = _Reader(path)
    (n,) = r.read("<Q")
    xyz = np.empty((n, 3), np.float64)
    rgb = np.empty((n, 3), np.uint8)
    for i in range(n):
        _pid, x, y, z, cr, cg, cb, _err, track_len = r.read("<Q3d3BdQ")
        xyz[i] = (x, y, z)
        rgb[i] = (cr, cg, cb)
        r.skip(8 * track_len)  # image_id int32, point2D_idx int32
    return xyz, rgb


def detect_format(folder: Path) -> str | None:
    """'bin' or 'txt' for the first complete set of cameras/images files (binary preferred), else None."""
    for ext in ("bin", "txt"):
        if all((folder / f"{k}.{ext}").is_file() for k in MODEL_FILES[:2]):
            return ext
    return None


def read_model(folder: str | Path) -> ColmapModel:
    """Read cameras, images and points3D (optional: no file → no points) from a model folder."""
    folder = Path(folder)
    fmt = detect_format(folder)
    if fmt is None:
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise FileNotFoundError(
            f"{folder}: no COLMAP model here (need cameras.bin + images.bin, or cameras.txt + images.txt; "
            f"found {present or 'nothing'}); point the scene's `path` at the folder holding images/ and "
            "sparse/0, or set `scene_load.colmap_model` to the model folder inside it"
        )
    if fmt == "bin":
        cameras = read_cameras_binary(folder / "cameras.bin")
        images = read_images_binary(folder / "images.bin")
        points_file, read_points = folder / "points3D.bin", read_points3d_binary
    else:
        cameras = read_cameras_text(folder / "cameras.txt")
        images = read_images_text(folder / "images.txt")
        points_file, read_points = folder / "points3D.txt", read_points3d_text
    if points_file.is_file():
        xyz, rgb = read_points(points_file)
    else:
        xyz, rgb = np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    return ColmapModel(folder, fmt, cameras, images, xyz, rgb)


def write_model(
    folder: str | Path,
    cameras: list[ColmapCamera],
    images: list[ColmapImage],
    points_xyz: np.ndarray,
    points_rgb: np.ndarray,
    *,
    format: str = "txt",
    tracks: ColmapTracks | None = None,
    points_error: np.ndarray | None = None,
) -> Path:
    """Write a COLMAP model; point i gets id i + 1.

    Without `tracks` the images have no 2D observations and the points empty tracks (fixtures). With
    them, each image lists its observations as POINTS2D in point order and each point's track names
    (image id, index in that image's POINTS2D), as COLMAP writes a reconstruction. `points_error` [P] is
    the points' mean reprojection error in pixels (default 0).
    """
    if format not in ("txt", "bin"):
        raise ValueError(f"format must be 'txt' or 'bin', got {format!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    xyz = np.asarray(points_xyz, np.float64).reshape(-1, 3)
    rgb = np.asarray(points_rgb, np.uint8).reshape(-1, 3)
    error = np.zeros(len(xyz)) if points_error is None else np.asarray(points_error, np.float64).reshape(-1)
    if len(rgb) != len(xyz) or len(error) != len(xyz):
        raise ValueError(
            f"write_model: {len(xyz)} points but {len(rgb)} colours and {len(error)} errors; give one per point"
        )
    points2d, point_tracks = _observation_lists(images, len(xyz), tracks)
    if format == "txt":
        cam_lines = ["# Camera list with one line of data per camera:"]
        cam_lines += [
            f"{c.camera_id} {c.model} {c.width} {c.height} " + " ".join(repr(float(p)) for p in c.params)
            for c in cameras
        ]
        img_lines = ["# Image list with two lines of data per image:"]
        for im in images:
            vals = " ".join(repr(float(v)) for v in (*im.qvec, *im.tvec))
            xy, ids = points2d[im.image_id]
            obs = " ".join(
                f"{x!r} {y!r} {pid}" for (x, y), pid in zip(xy.tolist(), ids.tolist(), strict=True)
            )
            img_lines += [f"{im.image_id} {vals} {im.camera_id} {im.name}", obs]
        pt_lines = ["# 3D point list with one line of data per point:"]
        for i, (p, c, e) in enumerate(zip(xyz.tolist(), rgb.tolist(), error.tolist(), strict=True)):
            track = "".join(f" {iid} {idx}" for iid, idx in point_tracks[i].tolist())
            pt_lines.append(f"{i + 1} {p[0]!r} {p[1]!r} {p[2]!r} {c[0]} {c[1]} {c[2]} {e!r}{track}")
        (folder / "cameras.txt").write_text("\n".join(cam_lines) + "\n")
        (folder / "images.txt").write_text("\n".join(img_lines) + "\n")
        (folder / "points3D.txt").write_text("\n".join(pt_lines) + "\n")
        return folder
    out = [struct.pack("<Q", len(cameras))]
    for c in cameras:
        out.append(struct.pack("<iiQQ", c.camera_id, COLMAP_MODEL_IDS[c.model], c.width, c.height))
        out.append(struct.pack(f"<{len(c.params)}d", *c.params))
    (folder / "cameras.bin").write_bytes(b"".join(out))
    out = [struct.pack("<Q", len(images))]
    for im in images:
        xy, ids = points2d[im.image_id]
        rows = np.empty(len(ids), dtype=[("x", "<f8"), ("y", "<f8"), ("point3D_id", "<u8")])
        rows["x"], rows["y"], rows["point3D_id"] = xy[:, 0], xy[:, 1], ids
        out.append(struct.pack("<I7dI", im.image_id, *im.qvec, *im.tvec, im.camera_id))
        out.append(im.name.encode("utf-8") + b"\x00" + struct.pack("<Q", len(ids)) + rows.tobytes())
    (folder / "images.bin").write_bytes(b"".join(out))
    out = [struct.pack("<Q", len(xyz))]
    for i, (p, c, e) in enumerate(zip(xyz.tolist(), rgb.tolist(), error.tolist(), strict=True)):
        track = point_tracks[i]
        out.append(struct.pack("<Q3d3BdQ", i + 1, *p, *c, e, len(track)))
        out.append(track.astype("<u4").tobytes())  # (image_id, point2D_idx) pairs
    (folder / "points3D.bin").write_bytes(b"".join(out))
    return folder


def _observation_lists(
    images: list[ColmapImage], n_points: int, tracks: ColmapTracks | None
) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """Per image id its POINTS2D (xy [N, 2], point ids [N]); per point its track [T, 2] (image id, index)."""
    if tracks is None:
        tracks = ColmapTracks(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 2)))
    point = np.asarray(tracks.point_index, np.int64).reshape(-1)
    image = np.asarray(tracks.image_id, np.int64).reshape(-1)
    xy = np.asarray(tracks.xy, np.float64).reshape(-1, 2)
    if not len(point) == len(image) == len(xy):
        raise ValueError(
            f"ColmapTracks: {len(point)} point indices, {len(image)} image ids and {len(xy)} positions; "
            "give one of each per observation"
        )
    known = np.array([im.image_id for im in images], np.int64)
    if len(point) and (point.min() < 0 or point.max() >= n_points or not np.isin(image, known).all()):
        raise ValueError(
            f"ColmapTracks: observations name points outside 0..{n_points - 1} or images other than "
            f"{known.tolist()}; every observation must name a written point and image"
        )
    order = np.lexsort((point, image))  # by image, then point: each image's POINTS2D in point order
    point, image, xy = point[order], image[order], xy[order]
    starts = np.searchsorted(image, known)
    ends = np.searchsorted(image, known, side="right")
    index_in_image = np.arange(len(image)) - np.searchsorted(image, image)  # POINT2D_IDX
    points2d = {int(i): (xy[s:e], point[s:e] + 1) for i, s, e in zip(known, starts, ends, strict=True)}
    by_point = np.lexsort((image, point))
    bounds = np.searchsorted(point[by_point], np.arange(n_points + 1))
    pairs = np.stack([image[by_point], index_in_image[by_point]], axis=1)
    return points2d, [pairs[bounds[k] : bounds[k + 1]] for k in range(n_points)]
