"""Rules poses and triangulate_points in the workflow, run as its user runs it, from a copy of the
repository root: a photo folder and a scene with poses but no points plan SfM before their manifests
(and the colour field after them); a photo folder that is a COLMAP scene plans none and says so; a
photo folder and a COLMAP model without points3D (tests/sfm/textured_room.py) run through both rules
to manifests, and a second run has nothing to do; and (slow) the synthetic scene exported as images only and as transforms.json without points runs through
poses and triangulate_points to manifests whose scenes carry the recovered poses and the points."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image
from scene.scene_testkit import make_colmap_scene, make_nerf_scene
from sfm import textured_room as room
from workflow_testkit import checkpoint_files, job_counts, repo_copy, snakemake

REAL_BACKENDS = {  # the preflight refuses simulators on real scenes: checkpoints in the official formats
    "masks": {"backend": "sam", "sam_checkpoint": "ckpt/sam_vit_h_4b8939.pth"},
    "tracks": {"backend": "sam2", "sam2_checkpoint": "ckpt/sam2.1_hiera_large.pt"},
    "features": {"backend": "open_clip", "pretrained": "ckpt/open_clip_pytorch_model.bin"},
}


FIRST_LINE_S = 20  # a long job's first line comes within this many seconds of its start (issue 24.5)


def _first_line(repo, job: str) -> tuple[float, str]:
    """(seconds from the start of `job` ("rule/wildcards") to its log's first line that says what it does,
    after the line every job starts with; that line). The start is the log's last line ("done in", as the
    job ends) less the job's wall time in Snakemake's benchmark."""
    from datetime import datetime

    lines = [line for line in (repo / "logs" / f"{job}.log").read_text().splitlines() if line[:4].isdigit()]
    assert ": started (" in lines[0], lines[0]  # ccl.runlog.script_logging, before any import
    first, last = (datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in (lines[1], lines[-1]))
    wall_s = float((repo / "benchmarks" / f"{job}.tsv").read_text().splitlines()[1].split("\t")[0])
    return (first - last).total_seconds() + wall_s, lines[1]


def _run_config(repo, scenes, **extra):
    config = {
        "data_root": "data",
        "scenes": scenes,
        "codebook": {"n_prototypes": 8},
        **REAL_BACKENDS,
        **extra,
    }
    checkpoint_files(repo, config)
    (repo / "run.yaml").write_text(yaml.safe_dump(config))


def test_sfm_scenes_plan_poses_and_triangulation_before_their_manifests(tmp_path):
    repo = repo_copy(tmp_path / "repo")
    photos = repo / "data" / "garden"
    photos.mkdir(parents=True)
    for i in range(5):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(
            photos / f"IMG_{i}.jpg"
        )
    make_nerf_scene(repo / "data" / "posed", n=8, ply=None)
    make_colmap_scene(repo / "data" / "colmap_photos", n=8, fmt="bin")
    _run_config(
        repo,
        {
            "garden": {"source": "images", "path": "garden", "protocol": "none"},
            "posed": {"source": "nerf", "path": "posed", "protocol": "none"},
            "colmap_photos": {"source": "images", "path": "colmap_photos", "protocol": "none"},
        },
    )
    r = snakemake(repo, "-n", "--configfile", "run.yaml")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    jobs = job_counts(r.stdout)
    assert jobs["poses"] == 1 and jobs["triangulate_points"] == 1 and jobs["scene_manifest"] == 3
    assert jobs["train_rgb"] == 3
    assert "results/garden/sfm/model" in r.stdout and "results/posed/sfm/points3D.ply" in r.stdout
    assert "colmap_photos: its folder holds a COLMAP scene already" in r.stderr


def test_a_photo_folder_and_a_colmap_model_without_points_run_through_sfm_to_their_manifests(tmp_path):
    from ccl.scene import SceneLoadConfig, load_scene_from_manifest

    repo = repo_copy(tmp_path / "repo")
    room.write_photos(repo / "data" / "room_photos")
    room.write_colmap_without_points(repo / "data" / "room_posed")
    _run_config(
        repo,
        {
            "photos": {"source": "images", "path": "room_photos", "protocol": "none"},
            "posed": {"source": "colmap", "path": "room_posed", "protocol": "none"},
        },
    )
    targets = ["results/photos/scene.json", "results/posed/scene.json"]
    r = snakemake(repo, *targets, "--cores", "2", "--configfile", "run.yaml", timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((repo / "results/photos/sfm/poses.json").read_text())
    assert report["images_registered"] == report["images_total"] == 10, report
    assert "poses: 10 of 10 photos registered" in (repo / "logs/poses/photos.log").read_text()
    for job, first in (("poses/photos", "poses: reading the photos"),
                       ("triangulate_points/posed", "triangulate_points: reading the scene")):  # fmt: skip
        after_s, line = _first_line(repo, job)  # said at once, before the work (issue 24.5)
        assert first in line and after_s <= FIRST_LINE_S, (job, after_s, line)
    manifest = json.loads((repo / "results/photos/scene.json").read_text())
    assert manifest["source"] == "colmap" and manifest["sfm_from"].endswith("data/room_photos")
    assert [f["name"] for f in manifest["frames"]] == [f"IMG_{i:04d}" for i in range(10)]
    points = json.loads((repo / "results/posed/sfm/points.json").read_text())
    assert points["points"] > 500 and points["images_with_points"] == 10, points
    posed = load_scene_from_manifest(repo / "results/posed/scene.json", cfg=SceneLoadConfig())
    assert len(posed.points_xyz) == points["points"]  # what train_rgb starts from
    assert np.median(room.distance_to_room(posed.points_xyz)) < 0.005 * room.HALF
    r = snakemake(repo, *targets, "-n", "--configfile", "run.yaml")
    assert "Nothing to be done" in r.stdout + r.stderr


# The synthetic scene at a size where SIFT finds enough features to register every view: at the
# default 160x120 it finds ~100 per view and nothing registers; at 640x480, 30 views (12° apart) do.
# Fewer views (24) left most unregistered: the scene's smooth shading and low-contrast procedural
# textures give ~600 SIFT features per view.
EXPORT = {"n_views": 30, "width": 640, "height": 480, "supersample": 1}


@pytest.mark.slow
def test_synthetic_photos_and_posed_scene_run_through_sfm(tmp_path):
    repo = repo_copy(tmp_path / "repo")
    (repo / "export.yaml").write_text(
        yaml.safe_dump({"scenes": {"syn": {"source": "synthetic"}}, "synthetic": EXPORT})
    )
    r = snakemake(repo, "results/syn/scene", "--cores", "2", "--configfile", "export.yaml")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    scene = repo / "results" / "syn" / "scene"
    shutil.copytree(scene / "images", repo / "data" / "photos")  # images only
    posed = repo / "data" / "posed"  # transforms.json without a point cloud
    shutil.copytree(scene / "images", posed / "images")
    meta = json.loads((scene / "transforms.json").read_text())
    del meta["ply_file_path"]
    (posed / "transforms.json").write_text(json.dumps(meta))
    _run_config(
        repo,
        {
            "photos": {"source": "images", "path": "photos", "protocol": "none"},
            "posed": {"source": "nerf", "path": "posed", "protocol": "none"},
        },
        scene_load={"downscale": 4},
    )
    targets = ["results/photos/scene.json", "results/posed/scene.json"]
    r = snakemake(repo, *targets, "--cores", "2", "--configfile", "run.yaml", timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((repo / "results/photos/sfm/poses.json").read_text())
    assert report["images_total"] == 30 and report["images_registered"] >= 27, report
    assert report["points"] > 100 and report["mean_reprojection_error_px"] < 2.0
    photos_manifest = json.loads((repo / "results/photos/scene.json").read_text())
    assert photos_manifest["source"] == "colmap" and photos_manifest["sfm_from"].endswith("data/photos")
    assert len(photos_manifest["frames"]) == report["images_registered"]
    assert photos_manifest["frames"][0]["width"] * 4 <= 700  # read at scene_load.downscale 4
    points = json.loads((repo / "results/posed/sfm/points.json").read_text())
    assert points["points"] > 100 and points["images_with_points"] >= 27, points
    from ccl.scene import SceneLoadConfig, load_scene_from_manifest

    posed_scene = load_scene_from_manifest(
        repo / "results/posed/scene.json", cfg=SceneLoadConfig(downscale=4)
    )
    assert len(posed_scene.points_xyz) == points["points"]  # what train_rgb starts from
    r = snakemake(repo, *targets, "-n", "--configfile", "run.yaml")
    assert "Nothing to be done" in r.stdout + r.stderr
