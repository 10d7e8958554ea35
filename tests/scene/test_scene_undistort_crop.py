"""Undistortion keeps only valid pixels: a camera whose undistorted image has pixels with no source in
the photo (pincushion distortion: the corners) gets the largest rectangle of valid pixels, its K shifted
by the crop, so no black border reaches a stage, a loss or a metric; a camera whose valid rectangle is
under half the image is refused, naming the file and the fix."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scene_testkit import K_GT, POINT, H, W, gt_poses, make_colmap_scene

from ccl.scene import SceneLoadConfig, load_image, load_scene, ops


def _white_distorted_scene(tmp_path, k1: float):
    params = [K_GT[0, 0], K_GT[1, 1], K_GT[0, 2], K_GT[1, 2], k1, 0.0, 0.0, 0.0]
    root = make_colmap_scene(tmp_path / "scene", model="OPENCV", params=params, n=2, ext=".png")
    for path in (root / "images").iterdir():  # every pixel of the photo white: black can only be border
        cv2.imwrite(str(path), np.full((H, W, 3), 255, np.uint8))
    return root


@pytest.mark.parametrize("downscale", [1, 2])
def test_no_pixel_without_a_source_in_the_photo_reaches_the_stages(tmp_path, downscale):
    k1 = 0.25
    root = _white_distorted_scene(tmp_path, k1)
    map_x, map_y = ops.undistort_maps(K_GT, np.array([k1, 0, 0, 0, 0.0]), W, H)
    outside = (map_x < 0) | (map_x > W - 1) | (map_y < 0) | (map_y > H - 1)
    assert outside.mean() > 0.01  # the uncropped undistortion has a black border
    cfg = SceneLoadConfig(downscale=downscale)
    scene = load_scene(root, source="colmap", cfg=cfg)
    for cam, w2c in zip(scene.cameras, gt_poses(2), strict=True):
        x0, y0, w, h = cam.distortion.crop_xywh
        assert not outside[y0 : y0 + h, x0 : x0 + w].any()
        assert w * h > 0.8 * W * H  # the crop keeps most of the image
        img = load_image(cam, cfg=cfg, cache_dir=tmp_path / "cache")
        assert img.shape == (cam.height, cam.width, 3) == (h // downscale, w // downscale, 3)
        assert img.min() == 255  # every pixel from inside the photo: none blended with the border
        # the camera's K is the undistorted image's, shifted by the crop and downscaled
        uv, _ = cam.project(POINT)
        cam_pt = w2c[:3, :3] @ POINT + w2c[:3, 3]
        full = (K_GT @ cam_pt)[:2] / cam_pt[2]
        np.testing.assert_allclose(uv[0], (full - [x0, y0]) / downscale, atol=1e-9)


def test_a_camera_whose_valid_region_is_under_half_the_image_is_refused(tmp_path):
    root = _white_distorted_scene(tmp_path, k1=3.0)
    with pytest.raises(ValueError) as e:
        load_scene(root, source="colmap", cfg=SceneLoadConfig())
    message = str(e.value)
    assert "images/frame_0000" in message and "under 50%" in message
    assert "sfm.camera_model" in message and "image_undistorter" in message
