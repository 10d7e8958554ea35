"""What decides the SfM work before it runs: the config, the preflight of a photo folder, which scenes
lack points, the matcher and camera choices, the alignment the benchmark measures with, and the points
file a manifest hands to the colour field."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scene.scene_testkit import make_colmap_scene, make_nerf_scene

from ccl.config import validate_config
from ccl.preflight import find_problems
from ccl.scene import SceneLoadConfig, load_scene_from_manifest, write_manifest
from ccl.scene.ply import write_ply_points
from ccl.sfm import SfmConfig, centre_errors, scene_lacks_points, similarity_align
from ccl.sfm.ops import camera_groups, choose_matcher


def _photos(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(
            folder / f"IMG_{i}.jpg"
        )
    return folder


def _config(tmp_path, scenes, **extra):
    return validate_config({"data_root": str(tmp_path), "scenes": scenes, **extra}, source="test.yaml")


def _scene_problems(cfg):
    """The scenes' problems (a real scene's sim backends are refused too: not what these tests test)."""
    return [p for p in find_problems(cfg) if p.key.startswith("scenes.")]


def test_vocab_tree_without_a_tree_is_refused_with_the_alternatives(tmp_path):
    from ccl.sfm.config import check_vocab_tree

    with pytest.raises(ValueError, match="vocab_tree_path.*downloads nothing.*sequential"):
        check_vocab_tree(SfmConfig(matcher="vocab_tree"))
    with pytest.raises(FileNotFoundError, match="tree.bin: sfm.vocab_tree_path names no file"):
        check_vocab_tree(SfmConfig(matcher="vocab_tree", vocab_tree_path=str(tmp_path / "tree.bin")))
    _photos(tmp_path / "garden", 4)
    scenes = {"garden": {"source": "images", "path": "garden", "protocol": "none"}}
    (problem,) = [
        p
        for p in find_problems(_config(tmp_path, scenes, sfm={"matcher": "vocab_tree"}))
        if p.key.startswith("sfm")
    ]
    assert problem.key == "sfm.vocab_tree_path" and "downloads nothing" in problem.what
    with pytest.raises(ValueError, match=r"sfm.camera_mode = 'per_lens'"):
        SfmConfig(camera_mode="per_lens")


def test_preflight_refuses_a_photo_folder_of_two_naming_the_scene_key(tmp_path):
    _photos(tmp_path / "garden", 2)
    cfg = _config(tmp_path, {"garden": {"source": "images", "path": "garden", "protocol": "none"}})
    (problem,) = _scene_problems(cfg)
    assert problem.key == "scenes.garden.path"
    assert (
        "IMG_0.jpg" in problem.what and "at least 3" in problem.what and "scenes.garden.path" in problem.what
    )


def test_preflight_passes_a_photo_folder_and_checks_single_camera_sizes(tmp_path):
    folder = _photos(tmp_path / "garden", 4)
    entry = {"garden": {"source": "images", "path": "garden", "protocol": "none"}}
    assert _scene_problems(_config(tmp_path, entry)) == []
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(folder / "IMG_9.jpg")
    (problem,) = _scene_problems(_config(tmp_path, entry, sfm={"camera_mode": "single"}))
    assert "IMG_9.jpg (80x60)" in problem.what and "per_size" in problem.what


def test_a_photo_folder_that_is_a_colmap_scene_is_loaded_as_one(tmp_path):
    make_colmap_scene(tmp_path / "garden", n=8)
    cfg = _config(tmp_path, {"garden": {"source": "images", "path": "garden", "protocol": "none"}})
    assert _scene_problems(cfg) == []
    out = write_manifest(
        tmp_path / "scene.json", name="garden", entry=cfg["scenes"]["garden"] | {"path": str(tmp_path / "garden")},
        source_dir=tmp_path / "garden", cfg=SceneLoadConfig(),
    )  # fmt: skip
    doc = json.loads(out.read_text())
    assert (
        doc["source"] == "colmap" and doc["sfm_from"] == str(tmp_path / "garden") and len(doc["frames"]) == 8
    )


def test_scenes_without_points_are_found(tmp_path):
    make_nerf_scene(tmp_path / "with", ply="points3d.ply")
    make_nerf_scene(tmp_path / "without", ply=None)
    make_colmap_scene(tmp_path / "colmap", fmt="bin")
    assert not scene_lacks_points({"source": "nerf", "path": str(tmp_path / "with")})
    assert scene_lacks_points({"source": "nerf", "path": str(tmp_path / "without")})
    assert not scene_lacks_points({"source": "colmap", "path": str(tmp_path / "colmap")})
    (tmp_path / "colmap" / "sparse" / "0" / "points3D.bin").write_bytes((0).to_bytes(8, "little"))
    assert scene_lacks_points({"source": "colmap", "path": str(tmp_path / "colmap")})
    assert not scene_lacks_points({"source": "synthetic"})


def test_which_scenes_need_sfm(tmp_path):
    from ccl.sfm.plan import colmap_photo_scenes, photo_scenes, pointless_scenes

    _photos(tmp_path / "garden", 4)
    make_colmap_scene(tmp_path / "colmap_photos", n=4)
    make_nerf_scene(tmp_path / "posed", ply=None)
    make_nerf_scene(tmp_path / "with_points")
    scenes = {
        "garden": {"source": "images", "path": "garden"},
        "colmap_photos": {"source": "images", "path": "colmap_photos"},
        "posed": {"source": "nerf", "path": "posed"},
        "with_points": {"source": "nerf", "path": "with_points"},
        "syn": {"source": "synthetic"},
    }
    cfg = _config(tmp_path, scenes)
    assert photo_scenes(cfg) == ["garden"] and colmap_photo_scenes(cfg) == ["colmap_photos"]
    assert pointless_scenes(cfg) == ["posed"]
    assert pointless_scenes(_config(tmp_path, scenes, sfm={"triangulate": False})) == []


def test_matcher_and_camera_choices():
    auto = {"matcher": "auto", "exhaustive_max_images": 100, "vocab_tree_path": ""}
    assert choose_matcher(100, **auto) == "exhaustive"
    assert choose_matcher(101, **auto) == "sequential"
    assert choose_matcher(101, **{**auto, "vocab_tree_path": "tree.bin"}) == "vocab_tree"
    assert choose_matcher(5, **{**auto, "matcher": "sequential"}) == "sequential"
    names = ["a/1.jpg", "a/2.jpg", "b/3.jpg", "b/4.jpg"]
    sizes = [(4, 3), (3, 4), (4, 3), (4, 3)]
    assert camera_groups(names, sizes, camera_mode="per_size") == [[0, 2, 3], [1]]
    assert camera_groups(names, sizes, camera_mode="per_folder") == [[0], [1], [2, 3]]
    assert camera_groups(names, sizes, camera_mode="single") == [[0, 1, 2, 3]]
    assert camera_groups(names, sizes, camera_mode="per_image") == [[0], [1], [2], [3]]


def test_similarity_alignment_undoes_a_scaled_rigid_motion():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    y = 0.3 * x @ q.T + np.array([1.0, -2.0, 0.5])
    s, R, t = similarity_align(x, y)
    assert s == pytest.approx(0.3) and np.allclose(R, q) and np.allclose(t, [1.0, -2.0, 0.5])
    moved = y.copy()
    moved[3] += [0.1, 0, 0]  # one camera off: its error stands out, in the target's units
    err = centre_errors(x, moved)
    assert err.argmax() == 3 and 0.05 < err[3] < 0.1


def test_the_manifest_hands_a_points_file_to_the_scene_and_refuses_a_changed_one(tmp_path):
    root = make_nerf_scene(tmp_path / "scene", ply=None)
    ply = write_ply_points(tmp_path / "points3D.ply", np.ones((5, 3)), np.full((5, 3), 7, np.uint8))
    cfg = SceneLoadConfig()
    entry = {"source": "nerf", "path": str(root)}
    m = write_manifest(
        tmp_path / "scene.json", name="s", entry=entry, source_dir=root, cfg=cfg, points_file=ply
    )
    assert json.loads(m.read_text())["n_points"] == 5
    scene = load_scene_from_manifest(m, cfg=cfg)
    assert scene.points_xyz.shape == (5, 3) and (scene.points_rgb == 7).all()
    write_ply_points(ply, np.zeros((6, 3)), np.zeros((6, 3), np.uint8))
    with pytest.raises(ValueError, match="points file .* changed since the manifest was written"):
        load_scene_from_manifest(m, cfg=cfg)
