"""scene_load.max_image_side: images whose longest side (after downscale) is over it are resized to it,
the intrinsics following, so a point projects to the same place of the image the stages see; 0 lifts
the limit; the default is 3DGS's 1.6k pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scene_testkit import K_GT, POINT, H, W, gt_poses, make_colmap_scene, project

from ccl.scene import SceneLoadConfig, load_image, load_scene, ops


def test_the_default_limit_is_3dgs_longest_side_of_1600_pixels():
    assert SceneLoadConfig().max_image_side == 1600
    size = ops.working_size
    assert size((4000, 3000), downscale=1, max_side=1600) == (1600, 1200)
    assert size((1080, 1920), downscale=1, max_side=1600) == (900, 1600)
    assert size((1600, 900), downscale=1, max_side=1600) == (1600, 900)  # at the limit: as it is
    assert size((4000, 3000), downscale=2, max_side=1600) == (1600, 1200)
    assert size((4000, 3000), downscale=4, max_side=1600) == (1000, 750)  # downscale already under it
    assert size((4000, 3000), downscale=1, max_side=0) == (4000, 3000)  # lifted


@pytest.mark.parametrize("downscale", [1, 2])
def test_images_over_the_limit_are_resized_and_the_cameras_follow(tmp_path, downscale):
    root = make_colmap_scene(tmp_path / "scene", n=2)
    limit = 16  # the 64x48 test images: 32x24 after downscale 2, either way over 16
    cfg = SceneLoadConfig(downscale=downscale, max_image_side=limit)
    scene = load_scene(root, source="colmap", cfg=cfg)
    for cam, w2c in zip(scene.cameras, gt_poses(2), strict=True):
        assert (cam.width, cam.height) == (16, 12)
        np.testing.assert_allclose(cam.K, ops.scale_intrinsics(K_GT, 16 / W, 12 / H), atol=1e-12)
        uv, _ = cam.project(POINT)
        np.testing.assert_allclose(uv[0], project(K_GT, w2c, POINT) * [16 / W, 12 / H], atol=1e-9)
        img = load_image(cam, cfg=cfg, cache_dir=tmp_path / "cache")
        file = cv2.imread(str(cam.image_path))[:, :, ::-1]
        small = file if downscale == 1 else cv2.resize(file, (W // 2, H // 2), interpolation=cv2.INTER_AREA)
        want = cv2.resize(small, (16, 12), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(img, want)
        # read again from the cache: the same pixels
        np.testing.assert_array_equal(load_image(cam, cfg=cfg, cache_dir=tmp_path / "cache"), want)
    lifted = load_scene(root, source="colmap", cfg=SceneLoadConfig(downscale=downscale, max_image_side=0))
    assert (lifted.cameras[0].width, lifted.cameras[0].height) == (W // downscale, H // downscale)


def test_an_image_read_with_another_limit_than_its_scene_is_refused(tmp_path):
    root = make_colmap_scene(tmp_path / "scene", n=2)
    scene = load_scene(root, source="colmap", cfg=SceneLoadConfig(max_image_side=16))
    with pytest.raises(ValueError, match="max_image_side = 0"):
        load_image(scene.cameras[0], cfg=SceneLoadConfig(max_image_side=0))
