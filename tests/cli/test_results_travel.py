"""A results folder travels: copied to another place with the scene folder gone (results/ brought from
a cluster to a laptop), `ccl render`, `query` and `query3d` run from the cameras the manifest stores;
what needs the images names the folder they were in."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ccl.cli import main


@pytest.fixture
def travelled(tiny_results, tiny_scene_dir, tmp_path):
    """results/tiny made in a clone (its scene folder there, a colour field added), then copied
    elsewhere and the clone deleted."""
    from ccl.scene import SceneLoadConfig, write_manifest
    from ccl.splat.checkpoint import load_language_field, save_rgb_field

    clone = tmp_path / "clone"
    shutil.copytree(tiny_scene_dir, clone / "results" / "tiny" / "scene")
    results = clone / "results" / "tiny"
    for part in ("seed0", "features", "masks"):
        shutil.copytree(tiny_results["scene_dir"] / part, results / part)
    write_manifest(
        results / "scene.json", name="tiny", entry={"source": "synthetic", "protocol": "lerf_ovs"},
        source_dir=results / "scene", cfg=SceneLoadConfig(),
    )  # fmt: skip
    field = load_language_field(results / "seed0" / "gaussians" / "full" / "sp.safetensors")
    header = {"scene": "tiny", "config": {}, "iteration": 0, "seed": 0}
    save_rgb_field(results / "seed0" / "gaussians" / "rgb.safetensors", field.gaussians, header=header)
    before = tmp_path / "before.png"
    assert main(["render", str(results), "--frame", "frame_00001", "--what", "rgb", "-o", str(before)]) == 0
    laptop = tmp_path / "laptop" / "results"
    shutil.copytree(clone / "results", laptop)
    shutil.rmtree(laptop / "tiny" / "scene")  # the scene folder stays behind, as the photos would
    shutil.rmtree(clone)
    return laptop / "tiny", before


def _read(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_render_query_and_query3d_run_on_a_results_folder_without_its_scene(travelled, tmp_path):
    scene_dir, before = travelled
    out = tmp_path / "after.png"
    assert main(["render", str(scene_dir), "--frame", "frame_00001", "--what", "rgb", "-o", str(out)]) == 0
    np.testing.assert_array_equal(_read(out), _read(before))  # the same camera, the same picture
    assert (
        main(["query", str(scene_dir), "red mug", "--frame", "frame_00001", "-o", str(tmp_path / "q.png")])
        == 0
    )
    assert main(["query3d", str(scene_dir), "red mug", "-o", str(tmp_path / "mug.ply")]) == 0


def test_query3d_without_the_masks_names_them_and_the_cleaning_that_does_without(travelled, tmp_path, capsys):
    # the default cleaning reads the training maps, painted on results/<scene>/masks: a results folder
    # copied without them is told so before any work, and --clean components needs them not
    scene_dir, _ = travelled
    shutil.rmtree(scene_dir / "masks")
    out = tmp_path / "mug.ply"
    assert main(["query3d", str(scene_dir), "red mug", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{scene_dir / 'masks' / 'sp.h5'}: not found" in err and "--clean components" in err
    assert not out.exists()
    assert main(["query3d", str(scene_dir), "red mug", "-o", str(out), "--clean", "components"]) == 0


def test_what_needs_the_images_names_where_they_were(travelled):
    from ccl.scene import SceneLoadConfig, load_scene_from_manifest

    scene_dir, _ = travelled
    with pytest.raises(FileNotFoundError) as e:
        load_scene_from_manifest(scene_dir / "scene.json", cfg=SceneLoadConfig())
    message = str(e.value)
    assert "clone/results/tiny/scene" in message and "not on this machine" in message
    assert "put the folder back" in message
