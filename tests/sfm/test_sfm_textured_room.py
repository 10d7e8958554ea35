"""Structure from motion on a scene it can solve (tests/sfm/textured_room.py: ten 320x240 views of a
textured room), with pycolmap running for real: photos alone give back the true cameras up to a
similarity, and a rerun the same model; a transforms.json without points and a COLMAP model without
points3D get points on the room's surfaces from their known poses; images with nothing to match give
an empty point file that says why (the colour field's random start then: tests/splat/test_random_init.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sfm import textured_room as room

from ccl.scene import SceneLoadConfig, load_scene
from ccl.scene.ply import read_ply_points
from ccl.sfm import SfmConfig, centre_errors, recover_poses, scene_lacks_points, triangulate_points


def _true_centres(poses) -> dict[str, np.ndarray]:
    return {f"IMG_{i:04d}": -p[:3, :3].T @ p[:3, 3] for i, p in enumerate(poses)}


def test_photos_of_a_textured_room_give_its_cameras_and_a_rerun_the_same_model(tmp_path):
    poses = room.write_photos(tmp_path / "photos")
    centres = []
    for run in ("first", "again"):
        report = recover_poses(
            tmp_path / "photos", tmp_path / run / "model", cfg=SfmConfig(),
            report_path=tmp_path / run / "poses.json", threads=2,
        )  # fmt: skip
        assert report["images_registered"] == report["images_total"] == 10, report
        assert report["mean_reprojection_error_px"] < 1.0 and report["mean_track_length"] > 3
        rec = load_scene(tmp_path / run / "model", source="colmap", cfg=SceneLoadConfig())
        centres.append(np.stack([c.center for c in rec.cameras]))
    truth = _true_centres(poses)
    true = np.stack([truth[c.name] for c in rec.cameras])
    radius = np.linalg.norm(true - true.mean(0), axis=1).max()
    assert centre_errors(centres[0], true).max() < 0.01 * radius  # the bound, on every camera
    assert abs(rec.cameras[0].K[0, 0] * room.W / rec.cameras[0].width - room.FOCAL) < 0.03 * room.FOCAL
    np.testing.assert_array_equal(centres[0], centres[1])  # seeded, photos in name order: the same model


@pytest.mark.parametrize("layout", ["nerf", "colmap", "colmap_without_points_file"])
def test_a_scene_with_poses_but_no_points_gets_points_on_its_surfaces(tmp_path, layout):
    scene = tmp_path / "scene"
    if layout == "nerf":
        room.write_nerf_without_points(scene)
        pose_file = scene / "transforms.json"
    else:
        room.write_colmap_without_points(scene)
        pose_file = scene / "sparse" / "0" / "images.bin"
        if layout == "colmap_without_points_file":  # cameras and images only: COLMAP reads it so too
            (scene / "sparse" / "0" / "points3D.bin").unlink()
        layout = "colmap"
    assert scene_lacks_points({"source": layout, "path": str(scene)})
    report = triangulate_points(
        tmp_path / "sfm" / "points3D.ply", scene_dir=scene, source=layout, scene_load=SceneLoadConfig(),
        cfg=SfmConfig(), report_path=tmp_path / "sfm" / "points.json", threads=2,
    )  # fmt: skip
    xyz, rgb = read_ply_points(tmp_path / "sfm" / "points3D.ply")
    assert report["points"] == len(xyz) > 500 and report["images_with_points"] == 10, report
    assert report["no_points_because"] is None and report["mean_reprojection_error_px"] < 1.0
    # the poses were held fixed: the points sit on the room's walls and floor, in its units
    assert np.median(room.distance_to_room(xyz)) < 0.005 * room.HALF
    assert rgb.std() > 10  # coloured from the images, not a constant
    recorded = {
        r["path"] for r in json.loads((tmp_path / "sfm" / "points.json").read_text())["inputs"]["scene"]
    }
    assert str(pose_file.absolute()) in recorded  # provenance: the pose file it was made from


def test_images_with_nothing_to_match_give_an_empty_point_file_saying_why(tmp_path):
    from scene.scene_testkit import make_nerf_scene

    scene = make_nerf_scene(tmp_path / "scene", n=4, ply=None)  # smooth 64x48 blobs: no SIFT features
    report = triangulate_points(
        tmp_path / "sfm" / "points3D.ply", scene_dir=scene, source="nerf", scene_load=SceneLoadConfig(),
        cfg=SfmConfig(), report_path=tmp_path / "sfm" / "points.json",
    )  # fmt: skip
    xyz, _ = read_ply_points(tmp_path / "sfm" / "points3D.ply")
    assert len(xyz) == report["points"] == 0
    assert "no track could be triangulated" in report["no_points_because"]
    assert "textureless" in report["no_points_because"]
