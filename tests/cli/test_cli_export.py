"""`ccl export` on the tiny results folder with a colour field (conftest.py): the whole field in the
reference 3DGS PLY layout or as points, optionally with the language features and decoded classes; read
back by plyfile; a partial checkpoint of a field still training is exported and said so."""

from __future__ import annotations

import shutil

import numpy as np
import plyfile  # a dev dependency: the independent reader of the layout
import pytest

from ccl.cli import main


def _fields(results):
    from ccl.splat.checkpoint import load_language_field, load_rgb_field

    rgb, _ = load_rgb_field(results["run_dir"] / "gaussians" / "rgb.safetensors")
    sp = load_language_field(results["run_dir"] / "gaussians" / "full" / "sp.safetensors")
    return rgb, sp


def test_export_3dgs_with_language_writes_every_gaussian_its_features_and_class(
    tiny_view_results, tmp_path, capsys
):
    from ccl.io.gaussians_ply import read_gaussians_ply
    from ccl.scene import load_scene_from_manifest
    from ccl.scene.config import SceneLoadConfig
    from ccl.splat.render import render_rgb

    out = tmp_path / "field.ply"
    assert main(["export", str(tiny_view_results["scene_dir"]), "-o", str(out), "--with-language"]) == 0
    assert "wrote" in capsys.readouterr().out
    rgb, sp = _fields(tiny_view_results)
    vertex = plyfile.PlyData.read(str(out))["vertex"]
    names = [p.name for p in vertex.properties]
    assert vertex.count == len(rgb) == len(tiny_view_results["classes"])
    assert names[:3] == ["x", "y", "z"] and names.index("rot_3") < names.index("lang_sp_0")
    assert [n for n in names if n.startswith("lang_sp_")] == [f"lang_sp_{i}" for i in range(8)]
    feats = np.stack([vertex[f"lang_sp_{i}"] for i in range(8)], axis=1)
    np.testing.assert_array_equal(feats, sp.features.numpy())
    # the decoded class of each Gaussian is the object it was built on (conftest: class k+1 = category k)
    np.testing.assert_array_equal(vertex["class_sp"], tiny_view_results["classes"])
    np.testing.assert_array_equal(vertex["class_wp"], tiny_view_results["classes"])
    # the colour round trip is bit-identical: the read-back field renders exactly the same image
    back = read_gaussians_ply(out)
    cam = load_scene_from_manifest(
        tiny_view_results["scene_dir"] / "scene.json", cfg=SceneLoadConfig()
    ).cameras[0]
    np.testing.assert_array_equal(
        render_rgb(back, cam, background=(1.0, 1.0, 1.0)), render_rgb(rgb, cam, background=(1.0, 1.0, 1.0))
    )


def test_export_points_is_a_point_per_gaussian_in_its_colour(tiny_view_results, tmp_path):
    from ccl.query.view import gaussian_colours

    out = tmp_path / "points.ply"
    assert main(["export", str(tiny_view_results["scene_dir"]), "-o", str(out), "--format", "points"]) == 0
    vertex = plyfile.PlyData.read(str(out))["vertex"]
    rgb, _ = _fields(tiny_view_results)
    assert [p.name for p in vertex.properties] == ["x", "y", "z", "red", "green", "blue"]
    np.testing.assert_array_equal(vertex["x"], rgb.means[:, 0].numpy())
    colours = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1)
    np.testing.assert_array_equal(colours, gaussian_colours(rgb))


def test_export_of_a_field_still_training_takes_its_partial_checkpoint_and_says_so(
    tiny_view_results, tmp_path, capsys
):
    """Only rgb.partial.safetensors (training at step 300 of 1000): exported from it, with a note."""
    from ccl.splat.checkpoint import partial_path, save_train_state
    from ccl.splat.model import PARAM_TO_FILE

    scene = tmp_path / "tiny"
    shutil.copytree(tiny_view_results["scene_dir"], scene)
    final = scene / "seed0" / "gaussians" / "rgb.safetensors"
    rgb, _ = _fields(tiny_view_results)
    file_to_param = {v: k for k, v in PARAM_TO_FILE.items()}
    params = {file_to_param[k]: getattr(rgb, k) for k in file_to_param}
    save_train_state(
        partial_path(final), iteration=300, params=params, optimizers={}, strategy_state={}, extra={},
        header={"config": {"iterations": 1000}, "scene": "tiny"},
    )  # fmt: skip
    final.unlink()
    out = tmp_path / "partial.ply"
    assert main(["export", str(scene), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "still training" in printed and "step 300 of 1000" in printed
    assert plyfile.PlyData.read(str(out))["vertex"].count == len(rgb)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "splat"], "--format splat: unknown; accepted: 3dgs"),
        (["--scale", "xx", "--with-language"], "--scale xx: no language field of that scale"),
    ],
)
def test_export_bad_input_exits_with_a_message(tiny_view_results, tmp_path, capsys, args, message):
    import re

    assert main(["export", str(tiny_view_results["scene_dir"]), "-o", str(tmp_path / "x.ply"), *args]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_export_without_a_colour_field_names_the_rule(tiny_results, tmp_path, capsys):
    assert main(["export", str(tiny_results["scene_dir"]), "-o", str(tmp_path / "x.ply")]) == 2
    err = capsys.readouterr().err
    assert "rgb.safetensors: not found" in err and "train_rgb" in err
