"""NeRF / instant-ngp transforms.json: OpenGL poses, shared and per-frame intrinsics, camera_angle_x,
file paths without extensions, missing frames, PLY points, and the refusals of bad input."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from scene_testkit import (
    K_GT,
    POINT,
    H,
    W,
    gt_poses,
    make_nerf_scene,
    nerf_frames,
    points,
    project,
    write_image,
)

from ccl.scene import SceneLoadConfig, load_scene, ops

CFG = SceneLoadConfig()
PX_TOL = 1e-9  # float64 geometry through a JSON round trip (repr keeps every digit)


def _rewrite(root, fn):
    path = root / "transforms.json"
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


def _check_projections(scene, K, poses):
    for cam, w2c in zip(scene.cameras, poses, strict=True):
        uv, z = cam.project(POINT)
        assert z[0] > 0
        np.testing.assert_allclose(uv[0], project(K, w2c, POINT), atol=PX_TOL)


@pytest.mark.parametrize("binary_ply", [False, True])
def test_known_point_projects_to_the_same_pixel(tmp_path, binary_ply):
    root = make_nerf_scene(tmp_path / "scene", binary_ply=binary_ply)
    scene = load_scene(root, source="nerf", cfg=CFG)

    assert scene.frame_names == [f"frame_{i:05d}" for i in range(4)]
    assert scene.cameras[0].image_path == root.absolute() / "images" / "frame_00000.png"
    _check_projections(scene, K_GT, gt_poses(4))
    xyz, rgb = points()
    np.testing.assert_array_equal(scene.points_xyz, xyz)
    np.testing.assert_array_equal(scene.points_rgb, rgb)


def test_opengl_to_opencv_convention():
    """A NeRF camera at +z looking down -z (identity rotation in OpenGL) looks along world -z in OpenCV."""
    c2w_gl = np.eye(4)
    c2w_gl[2, 3] = 3.0
    w2c = ops.opengl_c2w_to_opencv_w2c(c2w_gl)
    # The world origin is 3 units in front (+z camera), world +y is up, so image-down is world -y.
    np.testing.assert_allclose(w2c @ [0, 0, 0, 1], [0, 0, 3, 1])
    np.testing.assert_allclose(w2c[:3, :3] @ [0, 1, 0], [0, -1, 0])
    np.testing.assert_allclose(ops.opencv_w2c_to_opengl_c2w(w2c), c2w_gl)


def test_synthetic_source_reads_the_same_folder(tmp_path):
    root = make_nerf_scene(tmp_path / "scene")
    scene = load_scene(root, source="synthetic", cfg=CFG, name="toy")
    assert scene.name == "toy"
    _check_projections(scene, K_GT, gt_poses(4))


def test_instant_ngp_style_camera_angle_x_only(tmp_path):
    """NeRF-synthetic / instant-ngp style: camera_angle_x only (no w, h, fl, c), RGBA PNGs, paths
    without extension, frames out of order (r_10 before r_2)."""
    root = tmp_path / "lego"
    angle = 0.6911112070083618  # NeRF-synthetic's value
    names = ["r_10", "r_2", "r_0"]
    for i, n in enumerate(names):
        write_image(root / "train" / f"{n}.png", seed=i, channels=4)
    poses = gt_poses(3)
    meta = {"camera_angle_x": angle, "frames": nerf_frames(poses, [f"./train/{n}" for n in names])}
    (root / "transforms.json").write_text(json.dumps(meta))

    scene = load_scene(root, source="nerf", cfg=CFG)

    assert scene.frame_names == ["r_0", "r_2", "r_10"]  # numbers compare as numbers
    f = 0.5 * W / math.tan(0.5 * angle)
    K = ops.intrinsics_matrix(f, f, W / 2, H / 2)
    _check_projections(scene, K, [poses[2], poses[1], poses[0]])
    assert len(scene.points_xyz) == 0 and scene.points_rgb.shape == (0, 3)


def test_per_frame_intrinsics_and_tolerated_keys(tmp_path):
    root = make_nerf_scene(tmp_path / "scene", ply=None)
    Ks = [ops.intrinsics_matrix(60.0 + i, 61.0 + i, 30.0 + i, 24.0) for i in range(4)]

    def edit(meta):
        for k in ("fl_x", "fl_y", "cx", "cy"):
            del meta[k]
        meta.update(aabb_scale=16, scale=0.33, offset=[0.5, 0.5, 0.5], k1=0.0, k2=0.0, p1=0.0, p2=0.0)
        for fr, K in zip(meta["frames"], Ks, strict=True):
            fr.update(fl_x=K[0, 0], fl_y=K[1, 1], cx=K[0, 2], cy=K[1, 2], sharpness=30.0)

    _rewrite(root, edit)
    scene = load_scene(root, source="nerf", cfg=CFG)
    for cam, K, w2c in zip(scene.cameras, Ks, gt_poses(4), strict=True):
        assert cam.distortion is None  # zero distortion keys: plain pinhole
        np.testing.assert_allclose(cam.project(POINT)[0][0], project(K, w2c, POINT), atol=PX_TOL)


def test_nonzero_distortion_keys_mean_undistortion(tmp_path):
    root = make_nerf_scene(tmp_path / "scene", k1=-0.05, k2=0.01, p1=0.001, p2=-0.001)
    scene = load_scene(root, source="nerf", cfg=CFG)
    d = scene.cameras[0].distortion
    assert d is not None
    np.testing.assert_allclose(d.coeffs, [-0.05, 0.01, 0.001, -0.001, 0.0])
    np.testing.assert_allclose(scene.cameras[0].K, K_GT)


def test_path_may_name_the_json_file(tmp_path):
    root = make_nerf_scene(tmp_path / "scene")
    (root / "transforms.json").rename(root / "transforms_train.json")
    with pytest.raises(FileNotFoundError, match=r"transforms\.json: not found.*transforms_train\.json"):
        load_scene(root, source="nerf", cfg=CFG)
    scene = load_scene(root / "transforms_train.json", source="nerf", cfg=CFG)
    assert len(scene.cameras) == 4 and scene.root == root.absolute()


def test_missing_images_are_skipped_with_one_warning(tmp_path, caplog):
    root = make_nerf_scene(tmp_path / "scene", n=5)
    for i in (1, 2, 4):
        (root / "images" / f"frame_{i:05d}.png").unlink()
    with caplog.at_level(logging.WARNING, logger="ccl.scene"):
        scene = load_scene(root, source="nerf", cfg=CFG)
    assert scene.frame_names == ["frame_00000", "frame_00003"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "3 of 5 images are missing" in warnings[0]


# --- bad input -----------------------------------------------------------------------------------------


def test_all_images_missing_is_an_error(tmp_path):
    root = make_nerf_scene(tmp_path / "scene")
    for p in (root / "images").iterdir():
        p.unlink()
    with pytest.raises(FileNotFoundError, match=r"transforms\.json: none of its 4 images exist"):
        load_scene(root, source="nerf", cfg=CFG)


@pytest.mark.parametrize(
    ("drop", "words"),
    [
        ("transform_matrix", ["frame 1", "frame_00001.png", "'transform_matrix'"]),
        ("file_path", ["frame 1", "'file_path'"]),
        ("intrinsics", ["frame 0", "'fl_x or camera_angle_x'"]),
    ],
)
def test_missing_keys_name_the_key_and_the_frame(tmp_path, drop, words):
    root = make_nerf_scene(tmp_path / "scene")

    def edit(meta):
        if drop == "intrinsics":
            del meta["fl_x"]
        else:
            del meta["frames"][1][drop]

    _rewrite(root, edit)
    with pytest.raises(ValueError) as e:
        load_scene(root, source="nerf", cfg=CFG)
    for word in ["transforms.json", *words]:
        assert word in str(e.value)


def test_no_frames_and_broken_json(tmp_path):
    root = make_nerf_scene(tmp_path / "scene")
    _rewrite(root, lambda meta: meta.pop("frames"))
    with pytest.raises(ValueError, match=r"transforms\.json: no `frames` list"):
        load_scene(root, source="nerf", cfg=CFG)
    (root / "transforms.json").write_text("{ not json")
    with pytest.raises(ValueError, match=r"transforms\.json: not valid JSON"):
        load_scene(root, source="nerf", cfg=CFG)


def test_fisheye_is_refused(tmp_path):
    root = make_nerf_scene(tmp_path / "scene", camera_model="OPENCV_FISHEYE")
    with pytest.raises(ValueError, match=r"transforms\.json: frame 0 .*fisheye"):
        load_scene(root, source="nerf", cfg=CFG)


def test_image_size_disagrees_with_w_h(tmp_path):
    root = make_nerf_scene(tmp_path / "scene")
    write_image(root / "images" / "frame_00002.png", W, H + 3)
    with pytest.raises(ValueError) as e:
        load_scene(root, source="nerf", cfg=CFG)
    for word in ("frame_00002.png", f"{W}x{H + 3}", f"frame 2 of {root.absolute() / 'transforms.json'}"):
        assert word in str(e.value)


def test_missing_ply_file(tmp_path):
    root = make_nerf_scene(tmp_path / "scene")
    (root / "points3d.ply").unlink()
    with pytest.raises(FileNotFoundError, match=r"ply_file_path names .*points3d\.ply.*does not exist"):
        load_scene(root, source="nerf", cfg=CFG)


def test_non_numeric_values_name_the_frame(tmp_path):
    root = make_nerf_scene(tmp_path / "scene")

    def edit(meta):
        meta["frames"][2]["fl_x"] = "seventy"

    _rewrite(root, edit)
    with pytest.raises(ValueError, match=r"transforms\.json: frame 2 .*not a number"):
        load_scene(root, source="nerf", cfg=CFG)
    _rewrite(root, lambda meta: meta["frames"][2].pop("fl_x"))
    _rewrite(root, lambda meta: meta["frames"][3].update(transform_matrix=[[1, 0], [0, 1]]))
    with pytest.raises(
        ValueError, match=r"transforms\.json: frame 3 .*transform_matrix must be a finite 4x4"
    ):
        load_scene(root, source="nerf", cfg=CFG)
