"""`ccl render` on the tiny results folder (conftest.py), with a colour field added: each --what writes an
image of the frame's size, rgb is the evaluation's render of that camera, classes its decoded class map."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from ccl.cli import main
from ccl.render.images import class_colours

BACKGROUND = (0.2, 0.4, 0.6)  # not black, so the test sees the render use the field's own background
FRAME = "frame_00003"


@pytest.fixture(scope="module")
def render_results(tiny_results, tmp_path_factory):
    """A copy of results/tiny with gaussians/rgb.safetensors: the language field's Gaussians as colour field."""
    from ccl.splat.checkpoint import load_language_field, save_rgb_field

    scene_dir = tmp_path_factory.mktemp("render") / "tiny"
    shutil.copytree(tiny_results["scene_dir"], scene_dir)
    field = load_language_field(scene_dir / "seed0" / "gaussians" / "full" / "sp.safetensors")
    header = {"scene": "tiny", "config": {"background": list(BACKGROUND)}, "iteration": 0, "seed": 0}
    save_rgb_field(scene_dir / "seed0" / "gaussians" / "rgb.safetensors", field.gaussians, header=header)
    return {**tiny_results, "scene_dir": scene_dir, "field": field}


def _camera(scene_dir, frame=FRAME):
    from ccl.scene import SceneLoadConfig, load_scene_from_manifest

    return load_scene_from_manifest(scene_dir / "scene.json", cfg=SceneLoadConfig()).camera(frame)


def _read(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_rgb_is_the_evaluation_render_of_the_frame(render_results, tmp_path, capsys):
    from ccl.splat.checkpoint import load_rgb_field
    from ccl.splat.render import render_rgb

    d = render_results["scene_dir"]
    out = tmp_path / "rgb.png"
    assert main(["render", str(d), "--frame", FRAME, "--what", "rgb", "-o", str(out)]) == 0
    cam = _camera(d)
    got = _read(out)
    assert got.shape == (cam.height, cam.width, 3)
    gaussians, _ = load_rgb_field(d / "seed0" / "gaussians" / "rgb.safetensors")
    want = np.rint(render_rgb(gaussians, cam, background=BACKGROUND) * 255).astype(np.uint8)
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(got.reshape(-1, 3), axis=0)) > 10  # a picture, not a flat background
    assert f"wrote {out}" in capsys.readouterr().out

    jpg = tmp_path / "rgb.jpg"  # JPEG is lossy: same size, close values
    assert main(["render", str(d), "--frame", "3", "--what", "rgb", "-o", str(jpg)]) == 0
    got_jpg = _read(jpg)
    assert got_jpg.shape == want.shape
    assert np.abs(got_jpg.astype(int) - want.astype(int)).mean() < 8


def test_classes_are_the_decoded_class_map_in_a_fixed_palette(render_results, tmp_path):
    from ccl.splat.render import render_class_map

    d = render_results["scene_dir"]
    out = tmp_path / "classes.png"
    assert (
        main(["render", str(d), "--frame", FRAME, "--what", "classes", "--scale", "wp", "-o", str(out)]) == 0
    )
    cam = _camera(d)
    classes = render_class_map(render_results["field"], cam)
    got = _read(out)
    assert got.shape == (cam.height, cam.width, 3)
    np.testing.assert_array_equal(got, class_colours(classes))
    assert len(np.unique(classes)) >= 3  # the table and at least two objects are in view
    # the palette is fixed: one colour per class, the same whatever else is in view
    palette = class_colours(np.arange(256))
    assert len(np.unique(palette, axis=0)) == 256
    np.testing.assert_array_equal(class_colours(np.array([[7]]))[0, 0], palette[7])


