"""load_image: decoding, downscale with intrinsics that follow, the on-disk cache, undecodable files."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from scene_testkit import (
    K_GT,
    POINT,
    H,
    W,
    gt_poses,
    make_colmap_scene,
    make_nerf_scene,
    project,
    write_image,
)

from ccl.scene import Camera, SceneLoadConfig, load_image, load_scene
from ccl.scene.images import downscale_image


def test_full_resolution_pinhole_image_is_the_file(tmp_path):
    root = make_nerf_scene(tmp_path / "scene", ply=None)
    cam = load_scene(root, source="nerf", cfg=SceneLoadConfig()).cameras[1]
    img = load_image(cam, cfg=SceneLoadConfig(), cache_dir=tmp_path / "cache")
    expected = write_image(tmp_path / "same.png", seed=1)  # the generator is deterministic per seed
    np.testing.assert_array_equal(img, expected)
    assert not (tmp_path / "cache").exists(), "nothing to cache when nothing is transformed"


@pytest.mark.parametrize("factor", [2, 3])
def test_downscale_scales_intrinsics_and_caches_the_image(tmp_path, factor):
    cfg = SceneLoadConfig(downscale=factor)
    root = make_colmap_scene(tmp_path / "scene", ext=".png")
    scene = load_scene(root, source="colmap", cfg=cfg)
    cam = scene.cameras[0]

    w, h = W // factor, H // factor
    assert (cam.width, cam.height) == (w, h)
    np.testing.assert_allclose(cam.K, np.diag([1 / factor, 1 / factor, 1]) @ K_GT)
    np.testing.assert_allclose(
        cam.project(POINT)[0][0], project(K_GT, gt_poses(4)[0], POINT) / factor, atol=1e-9
    )

    cache = tmp_path / "cache"
    img = load_image(cam, cfg=cfg, cache_dir=cache)
    assert img.shape == (h, w, 3) and img.dtype == np.uint8
    full = load_image(
        load_scene(root, source="colmap", cfg=SceneLoadConfig()).cameras[0], cfg=SceneLoadConfig()
    )
    np.testing.assert_array_equal(
        img, cv2.resize(full[: h * factor, : w * factor], (w, h), interpolation=cv2.INTER_AREA)
    )

    (cached,) = list(cache.rglob("*.png"))
    assert cached.name.startswith("frame_00001.")
    # The second call reads the cache: mark the cached file and see the mark come back.
    marked = img.copy()
    marked[0, 0] = (1, 2, 3)
    cv2.imwrite(str(cached), marked[:, :, ::-1])
    np.testing.assert_array_equal(load_image(cam, cfg=cfg, cache_dir=cache), marked)
    # A changed source file gets a new cache entry, never the stale one.
    os.utime(cam.image_path, ns=(0, 12345))
    np.testing.assert_array_equal(load_image(cam, cfg=cfg, cache_dir=cache), img)
    assert len(list(cache.rglob("*.png"))) == 2


def test_downscale_crops_the_remainder_so_k_stays_exact():
    img = np.arange(7 * 5 * 3, dtype=np.uint8).reshape(5, 7, 3)
    small = downscale_image(img, 2)
    assert small.shape == (2, 3, 3)
    np.testing.assert_array_equal(small[0, 0], img[:2, :2].reshape(-1, 3).mean(0).round())


def test_camera_loaded_with_another_downscale_is_refused(tmp_path):
    root = make_nerf_scene(tmp_path / "scene", ply=None)
    cam = load_scene(root, source="nerf", cfg=SceneLoadConfig(downscale=2)).cameras[0]
    with pytest.raises(ValueError, match=r"downscale = 1.*same scene_load config"):
        load_image(cam, cfg=SceneLoadConfig())


def test_undecodable_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    cam = Camera("broken", bad, W, H, K_GT, np.eye(4))
    with pytest.raises(ValueError, match=r"broken\.png: cannot be decoded"):
        load_image(cam, cfg=SceneLoadConfig())


def test_undecodable_image_is_caught_when_the_scene_loads(tmp_path):
    root = make_nerf_scene(tmp_path / "scene", ply=None)
    (root / "images" / "frame_00001.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"frame_00001\.png: cannot be read as an image"):
        load_scene(root, source="nerf", cfg=SceneLoadConfig())


@pytest.mark.parametrize("kind", ["gray", "rgba", "gray16"])
def test_other_pixel_formats_become_rgb_uint8(tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    rng = np.random.default_rng(0)
    if kind == "gray":
        data = rng.integers(0, 256, (H, W), dtype=np.uint8)
        expected = np.repeat(data[:, :, None], 3, 2)
    elif kind == "gray16":
        data = rng.integers(0, 65536, (H, W), dtype=np.uint16)
        expected = np.repeat((data / 257.0 + 0.5).astype(np.uint8)[:, :, None], 3, 2)
    else:
        data = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
        rgb = data[:, :, [2, 1, 0]].astype(np.float32)
        expected = (rgb * (data[:, :, 3:4] / 255.0) + 0.5).astype(np.uint8)  # over black
    cv2.imwrite(str(path), data)
    img = load_image(Camera(kind, path, W, H, K_GT, np.eye(4)), cfg=SceneLoadConfig())
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    np.testing.assert_allclose(img.astype(int), expected.astype(int), atol=1)  # float rounding of alpha
