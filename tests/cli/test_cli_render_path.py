"""`ccl render --path` on the tiny results folder with a colour field (conftest.py): a short camera path
rendered to a video, a GIF and a folder of PNG frames; the relevance frame of a query highlights the
queried object's ground-truth pixels; nerfstudio's camera-path JSON read as its viewer writes it."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from ccl.cli import main


def _scene(results):
    from ccl.scene import SceneLoadConfig, load_scene_from_manifest

    return load_scene_from_manifest(results["scene_dir"] / "scene.json", cfg=SceneLoadConfig())


def test_orbit_to_mp4_has_the_frames_and_size_asked(tiny_view_results, tmp_path, capsys):
    import av

    out = tmp_path / "orbit.mp4"
    args = ["render", str(tiny_view_results["scene_dir"]), "--path", "orbit", "--what", "rgb", "-o", str(out)]
    assert main([*args, "--frames", "6", "--fps", "12"]) == 0
    assert "6 frames" in capsys.readouterr().out
    cam = _scene(tiny_view_results).cameras[0]
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 6
    assert frames[0].shape == (cam.height + cam.height % 2, cam.width + cam.width % 2, 3)
    assert all(f.std() > 5 for f in frames)  # the field is in view, not an empty background


def test_both_puts_relevance_beside_colour_and_highlights_the_object(
    tiny_view_results, tiny_scene_dir, tmp_path
):
    """interpolate's first frame is the first training view: its highlighted pixels (the right half where
    it is not the left half dimmed to 30 %) cover the red mug's ground-truth pixels of that view."""
    import h5py
    from PIL import Image

    out = tmp_path / "frames"
    args = ["render", str(tiny_view_results["scene_dir"]), "--path", "interpolate", "--frames", "3"]
    assert main([*args, "--what", "both", "--text", "red mug", "-o", str(out)]) == 0
    pngs = sorted(out.glob("frame_*.png"))
    assert len(pngs) == 3
    scene = _scene(tiny_view_results)
    cam = scene.cameras[0]
    frame = np.asarray(Image.open(pngs[0])).astype(np.int32)
    assert frame.shape == (cam.height, 2 * cam.width, 3)
    rgb, rel = frame[:, : cam.width], frame[:, cam.width :]
    highlighted = np.abs(rel - np.round(0.3 * rgb)).max(axis=-1) > 3
    with h5py.File(tiny_scene_dir / "gt.h5", "r") as f:
        mug = f[cam.name]["category_id"][()] == tiny_view_results["categories"].index("red mug")
    assert mug.sum() > 20
    # the tiny field is a few thousand blobs on the scene's sparse points, rendered at 64 x 48: its mug
    # covers part of the mug's pixels and spills past its edge, so the check is by rate: a mug pixel is
    # highlighted over ten times as often as any other (measured: 41 % against 3 %), and the mug, 5 %
    # of the view, holds over a third of what is highlighted (44 %)
    assert highlighted[mug].mean() > 10 * highlighted[~mug].mean()
    assert (highlighted & mug).sum() / highlighted.sum() > 0.35


def _nerfstudio_path(cameras, **override):
    """What nerfstudio's viewer saves: OpenGL camera-to-world rows, vertical fov in degrees."""
    entries = []
    for c in cameras:
        c2w = c.camera_to_world @ np.diag([1.0, -1.0, -1.0, 1.0])
        fov = np.degrees(2 * np.arctan(0.5 * c.height / c.K[1, 1]))
        entries.append(
            {"camera_to_world": c2w.reshape(-1).tolist(), "fov": float(fov), "aspect": c.width / c.height}
        )
    data = {
        "camera_type": "perspective", "render_height": cameras[0].height, "render_width": cameras[0].width,
        "camera_path": entries, "fps": 10, "seconds": len(entries) / 10,
    }  # fmt: skip
    data.update(override)
    return data


def test_a_nerfstudio_camera_path_renders_the_views_it_names(tiny_view_results, tmp_path):
    """A path through two training views renders what `ccl render --frame` renders at those views."""
    from PIL import Image

    scene = _scene(tiny_view_results)
    path = tmp_path / "camera_path.json"
    path.write_text(json.dumps(_nerfstudio_path(scene.cameras[:2])))
    out = tmp_path / "ns"
    d = str(tiny_view_results["scene_dir"])
    assert main(["render", d, "--path", str(path), "--what", "rgb", "-o", str(out)]) == 0
    assert (
        main(["render", d, "--frame", scene.cameras[1].name, "--what", "rgb", "-o", str(tmp_path / "f.png")])
        == 0
    )
    got = np.asarray(Image.open(out / "frame_00001.png")).astype(np.int32)
    want = np.asarray(Image.open(tmp_path / "f.png")).astype(np.int32)
    assert np.abs(got - want).max() <= 1


def test_gif_out(tiny_view_results, tmp_path):
    from PIL import Image

    out = tmp_path / "spiral.gif"
    args = [
        "render",
        str(tiny_view_results["scene_dir"]),
        "--path",
        "spiral",
        "--frames",
        "4",
        "--what",
        "rgb",
    ]
    assert main([*args, "-o", str(out), "--max-size", "64"]) == 0
    with Image.open(out) as im:
        assert im.n_frames == 4 and max(im.size) == 64


@pytest.mark.parametrize(
    "json_data, message",
    [
        ({"keyframes": [], "render_height": 10}, "not a nerfstudio camera path: no field 'camera_type'"),
        (
            {"camera_type": "perspective", "render_height": 8, "render_width": 8,
             "camera_path": [{"camera_to_world": [0] * 16}]},
            r"camera_path\[0\] has no field 'fov'",
        ),
        ({"camera_type": "fisheye", "render_height": 8, "render_width": 8, "camera_path": []}, "camera_type 'fisheye'"),
    ],
)  # fmt: skip
def test_a_camera_path_of_another_format_is_refused_naming_the_field(
    tiny_view_results, tmp_path, capsys, json_data, message
):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(json_data))
    args = ["render", str(tiny_view_results["scene_dir"]), "--path", str(path), "--what", "rgb"]
    assert main([*args, "-o", str(tmp_path / "x.mp4")]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_a_path_leaving_the_scene_is_rendered_with_a_warning(tiny_view_results, tmp_path, caplog):
    scene = _scene(tiny_view_results)
    far = _nerfstudio_path(scene.cameras[:2])
    far["camera_path"][1]["camera_to_world"][3] += 1000.0  # x of the second camera, far away
    path = tmp_path / "far.json"
    path.write_text(json.dumps(far))
    out = tmp_path / "far"
    assert (
        main(
            [
                "render",
                str(tiny_view_results["scene_dir"]),
                "--path",
                str(path),
                "--what",
                "rgb",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert len(list(out.glob("*.png"))) == 2
    assert "outside the scene's bounds" in caplog.text and "frames 1;" in caplog.text


def test_relevance_without_text_is_refused(tiny_view_results, tmp_path, capsys):
    args = ["render", str(tiny_view_results["scene_dir"]), "--path", "orbit", "--what", "relevance"]
    assert main([*args, "-o", str(tmp_path / "x.mp4")]) == 2
    assert '--what relevance needs --text "..."' in capsys.readouterr().err