def test_relevance_of_a_text_is_hot_on_its_object(render_results, tmp_path, capsys):
    from ccl.splat.render import render_class_map

    d = render_results["scene_dir"]
    cats = render_results["categories"]
    out = tmp_path / "mug.png"
    rc = main(
        ["render", str(d), "--frame", FRAME, "--what", "relevance", "--text", "red mug", "-o", str(out)]
    )
    assert rc == 0
    cam = _camera(d)
    got = _read(out).astype(float)
    assert got.shape == (cam.height, cam.width, 3)
    mug = render_class_map(render_results["field"], cam) == cats.index("red mug") + 1
    assert mug.any() and (~mug).any()
    # turbo: high relevance is red, low is blue
    warmth = got[..., 0] - got[..., 2]
    assert warmth[mug].mean() > warmth[~mug].mean() + 50
    assert re.search(r"'red mug', full (sp|wp), [\d.]+% of pixels above", capsys.readouterr().out)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--frame", "77", "--what", "rgb", "-o", "{t}/x.png"], r"--frame 77: no such view.*frame_00000"),
        (["--frame", "0", "--what", "rgb", "-o", "{t}/x.gif"], r"x\.gif.*accepted: \.png, \.jpg, \.jpeg"),
        (["--frame", "0", "--what", "relevance", "-o", "{t}/x.png"], r"--what relevance needs --text"),
        (
            ["--frame", "0", "--what", "classes", "--text", "mug", "-o", "{t}/x.png"],
            r"--what classes takes none",
        ),
        # tiny_results has no colour field: the message names the file and the rule that makes it
        (
            ["--frame", "0", "--what", "rgb", "-o", "{t}/x.png"],
            r"gaussians/rgb\.safetensors: not found.*train_rgb",
        ),
        (
            ["--frame", "0", "--what", "classes", "--variant", "push", "-o", "{t}/x.png"],
            r"gaussians/push: no language field.*train_language",
        ),
        (
            ["--frame", "0", "--what", "classes", "--scale", "all", "-o", "{t}/x.png"],
            r"gaussians/full/all\.safetensors: not found.*train_language",
        ),
    ],
)
def test_bad_input_exits_with_a_message_and_writes_nothing(tiny_results, tmp_path, capsys, args, message):
    argv = ["render", str(tiny_results["scene_dir"]), *(a.format(t=tmp_path) for a in args)]
    assert main(argv) == 2
    assert re.search(message, capsys.readouterr().err), message
    assert not list(tmp_path.iterdir())


def test_a_missing_codebook_names_the_rule_that_makes_it(render_results, tmp_path, capsys):
    d = tmp_path / "tiny"
    shutil.copytree(render_results["scene_dir"], d)
    (d / "seed0" / "codebook" / "full" / "wp.h5").unlink()
    assert main(["render", str(d), "--frame", "0", "--what", "classes", "-o", str(tmp_path / "x.png")]) == 2
    assert re.search(r"codebook/full/wp\.h5: not found.*train_codebook", capsys.readouterr().err)


def test_a_colour_field_of_another_scene_manifest_is_refused_naming_both_and_the_remake(
    render_results, tmp_path, capsys
):
    # the colour field records another version of the scene (its images changed since): its Gaussians
    # would be drawn from cameras they were not trained on
    import json

    from ccl.io.provenance import file_record
    from ccl.splat.checkpoint import load_rgb_field, save_rgb_field

    d = tmp_path / "tiny"
    shutil.copytree(render_results["scene_dir"], d)
    other = tmp_path / "before" / "scene.json"
    other.parent.mkdir()
    other.write_text(json.dumps({**json.loads((d / "scene.json").read_text()), "name": "before"}))
    rgb = d / "seed0" / "gaussians" / "rgb.safetensors"
    g, header = load_rgb_field(rgb)
    save_rgb_field(rgb, g, header={**header, "inputs": {"manifest": file_record(other)}})
    out = tmp_path / "x.png"
    assert main(["render", str(d), "--frame", "0", "--what", "rgb", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{rgb} was made from another scene manifest ({other})" in err, err
    assert f"not from {d / 'scene.json'}" in err and f"`snakemake {rgb} --force`" in err, err
    assert not out.exists()

    save_rgb_field(rgb, g, header={**header, "inputs": {"manifest": file_record(d / "scene.json")}})
    assert main(["render", str(d), "--frame", "0", "--what", "rgb", "-o", str(out)]) == 0
