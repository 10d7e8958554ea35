"""`ccl view` without a browser: the session (camera of a browser view, render with the relevance over it,
queries, export) on the tiny results folder whose answers are known (conftest.py), and bad input."""

from __future__ import annotations

import shutil
import socket

import numpy as np
import pytest

from ccl.cli import main


@pytest.fixture(scope="module")
def session(tiny_view_results):
    from ccl.query import QueryConfig
    from ccl.query.fields import scene_text_encoder
    from ccl.scene import SceneLoadConfig
    from ccl.view import open_session

    d = tiny_view_results["scene_dir"]
    return open_session(d, query_cfg=QueryConfig(), scene_cfg=SceneLoadConfig(),
                        text_encoder=lambda: scene_text_encoder(d))  # fmt: skip


def _mug_view(tiny_view_results, session):
    """The training view where the red mug covers most pixels, and its ground-truth mask there."""
    import h5py

    from ccl.scene import read_manifest

    k = tiny_view_results["categories"].index("red mug")
    root = read_manifest(tiny_view_results["scene_dir"] / "scene.json").root
    with h5py.File(root / "gt.h5", "r") as f:
        masks = {c.name: f[c.name]["category_id"][()] == k for c in session.cameras}
    cam = max(session.cameras, key=lambda c: masks[c.name].sum())
    return cam, masks[cam.name]


def widened(mask: np.ndarray, fraction: float) -> np.ndarray:
    """`mask` dilated by `fraction` of its height (a square structuring element)."""
    import cv2

    r = max(1, round(fraction * mask.shape[0]))
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)).astype(bool)


def _other_object_in_view(tiny_view_results, cam, *, exclude: str) -> str:
    """The category other than `exclude` with most pixels in `cam`'s view."""
    import h5py

    from ccl.scene import read_manifest

    cats = tiny_view_results["categories"]
    root = read_manifest(tiny_view_results["scene_dir"] / "scene.json").root
    with h5py.File(root / "gt.h5", "r") as f:
        ids = f[cam.name]["category_id"][()]
    return max((c for c in cats if c != exclude), key=lambda c: int((ids == cats.index(c)).sum()))


