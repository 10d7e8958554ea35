"""Exported scenes (ccl.synthetic.export_layout): the tiny synthetic scene in the LERF-OVS and 3D-OVS
release layouts, read back by the loaders and label readers the benchmark configs use, and the
workflow rule that makes them."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from workflow_testkit import checkpoint_files

from ccl.config import REPO_ROOT
from ccl.eval.labels import read_lerf_label_dir, read_lerf_labels
from ccl.eval.ovs3d import frame_of_index, read_3dovs_view, read_classes, view_folders
from ccl.io import open_h5_for_read
from ccl.scene import SceneLoadConfig, load_scene, read_manifest, write_manifest
from ccl.synthetic import GroundTruth, export_layout
from ccl.synthetic.export import DEPTH_TOLERANCE, visible_points

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CFG = SceneLoadConfig()
NAME = "toy"
N_VIEWS = 8  # tests/conftest.py TINY_SYNTHETIC
EVAL_FRAMES = ["frame_00000", "frame_00005"]  # label_every = 5 by default
# Geometry is float64 end to end (JSON floats, COLMAP doubles); the quaternion round trip costs ~1e-16.
GEOMETRY_TOL = 1e-9
# Five label files of LangSplat's LERF-OVS release, byte for byte.
RELEASED_LABELS = REPO_ROOT / "tests" / "fixtures" / "lerf_ovs_labels"


def exported(i: int) -> str:
    return f"frame_{i + 1:05d}"


def tree_state(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every file under `root`: (sha256, mtime_ns, mode)."""
    return {
        str(p.relative_to(root)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
            p.stat().st_mode,
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def exports(tiny_scene_dir, tmp_path_factory) -> dict[str, Path]:
    """Both layouts of the tiny scene, each its own data root; the source folder's state before."""
    before = tree_state(tiny_scene_dir)
    root = tmp_path_factory.mktemp("exports")
    out = {
        layout: export_layout(tiny_scene_dir, root / layout, layout=layout, name=NAME)
        for layout in ("lerf_ovs", "3dovs")
    }
    out["source_before"] = before
    return out


@pytest.fixture(scope="module")
def source_scene(tiny_scene_dir):
    return load_scene(tiny_scene_dir, source="synthetic", cfg=CFG, name="tiny")


# --- layout and provenance ------------------------------------------------------------------------------


def test_lerf_ovs_layout_is_the_release_file_set(exports):
    root = exports["lerf_ovs"]
    assert sorted(p.name for p in root.iterdir()) == ["export.json", "label", NAME]
    assert sorted(p.name for p in (root / NAME).iterdir()) == ["images", "sparse"]
    assert sorted(p.name for p in (root / NAME / "images").iterdir()) == [
        f"{exported(i)}.jpg" for i in range(N_VIEWS)
    ]
    assert sorted(p.name for p in (root / NAME / "sparse" / "0").iterdir()) == [
        "cameras.bin",
        "images.bin",
        "points3D.bin",
    ]
    labelled = [exported(int(f[-5:])) for f in EVAL_FRAMES]
    assert sorted(p.name for p in (root / "label" / NAME).iterdir()) == sorted(
        [f"{n}.json" for n in labelled] + [f"{n}.jpg" for n in labelled]
    )
    with Image.open(root / NAME / "images" / "frame_00001.jpg") as im:
        assert im.format == "JPEG" and im.size == (64, 48) and im.mode == "RGB"


def test_3dovs_layout_is_the_release_file_set(exports):
    root = exports["3dovs"]
    assert sorted(p.name for p in root.iterdir()) == ["export.json", NAME]
    assert sorted(p.name for p in (root / NAME).iterdir()) == ["images", "segmentations", "sparse"]
    seg = root / NAME / "segmentations"
    assert sorted(p.name for p in seg.iterdir()) == ["00", "05", "classes.txt"]


@pytest.mark.parametrize("layout", ["lerf_ovs", "3dovs"])
def test_export_json_records_source_mapping_and_entry(exports, tiny_scene_dir, layout):
    doc = json.loads((exports[layout] / "export.json").read_text())
    src = Path(tiny_scene_dir)
    assert (
        doc["layout"] == layout and doc["name"] == NAME and doc["generator"] == "ccl.synthetic.export_layout"
    )
    assert doc["source"]["scene_dir"] == str(src.absolute())
    assert doc["source"]["scene_json_sha256"] == hashlib.sha256((src / "scene.json").read_bytes()).hexdigest()
    assert doc["source"]["gt_h5_sha256"] == hashlib.sha256((src / "gt.h5").read_bytes()).hexdigest()
    scene_json = json.loads((src / "scene.json").read_text())
    assert doc["source"]["seed"] == scene_json["seed"] and doc["source"]["params"] == scene_json["params"]
    assert [(f["source"], f["name"]) for f in doc["frames"]] == [
        (f"frame_{i:05d}", exported(i)) for i in range(N_VIEWS)
    ]
    for f in doc["frames"]:
        assert (exports[layout] / f["image"]).is_file()
    entry = doc["scene_entry"]
    assert entry["source"] == "colmap" and entry["path"] == NAME and entry["protocol"] == layout
    assert (exports[layout] / entry["labels"]).is_dir()
    assert doc["colmap"]["n_points"] == 4000 and doc["colmap"]["n_images"] == N_VIEWS


# --- cameras, points and the COLMAP model ----------------------------------------------------------------


@pytest.mark.parametrize("layout", ["lerf_ovs", "3dovs"])
def test_cameras_and_points_round_trip_through_load_scene(exports, source_scene, layout):
    scene = load_scene(exports[layout] / NAME, source="colmap", cfg=CFG)

    assert scene.frame_names == [exported(i) for i in range(N_VIEWS)]
    for src, cam in zip(source_scene.cameras, scene.cameras, strict=True):
        assert cam.name == exported(int(src.name[-5:]))
        assert (cam.width, cam.height) == (src.width, src.height) and cam.distortion is None
        np.testing.assert_allclose(cam.K, src.K, rtol=0, atol=GEOMETRY_TOL)
        np.testing.assert_allclose(cam.world_to_camera, src.world_to_camera, rtol=0, atol=GEOMETRY_TOL)
    np.testing.assert_array_equal(scene.points_xyz, source_scene.points_xyz)
    np.testing.assert_array_equal(scene.points_rgb, source_scene.points_rgb)


def _read_colmap_binary(folder: Path) -> tuple[dict, dict, dict]:
    """An independent reader of COLMAP's binary model, observations and tracks included."""
    data = (folder / "cameras.bin").read_bytes()
    (n,), pos = struct.unpack_from("<Q", data), 8
    cameras = {}
    for _ in range(n):
        cid, model, w, h = struct.unpack_from("<iiQQ", data, pos)
        pos += 24
        assert model == 1, "PINHOLE"
        cameras[cid] = (w, h, struct.unpack_from("<4d", data, pos))
        pos += 32
    assert pos == len(data)
    data = (folder / "images.bin").read_bytes()
    (n,), pos = struct.unpack_from("<Q", data), 8
    images = {}
    for _ in range(n):
        iid, *pose, cid = struct.unpack_from("<I7dI", data, pos)
        pos += 64
        end = data.index(b"\0", pos)
        name = data[pos:end].decode()
        (m,) = struct.unpack_from("<Q", data, end + 1)
        pos = end + 9
        obs = [struct.unpack_from("<ddq", data, pos + 24 * k) for k in range(m)]
        pos += 24 * m
        images[iid] = (name, np.array(pose[:4]), np.array(pose[4:]), cid, obs)
    assert pos == len(data)
    data = (folder / "points3D.bin").read_bytes()
    (n,), pos = struct.unpack_from("<Q", data), 8
    points = {}
    for _ in range(n):
        pid, x, y, z, r, g, b, err, t = struct.unpack_from("<Q3d3BdQ", data, pos)
        pos += struct.calcsize("<Q3d3BdQ")  # 51 bytes: little-endian, no padding
        track = [struct.unpack_from("<II", data, pos + 8 * k) for k in range(t)]
        pos += 8 * t
        points[pid] = (np.array([x, y, z]), (r, g, b), err, track)
    assert pos == len(data)
    return cameras, images, points


def test_binary_model_has_consistent_tracks_at_the_points_projections(exports, source_scene, tiny_scene_dir):
    cameras, images, points = _read_colmap_binary(exports["lerf_ovs"] / NAME / "sparse" / "0")
    assert list(cameras) == [1] and cameras[1][:2] == (64, 48)
    K = source_scene.cameras[0].K
    np.testing.assert_allclose(cameras[1][2], [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], rtol=0, atol=GEOMETRY_TOL)
    assert sorted(im[0] for im in images.values()) == [f"{exported(i)}.jpg" for i in range(N_VIEWS)]
    src_cams = {exported(int(c.name[-5:])) + ".jpg": c for c in source_scene.cameras}
    with open_h5_for_read(Path(tiny_scene_dir) / "gt.h5", kind="gt") as gt:
        depth = {name: gt[c.name]["depth"][()] for name, c in src_cams.items()}
    # Tracks and POINTS2D name each other: track (image, idx) -> that image's idx-th point is this one.
    for pid, (_xyz, _rgb, err, track) in points.items():
        assert err == 0.0  # observations are the exact projections
        assert all(images[iid][4][idx][2] == pid for iid, idx in track)
    assert sum(len(p[3]) for p in points.values()) == sum(len(im[4]) for im in images.values())
    for name, *_, obs in images.values():
        xy, ids = np.array([o[:2] for o in obs]), np.array([o[2] for o in obs])
        assert np.all(np.diff(ids) > 0)  # in point order, each point once
        uv, z = src_cams[name].project(np.stack([points[i][0] for i in ids]))
        np.testing.assert_allclose(xy, uv, rtol=0, atol=GEOMETRY_TOL)
        # seen: the ground-truth surface at that pixel is the point's
        at = depth[name][xy[:, 1].astype(int), xy[:, 0].astype(int)]
        assert np.all(np.abs(at - z) <= DEPTH_TOLERANCE * z), name
    # Each point was sampled on a surface one view saw: (nearly) every one has a track, most several.
    lengths = np.array([len(p[3]) for p in points.values()])
    assert (lengths > 0).mean() > 0.99 and np.median(lengths) >= 2


def test_pycolmap_reads_the_exported_model(exports, source_scene):
    import pycolmap

    rec = pycolmap.Reconstruction()
    rec.read(str(exports["3dovs"] / NAME / "sparse" / "0"))
    assert rec.num_images() == N_VIEWS and rec.num_points3D() == len(source_scene.points_xyz)
    for src in source_scene.cameras:
        im = rec.find_image_with_name(f"{exported(int(src.name[-5:]))}.jpg")
        np.testing.assert_allclose(
            im.cam_from_world().matrix(), src.world_to_camera[:3], rtol=0, atol=GEOMETRY_TOL
        )
        assert im.num_points3D > 0
    np.testing.assert_allclose(
        rec.cameras[1].calibration_matrix(), source_scene.cameras[0].K, atol=GEOMETRY_TOL
    )
    _, _, points = _read_colmap_binary(exports["3dovs"] / NAME / "sparse" / "0")
    assert rec.compute_num_observations() == sum(len(p[3]) for p in points.values())


def test_visible_points_by_depth_on_a_closed_form_view(source_scene):
    """A camera's own depth map: a point on it is seen, one behind it or outside the image is not."""
    cam = source_scene.cameras[0]
    depth = np.full((cam.height, cam.width), 2.0, np.float32)
    depth[:, :8] = np.inf  # nothing there (sky)
    c2w = cam.camera_to_world

    def at(u, v, z):  # the world point at pixel (u, v), camera depth z
        ray = np.linalg.inv(cam.K) @ np.array([u, v, 1.0])
        return (c2w[:3, :3] @ (ray * z)) + c2w[:3, 3]

    pts = np.stack(
        [
            at(30.5, 20.5, 2.0),
            at(30.5, 20.5, 2.02),
            at(30.5, 20.5, 2.3),
            at(3.5, 20.5, 2.0),
            at(70.0, 20.5, 2.0),
            at(30.5, 20.5, -2.0),
        ]
    )
    seen, uv = visible_points(cam, pts, depth, depth_tolerance=DEPTH_TOLERANCE)
    assert seen.tolist() == [True, True, False, False, False, False]
    np.testing.assert_allclose(uv[0], [30.5, 20.5], atol=1e-9)


# --- labels ---------------------------------------------------------------------------------------------


def _released_serialisation(doc: dict) -> bytes:
    return json.dumps(doc, indent=4).replace("\n", "\r\n").encode()


def test_label_files_are_written_as_the_released_ones(exports):
    """Byte for byte the serialisation of the released files (tests/fixtures: 4-space indent, CRLF, no
    final newline), with their keys in their order."""
    released = [json.loads(p.read_bytes()) for p in sorted(RELEASED_LABELS.glob("*/*.json"))]
    assert len(released) == 5
    for p, doc in zip(sorted(RELEASED_LABELS.glob("*/*.json")), released, strict=True):
        assert p.read_bytes() == _released_serialisation(doc), p
    info_keys = {tuple(d["info"]) for d in released}
    object_keys = {tuple(o) for d in released for o in d["objects"]}
    assert len(info_keys) == 1 and len(object_keys) == 1

    for path in sorted((exports["lerf_ovs"] / "label" / NAME).glob("*.json")):
        raw = path.read_bytes()
        doc = json.loads(raw)
        assert raw == _released_serialisation(doc), path
        assert list(doc) == ["info", "objects"] and {tuple(doc["info"])} == info_keys
        assert doc["info"]["name"] == f"{path.stem}.jpg"
        assert (doc["info"]["width"], doc["info"]["height"], doc["info"]["depth"]) == (64, 48, 3)
        assert doc["objects"], path
        for obj in doc["objects"]:
            assert {tuple(obj)} == object_keys
            assert isinstance(obj["layer"], float) and isinstance(obj["area"], float)
            assert obj["iscrowd"] == 0 and obj["note"] == ""


def test_label_masks_equal_the_synthetic_labels(exports, tiny_scene_dir):
    ours = read_lerf_label_dir(exports["lerf_ovs"] / "label" / NAME)
    assert [f.frame for f in ours] == [exported(int(f[-5:])) for f in EVAL_FRAMES]
    for fl in ours:
        src = read_lerf_labels(Path(tiny_scene_dir) / "labels" / f"frame_{int(fl.frame[-5:]) - 1:05d}.json")
        assert (fl.height, fl.width) == (src.height, src.width)
        assert list(fl.categories) == list(src.categories)
        for name, cat in fl.categories.items():
            np.testing.assert_array_equal(cat.mask, src.categories[name].mask)
            np.testing.assert_array_equal(cat.boxes_xyxy, src.categories[name].boxes_xyxy)
            assert cat.mask.any()


def test_label_jpg_is_the_frame_image(exports, tiny_scene_dir):
    root = exports["lerf_ovs"]
    for jpg in sorted((root / "label" / NAME).glob("*.jpg")):
        assert jpg.read_bytes() == (root / NAME / "images" / jpg.name).read_bytes()
        png = Path(tiny_scene_dir) / "images" / f"frame_{int(jpg.stem[-5:]) - 1:05d}.png"
        a = np.asarray(Image.open(jpg).convert("RGB"), np.float64)
        b = np.asarray(Image.open(png).convert("RGB"), np.float64)
        psnr = 10 * np.log10(255.0**2 / np.mean((a - b) ** 2))
        assert psnr > 35, (jpg.name, psnr)  # quality 95, 4:4:4


def test_3dovs_segmentations_read_back_as_the_ground_truth(exports, tiny_scene_dir):
    seg = exports["3dovs"] / NAME / "segmentations"
    scene = load_scene(exports["3dovs"] / NAME, source="colmap", cfg=CFG)
    gt = GroundTruth(Path(tiny_scene_dir) / "gt.h5", [f"frame_{i:05d}" for i in range(N_VIEWS)])
    try:
        classes = read_classes(seg)
        assert classes == tuple(sorted(gt.categories))
        category_of_object = {o["id"]: gt.categories[o["category_id"]] for o in gt.objects}
        views = view_folders(seg)
        assert [i for i, _ in views] == [int(f[-5:]) for f in EVAL_FRAMES]
        names = [c.image_path.name for c in scene.cameras]
        for index, folder in views:
            frame = frame_of_index(index, names, where=str(folder))
            assert frame == exported(index)
            labels = read_3dovs_view(folder, index, frame, classes, (64, 48))
            whole = gt.read_frame(f"frame_{index:05d}").whole_id
            for c, name in enumerate(classes):
                ids = [k for k, v in category_of_object.items() if v == name]
                np.testing.assert_array_equal(
                    labels.masks[c], np.isin(whole, ids), err_msg=f"{folder}/{name}"
                )
            assert labels.masks.any(axis=(1, 2)).sum() >= 2  # the view shows objects
    finally:
        gt.close()


@pytest.mark.parametrize("layout", ["lerf_ovs", "3dovs"])
def test_manifest_of_the_exported_scene_with_its_labels(exports, tmp_path, layout):
    root = exports[layout]
    entry = json.loads((root / "export.json").read_text())["scene_entry"]
    entry = {**entry, "path": str(root / entry["path"]), "labels": str(root / entry["labels"])}
    out = write_manifest(
        tmp_path / "scene.json", name="exported", entry=entry, source_dir=entry["path"], cfg=CFG
    )
    m = read_manifest(out)
    assert m.source == "colmap" and m.protocol == layout and m.labels == Path(entry["labels"])
    assert m.n_points == 4000 and [f.name for f in m.frames] == [exported(i) for i in range(N_VIEWS)]


# --- files: atomic, readable, the source untouched ---------------------------------------------------------


def test_export_leaves_the_source_untouched_and_writes_readable_files(exports, tiny_scene_dir):
    assert tree_state(tiny_scene_dir) == exports["source_before"]
    umask = os.umask(0)
    os.umask(umask)
    for layout in ("lerf_ovs", "3dovs"):
        root = exports[layout]
        assert stat.S_IMODE(root.stat().st_mode) == 0o777 & ~umask
        for p in root.rglob("*"):
            want = 0o777 & ~umask if p.is_dir() else 0o666 & ~umask
            assert stat.S_IMODE(p.stat().st_mode) == want, p


def test_reexport_replaces_and_a_failed_export_leaves_the_old_one(tiny_scene_dir, tmp_path, monkeypatch):
    out = tmp_path / "data" / "lerf"
    export_layout(tiny_scene_dir, out, layout="lerf_ovs", name="a")
    export_layout(tiny_scene_dir, out, layout="lerf_ovs", name="b")
    assert sorted(p.name for p in out.iterdir()) == ["b", "export.json", "label"]
    assert [p.name for p in out.parent.iterdir()] == ["lerf"]  # no temporary or old folder left

    import ccl.synthetic.export as export_module

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_module, "_write_lerf_labels", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        export_layout(tiny_scene_dir, out, layout="lerf_ovs", name="c")
    assert sorted(p.name for p in out.iterdir()) == ["b", "export.json", "label"]
    assert [p.name for p in out.parent.iterdir()] == ["lerf"]


def test_bad_requests_are_refused_before_any_file(exports, tiny_scene_dir, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"layout = 'scannet'.*'lerf_ovs', '3dovs'"):
        export_layout(tiny_scene_dir, out, layout="scannet", name=NAME)
    for name in ("a/b", "", "label"):
        with pytest.raises(ValueError, match=r"name = .*plain folder name"):
            export_layout(tiny_scene_dir, out, layout="lerf_ovs", name=name)
    with pytest.raises(
        FileNotFoundError, match=r"scene\.json: not found.*not a synthetic scene.*synthetic_scene"
    ):
        export_layout(exports["lerf_ovs"] / NAME, out, layout="lerf_ovs", name=NAME)
    for inside in (Path(tiny_scene_dir) / "export", Path(tiny_scene_dir).parent):
        with pytest.raises(ValueError, match=r"out_root = .*inside \(or around\) the scene folder"):
            export_layout(tiny_scene_dir, inside, layout="3dovs", name=NAME)
    assert not out.exists() and not (Path(tiny_scene_dir) / "export").exists()


# --- the workflow rule ----------------------------------------------------------------------------------


def _snakemake(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run(
        [SNAKEMAKE, "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(workdir / "config.yaml"), *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_dry_run_plans_export_scene_for_the_asked_target_only(tmp_path):
    config = {
        "scenes": {"synthetic": {"source": "synthetic"}},
        "synthetic": {"n_views": 8, "width": 64, "height": 48},
    }
    r = _snakemake(tmp_path, config, "-n", "results/synthetic/export/lerf_ovs")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    stats = r.stdout[r.stdout.index("Job stats:") :]
    assert "export_scene           1" in stats and "synthetic_scene        1" in stats, stats
    assert "wildcards: scene=synthetic, layout=lerf_ovs" in r.stdout

    r = _snakemake(tmp_path, config, "-n")  # not part of the default targets
    assert r.returncode == 0 and "export_scene" not in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]


def test_export_target_of_a_real_scene_is_refused_with_the_reason(exports, tmp_path):
    """The lerf_ovs benchmark config on the exported scene (as the end-to-end run uses it): asking to
    export that colmap scene stops the plan with a message that says why and what to ask for."""
    config = yaml.safe_load((REPO_ROOT / "configs" / "lerf_ovs.yaml").read_text())
    config["data_root"] = str(exports["lerf_ovs"])
    config["scenes"] = {
        "exported": json.loads((exports["lerf_ovs"] / "export.json").read_text())["scene_entry"]
    }
    config["codebook"] = {"n_prototypes": 16}
    checkpoint_files(tmp_path, config)  # where the config names them: a plan reads none
    r = _snakemake(tmp_path, config, "-n", "results/exported/export/lerf_ovs")
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "only synthetic scenes can be exported" in out and "'exported' has source 'colmap'" in out, out[
        -3000:
    ]
