"""`ccl query3d --format 3dgs` on the tiny results folder (conftest.py): the selected Gaussians in 3DGS's
PLY layout, read back by plyfile and by ccl; bad --format and an empty selection refused."""

from __future__ import annotations

import numpy as np
import plyfile  # a dev dependency: the independent reader of the layout
import pytest

from ccl.cli import main


def _field(tiny_results, scale="sp"):
    from ccl.splat.checkpoint import load_language_field

    return load_language_field(tiny_results["run_dir"] / "gaussians" / "full" / f"{scale}.safetensors")


def test_query3d_3dgs_writes_exactly_the_gaussians_of_the_category(tiny_results, tmp_path, capsys):
    from ccl.io.gaussians_ply import gaussians_ply_made_by, read_gaussians_ply

    cats, classes = tiny_results["categories"], tiny_results["classes"]
    want = classes == cats.index("red mug") + 1
    out = tmp_path / "mug.ply"
    # own: this hand-built field's features give each Gaussian its class exactly (and the cleaning that
    # judges them against the training maps left out: test_query3d_clean_labels.py)
    args = ["query3d", str(tiny_results["scene_dir"]), "red mug", "-o", str(out), "--format", "3dgs"]
    assert main([*args, "--select", "own", "--clean", "components"]) == 0
    assert "(3dgs)" in capsys.readouterr().out
    vertex = plyfile.PlyData.read(str(out))["vertex"]
    assert vertex.count == int(want.sum()) > 0
    assert {"f_dc_0", "opacity", "scale_2", "rot_3"} <= {p.name for p in vertex.properties}
    field = _field(tiny_results)
    got = read_gaussians_ply(out)
    np.testing.assert_array_equal(got.means.numpy(), field.gaussians.means.numpy()[want])
    np.testing.assert_array_equal(got.opacity_logits.numpy(), field.gaussians.opacity_logits.numpy()[want])
    made_by = gaussians_ply_made_by(out)
    assert made_by["command"] == "ccl query3d" and made_by["queries"] == ["red mug"]
    assert (made_by["select"], made_by["clean"]) == ("own", "components")  # as asked and the default
    assert (
        made_by["field"]["path"].endswith(f"{made_by['scale']}.safetensors")
        and len(made_by["field"]["sha256"]) == 64
    )


def test_query3d_3dgs_context_keeps_every_gaussian_and_greys_the_others(tiny_results, tmp_path):
    from ccl.io.gaussians_ply import read_gaussians_ply
    from ccl.splat.model import SH_C0

    cats, classes = tiny_results["categories"], tiny_results["classes"]
    want = classes == cats.index("red mug") + 1
    out = tmp_path / "ctx.ply"
    args = [
        "query3d",
        str(tiny_results["scene_dir"]),
        "red mug",
        "-o",
        str(out),
        "--format",
        "3dgs",
        "--context",
        "--select",
        "own",  # the category exactly, on this hand-built field
        "--clean",
        "components",  # not judged against its maps
    ]
    assert main(args) == 0
    got, field = read_gaussians_ply(out), _field(tiny_results)
    assert len(got) == len(classes)
    rgb = (SH_C0 * got.sh0[:, 0].numpy() + 0.5) * 255
    np.testing.assert_allclose(rgb[~want], 60, atol=1e-3)  # the others in the points format's grey
    np.testing.assert_array_equal(got.sh0.numpy()[want], field.gaussians.sh0.numpy()[want])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--format", "splat"], "--format splat: unknown; accepted: points .*; 3dgs "),
        (
            ["--format", "3dgs", "--threshold", "1.0"],
            "no Gaussian above threshold 1.00 .*nothing was written",
        ),
    ],
)
def test_query3d_bad_format_or_empty_selection_exits_with_a_message(
    tiny_results, tmp_path, capsys, extra, message
):
    import re

    out = tmp_path / "x.ply"
    assert main(["query3d", str(tiny_results["scene_dir"]), "red mug", "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not out.exists()
