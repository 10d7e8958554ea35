"""Broken images and files are refused when the scene is checked, all named at once, before any stage,
and no manifest is written that a later stage would trust."""

from __future__ import annotations

import json
import os

import pytest
from scene_testkit import make_colmap_scene, make_nerf_scene, write_image

from ccl.scene import SceneLoadConfig, load_scene, write_manifest

CFG = SceneLoadConfig()
ENTRY = {"source": "colmap", "protocol": "none"}


def _manifest(tmp_path, scene):
    out = tmp_path / "scene.json"
    with pytest.raises(ValueError) as e:
        write_manifest(out, name="s", entry=ENTRY, source_dir=scene, cfg=CFG, workers=2)
    assert not out.exists()  # nothing a later stage would read
    return str(e.value)


def test_truncated_jpeg_and_png_are_refused_together(tmp_path):
    scene = make_colmap_scene(tmp_path / "s", n=4)
    jpg = scene / "images" / "frame_00002.jpg"
    jpg.write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])  # headers intact, pixels cut
    png = scene / "images" / "frame_00003.png"
    write_image(png, seed=3)
    png.write_bytes(png.read_bytes()[:-40])
    (scene / "images" / "frame_00003.jpg").unlink()
    png.rename(scene / "images" / "frame_00003.jpg")  # the model names .jpg; PIL reads it by content
    msg = _manifest(tmp_path, scene)
    assert "2 of 4 images cannot be decoded in full" in msg
    assert "frame_00002.jpg" in msg and "frame_00003.jpg" in msg and "replace them" in msg


def test_zero_byte_images_are_named_all_at_once(tmp_path):
    scene = make_colmap_scene(tmp_path / "s", n=4)
    for name in ("frame_00001.jpg", "frame_00004.jpg"):
        (scene / "images" / name).write_bytes(b"")
    with pytest.raises(ValueError, match=r"2 of 4 image files cannot be read") as e:
        load_scene(scene, source="colmap", cfg=CFG)
    for name in ("frame_00001.jpg", "frame_00004.jpg"):
        assert f"{name}: cannot be read as an image (empty: 0 bytes)" in str(e.value)


def test_an_image_that_is_a_folder_or_a_broken_link_is_refused(tmp_path):
    scene = make_colmap_scene(tmp_path / "s", n=4)
    (scene / "images" / "frame_00001.jpg").unlink()
    (scene / "images" / "frame_00001.jpg").mkdir()
    (scene / "images" / "frame_00002.jpg").unlink()
    os.symlink(tmp_path / "unmounted" / "frame_00002.jpg", scene / "images" / "frame_00002.jpg")
    with pytest.raises(ValueError) as e:
        load_scene(scene, source="colmap", cfg=CFG)
    msg = str(e.value)
    assert "frame_00001.jpg (a folder)" in msg and "a link to the missing" in msg and "unmounted" in msg


def test_one_half_size_image_among_full_size_ones_is_named(tmp_path):
    scene = make_colmap_scene(tmp_path / "s", n=4)
    write_image(scene / "images" / "frame_00003.jpg", 32, 24, seed=3)  # 1/2 of the model's 64x48
    with pytest.raises(ValueError) as e:
        load_scene(scene, source="colmap", cfg=CFG)
    msg = str(e.value)
    assert "1 of 4 images are stored at another scale" in msg and "frame_00003.jpg (1/2)" in msg


def test_all_images_at_one_downscale_still_load(tmp_path):
    scene = make_colmap_scene(tmp_path / "s", n=3)
    for i in range(3):
        write_image(scene / "images" / f"frame_{i + 1:05d}.jpg", 32, 24, seed=i)
    assert {(c.width, c.height) for c in load_scene(scene, source="colmap", cfg=CFG).cameras} == {(32, 24)}


def test_a_binary_transforms_json_names_the_file(tmp_path):
    scene = make_nerf_scene(tmp_path / "n")
    (scene / "transforms.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff" * 10)
    with pytest.raises(ValueError, match=r"transforms.json: not a text file .*not UTF-8"):
        load_scene(scene, source="nerf", cfg=CFG)


def test_a_complete_scene_passes_the_full_decode(tmp_path):
    scene = make_colmap_scene(tmp_path / "s", n=4)
    out = write_manifest(tmp_path / "scene.json", name="s", entry=ENTRY, source_dir=scene, cfg=CFG, workers=2)
    assert len(json.loads(out.read_text())["frames"]) == 4