def test_camera_of_a_browser_view_is_viser_s_opencv_pose(session):
    from viser import transforms as tf

    from ccl.view import camera_from_view

    rng = np.random.default_rng(0)
    wxyz = rng.normal(size=4)
    wxyz /= np.linalg.norm(wxyz)
    pos = rng.normal(size=3)
    cam = camera_from_view(pos, wxyz, np.deg2rad(60), 1280, 960, max_size=640)
    assert (cam.width, cam.height) == (640, 480)
    np.testing.assert_allclose(cam.camera_to_world[:3, :3], tf.SO3(wxyz).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(cam.center, pos, atol=1e-12)
    # a point on the optical axis at depth 2 lands at the image centre; one at the top edge of the fov
    # (camera y = -tan(30°)·z, OpenCV: y down) on row 0
    c2w = cam.camera_to_world
    uv, z = cam.project(
        np.stack([c2w[:3, :3] @ [0, 0, 2.0] + pos, c2w[:3, :3] @ [0, -2 * np.tan(np.pi / 6), 2.0] + pos])
    )
    np.testing.assert_allclose(uv, [[320, 240], [320, 0]], atol=1e-9)
    np.testing.assert_allclose(z, [2, 2])


def test_relevance_drawn_in_one_pass_equals_view_relevance_and_lies_on_the_object(tiny_view_results, session):
    """The fused render (colour and features in one pass) gives the heat that view_relevance computes on
    the field's own class maps, and the pixels above the threshold fall on the queried object."""
    import dataclasses

    from ccl.query.view import view_relevance
    from ccl.splat.render import render_rgb

    cam, mug = _mug_view(tiny_view_results, session)
    answer = session.ask("red mug")
    assert answer.has_selection, answer.message
    frame = session.render(cam, answer)
    source = session.sources["auto"]
    cfg = dataclasses.replace(session.query_cfg, threshold=answer.threshold)
    rel = view_relevance(source, cam, ["red mug"], query_cfg=cfg, features_cfg=session.features_cfg)
    np.testing.assert_array_equal(frame.heat, rel.heat(0))
    plain = session.render(cam, None)
    assert plain.heat is None
    want = np.rint(render_rgb(session.colour, cam, background=session.background) * 255).astype(np.uint8)
    np.testing.assert_array_equal(plain.image, want)
    # the hand-built field's Gaussians are isotropic blobs that reach past the object's outline: the
    # pixels above the threshold lie on the object's mask widened by 8 % of the image height
    lit = frame.heat > answer.threshold
    near_mug = widened(mug, 0.08)
    assert (lit & mug).sum() > 0.3 * mug.sum() > 0
    assert (lit & near_mug).sum() / lit.sum() > 0.9
    other = _other_object_in_view(tiny_view_results, cam, exclude="red mug")
    lit_other = session.render(cam, session.ask(other)).heat > answer.threshold
    assert lit_other.sum() > 0 and (lit_other & near_mug).sum() / lit_other.sum() < 0.2
    assert not np.array_equal(frame.image, plain.image)
    # while the camera moves, classes are decoded on every 2nd pixel: those pixels are exact (a session
    # keeping no view: this one would draw the full maps it keeps for the camera)
    coarse = dataclasses.replace(session, keep_views=False).render(cam, answer, class_stride=2)
    assert coarse.coarse
    np.testing.assert_array_equal(coarse.heat[::2, ::2], frame.heat[::2, ::2])
    assert coarse.heat.shape == frame.heat.shape


def test_no_match_bad_text_and_export(tiny_view_results, session, tmp_path):
    from ccl.io.gaussians_ply import gaussians_ply_made_by, read_gaussians_ply

    none = session.ask("red mug", threshold=1.0)
    assert not none.has_selection and none.message.startswith("no match for 'red mug'")
    with pytest.raises(ValueError, match="nothing to export: no match"):
        session.export(none, tmp_path)
    assert "no text query given" in session.ask(" ; ").message
    assert "repeated queries" in session.ask("red mug; red mug").message
    assert session.ask("red mug", scale="all").message.startswith("scale 'all': none here")
    answer = session.ask("red mug", scale="wp")
    k = tiny_view_results["categories"].index("red mug")
    out = session.export(answer, tmp_path)
    assert out.name == "tiny_red_mug.ply"
    assert len(read_gaussians_ply(out)) == int((tiny_view_results["classes"] == k + 1).sum())
    assert gaussians_ply_made_by(out)["scale"] == "wp"
    np.testing.assert_array_equal(session.selected_points(answer), read_gaussians_ply(out).means.numpy())


def test_colour_only_folder_opens_without_queries(tiny_colour_only_results):
    from ccl.query import QueryConfig
    from ccl.scene import SceneLoadConfig
    from ccl.view import open_session

    def encoder():
        raise AssertionError("a colour-only folder needs no text encoder")

    s = open_session(tiny_colour_only_results, query_cfg=QueryConfig(), scene_cfg=SceneLoadConfig(),
                     text_encoder=encoder)  # fmt: skip
    assert not s.can_query and s.scale_choices == ()
    assert s.render(s.cameras[0]).image.std() > 1
    assert s.ask("red mug").message.startswith("colour field only")


def _busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s, s.getsockname()[1]


def _codebook_of_another_run(tiny_view_results, tmp_path):
    """A copy whose sp field records its codebook's hash, then the codebook replaced (same shape)."""
    from ccl.io import write_h5
    from ccl.io.provenance import file_record
    from ccl.splat.checkpoint import load_language_field, save_language_field

    d = tmp_path / "tiny"
    shutil.copytree(tiny_view_results["scene_dir"], d)
    book = d / "seed0" / "codebook" / "full" / "sp.h5"
    field_path = d / "seed0" / "gaussians" / "full" / "sp.safetensors"
    f = load_language_field(field_path)
    save_language_field(field_path, f, header={**f.header, "inputs": {"codebook": file_record(book)}})
    protos = tiny_view_results["prototypes"][::-1].copy()
    with write_h5(book, kind="codebook", format_version=1, params={"other": "run"}) as h:
        h.create_dataset("prototypes", data=protos)
    return d


@pytest.mark.parametrize(
    "case, message",
    [
        ("not_results", "not a results folder \\(no scene.json\\)"),
        (
            "no_colour",
            "rgb.safetensors: not found, nor a partial checkpoint of it; the colour field is made by the "
            "workflow's rule train_rgb",
        ),
        ("codebook", "was made from another codebook"),
        ("port", "is in use .*give a free one with --port"),
        ("scale", "--scale all: no language field of that scale"),
        ("frame", "--frame 999: no such view"),
    ],
)
def test_view_bad_input_exits_with_a_message(
    tiny_view_results, tiny_results, tmp_path, capsys, case, message
):
    import re

    d, extra, busy = tiny_view_results["scene_dir"], [], None
    if case == "not_results":
        d = tmp_path
    elif case == "no_colour":
        d = tiny_results["scene_dir"]
    elif case == "codebook":
        d = _codebook_of_another_run(tiny_view_results, tmp_path)
    elif case == "port":
        busy, port = _busy_port()
        extra = ["--port", str(port)]
    elif case == "scale":
        extra = ["--scale", "all"]
    elif case == "frame":
        extra = ["--frame", "999"]
    if case != "port":
        s, port = _busy_port()  # a free port: taken and released, so that no server starts for long
        s.close()
        extra += ["--port", str(port)]
    try:
        assert main(["view", str(d), *extra]) == 2
    finally:
        if busy is not None:
            busy.close()
    err = capsys.readouterr().err
    assert re.search(message, err), err


@pytest.mark.parametrize("port", ["99999", "-1", "0", "http"])
def test_a_port_outside_1_to_65535_is_refused_naming_the_flag(tmp_path, port):
    # through the `ccl` command as typed: no traceback (it was a raw OverflowError from the socket)
    import subprocess
    import sys
    from pathlib import Path

    ccl = str(Path(sys.executable).with_name("ccl"))
    r = subprocess.run([ccl, "view", str(tmp_path), "--port", port], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "ccl view: error: argument --port:" in r.stderr and "give one of 1-65535" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr


def test_a_language_field_of_another_colour_field_is_refused_naming_both_and_the_remake(
    tiny_view_results, tmp_path, capsys
):
    # the sp field records the colour field it was trained against; that colour field retrained since
    from ccl.io.provenance import file_record
    from ccl.splat.checkpoint import load_language_field, load_rgb_field, save_language_field, save_rgb_field

    d = tmp_path / "tiny"
    shutil.copytree(tiny_view_results["scene_dir"], d)
    rgb = d / "seed0" / "gaussians" / "rgb.safetensors"
    field_path = d / "seed0" / "gaussians" / "full" / "sp.safetensors"
    f = load_language_field(field_path)
    save_language_field(field_path, f, header={**f.header, "inputs": {**f.header.get("inputs", {}),
                                                                       "rgb": file_record(rgb)}})  # fmt: skip
    g, header = load_rgb_field(rgb)
    save_rgb_field(rgb, g, header={**header, "iteration": int(header.get("iteration", 0)) + 1})
    s, port = _busy_port()  # a free port, so that no server starts for long if it were not refused
    s.close()
    assert main(["view", str(d), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"{field_path} was made from another colour field ({rgb})" in err, err
    assert f"not from {rgb}" in err and f"`snakemake {field_path} --force`" in err, err
