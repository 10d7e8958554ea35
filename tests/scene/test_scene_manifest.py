"""The scene manifest (results/{scene}/scene.json): what write_manifest records and checks, what
load_scene_from_manifest refuses, and the workflow script that calls it."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scene_testkit import K_GT, H, W, gt_poses, make_colmap_scene, make_nerf_scene, write_image

from ccl.config import REPO_ROOT
from ccl.io import file_sha256
from ccl.scene import SceneLoadConfig, load_scene_from_manifest, read_manifest, write_manifest

CFG = SceneLoadConfig()


def test_colmap_manifest_records_the_checked_scene(tmp_path):
    root = make_colmap_scene(tmp_path / "figurines")
    (tmp_path / "labels").mkdir()
    entry = {
        "source": "colmap",
        "path": str(root),
        "labels": str(tmp_path / "labels"),
        "protocol": "lerf_ovs",
    }
    cfg = SceneLoadConfig(downscale=2)
    out = write_manifest(
        tmp_path / "results" / "fig" / "scene.json", name="fig", entry=entry, source_dir=root, cfg=cfg
    )

    doc = json.loads(out.read_text())
    assert doc["name"] == "fig" and doc["source"] == "colmap" and doc["protocol"] == "lerf_ovs"
    assert doc["root"] == str(root.absolute()) and doc["labels"] == str((tmp_path / "labels").absolute())
    assert doc["downscale"] == 2 and doc["n_points"] == 20 and doc["images"] == "images"
    np.testing.assert_allclose(doc["frames"][0].pop("world_to_camera"), gt_poses(4)[0], atol=1e-12)
    assert doc["frames"][0] == {
        "name": "frame_00001",
        "image_path": str(root.absolute() / "images" / "frame_00001.jpg"),
        "width": W // 2,
        "height": H // 2,
        "image_sha256": file_sha256(root / "images" / "frame_00001.jpg"),
        # the camera the stages see, so the results render without the images
        "K": (K_GT * [[0.5], [0.5], [1]]).tolist(),  # and world_to_camera, compared above
    }
    assert [f["name"] for f in doc["frames"]] == [f"frame_{i:05d}" for i in range(1, 5)]
    assert not list(out.parent.glob(".*tmp*")), "no temporary file left beside the manifest"

    scene = load_scene_from_manifest(out, cfg=cfg)
    assert scene.name == "fig" and len(scene.cameras) == 4 and scene.cameras[0].width == W // 2
    assert read_manifest(out).labels == (tmp_path / "labels").absolute()


def test_synthetic_manifest_takes_labels_from_the_scene_folder(tmp_path):
    root = make_nerf_scene(tmp_path / "results" / "toy" / "scene")
    (root / "labels").mkdir()
    out = write_manifest(
        tmp_path / "scene.json", name="toy", entry={"source": "synthetic"}, source_dir=root, cfg=CFG
    )
    doc = json.loads(out.read_text())
    assert doc["labels"] == str(root.absolute() / "labels") and doc["source"] == "synthetic"
    assert doc["protocol"] == "lerf_ovs" and doc["n_points"] == 20


def test_manifest_refuses_a_changed_config_or_folder(tmp_path):
    root = make_nerf_scene(tmp_path / "scene")
    out = write_manifest(
        tmp_path / "scene.json", name="s", entry={"source": "nerf"}, source_dir=root, cfg=CFG
    )
    with pytest.raises(
        ValueError, match=r"scene\.json: written with scene_load downscale=1.*downscale=2.*rerun"
    ):
        load_scene_from_manifest(out, cfg=SceneLoadConfig(downscale=2))
    (root / "images" / "frame_00003.png").unlink()
    with pytest.raises(ValueError, match=r"scene\.json: the scene folder .* changed.*4 frames then, 3 now"):
        load_scene_from_manifest(out, cfg=CFG)
    with pytest.raises(FileNotFoundError, match=r"nothing\.json: scene manifest not found.*scene_manifest"):
        load_scene_from_manifest(tmp_path / "nothing.json", cfg=CFG)


def test_missing_labels_folder_stops_before_loading(tmp_path):
    root = make_colmap_scene(tmp_path / "scene")
    entry = {"source": "colmap", "path": str(root), "labels": str(tmp_path / "no_labels")}
    with pytest.raises(FileNotFoundError) as e:
        write_manifest(tmp_path / "scene.json", name="s", entry=entry, source_dir=root, cfg=CFG)
    assert (
        "no_labels" in str(e.value)
        and "labels folder not found" in str(e.value)
        and "`labels`" in str(e.value)
    )
    assert not (tmp_path / "scene.json").exists()


def test_bad_scene_leaves_no_manifest(tmp_path):
    root = make_colmap_scene(tmp_path / "scene")
    write_image(root / "images" / "frame_00002.jpg", W + 1, H)
    with pytest.raises(ValueError, match="frame_00002.jpg"):
        write_manifest(
            tmp_path / "scene.json", name="s", entry={"source": "colmap"}, source_dir=root, cfg=CFG
        )
    assert not (tmp_path / "scene.json").exists()


def test_workflow_script_writes_the_manifest(tmp_path):
    """workflow/scripts/scene_manifest.py with the object Snakemake injects."""
    root = make_colmap_scene(tmp_path / "data" / "ramen")
    smk = SimpleNamespace(
        log=[str(tmp_path / "logs" / "scene_manifest" / "ramen.log")],
        output=SimpleNamespace(manifest=str(tmp_path / "results" / "ramen" / "scene.json")),
        wildcards=SimpleNamespace(scene="ramen"),
        threads=1,
        params=SimpleNamespace(
            entry={"source": "colmap", "path": str(root), "protocol": "lerf_ovs", "images": "images"},
            source_dir=str(root),
            scene_load={"downscale": 2, "colmap_model": "sparse/0"},
        ),
    )
    runpy.run_path(
        str(REPO_ROOT / "workflow" / "scripts" / "scene_manifest.py"), init_globals={"snakemake": smk}
    )
    doc = json.loads(Path(smk.output.manifest).read_text())
    assert doc["name"] == "ramen" and len(doc["frames"]) == 4 and doc["downscale"] == 2
    assert "scene ramen (colmap" in Path(smk.log[0]).read_text()
