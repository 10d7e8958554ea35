"""The `ccl` command line on a tiny results folder (see conftest.py): query, query3d, evaluate, tables."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from ccl.cli import main


def _read_ply(path):
    raw = path.read_bytes()
    head, body = raw.split(b"end_header\n", 1)
    lines = head.decode().splitlines()
    assert lines[0] == "ply" and lines[1] == "format binary_little_endian 1.0"
    n = int(next(ln for ln in lines if ln.startswith("element vertex")).split()[-1])
    props = [ln.split()[-1] for ln in lines if ln.startswith("property")]
    assert props == ["x", "y", "z", "red", "green", "blue"]
    arr = np.frombuffer(body, dtype=[("p", "<f4", 3), ("c", "u1", 3)], count=n)
    assert len(body) == n * 15
    return arr["p"], arr["c"]


def test_query3d_selects_exactly_the_gaussians_of_the_category(tiny_results, tmp_path, capsys):
    cats, classes = tiny_results["categories"], tiny_results["classes"]
    k = cats.index("red mug")
    out = tmp_path / "mug.ply"
    # own: this hand-built field's features give each Gaussian its class exactly (views, the default,
    # reads the classes drawn where a Gaussian shows: test_query3d_select_views.py); clean components:
    # the labels cleaning would also judge the field against its maps, where a point or two at the mug's
    # rim was labelled otherwise (test_query3d_clean_labels.py)
    own = ["--select", "own", "--clean", "components"]
    assert main(["query3d", str(tiny_results["scene_dir"]), "red mug", "-o", str(out), *own]) == 0
    xyz, rgb = _read_ply(out)
    assert len(xyz) == int((classes == k + 1).sum()) > 0
    assert "Gaussians selected" in capsys.readouterr().out
    # with context, every Gaussian is written and the others are dark grey
    out2 = tmp_path / "ctx.ply"
    assert (
        main(["query3d", str(tiny_results["scene_dir"]), "red mug", "-o", str(out2), "--context", *own]) == 0
    )
    xyz2, rgb2 = _read_ply(out2)
    assert len(xyz2) == len(classes)
    assert (np.all(rgb2 == 60, axis=1)).sum() >= len(classes) - len(xyz)


def test_query_writes_an_overlay_png(tiny_results, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "q.png"
    rc = main(
        ["query", str(tiny_results["scene_dir"]), "red mug", "teddy bear", "--frame", "0", "-o", str(out)]
    )
    assert rc == 0
    img = Image.open(out)
    assert img.size[0] > 200 and img.mode in ("RGB", "RGBA")
    text = capsys.readouterr().out
    assert "'red mug': scale sp" in text and "% of pixels selected" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["query", "{d}", "", "--frame", "0", "-o", "{t}/x.png"], "empty query string"),
        (["query", "{d}", "mug", "--frame", "77", "-o", "{t}/x.png"], "--frame 77: no such view"),
        (["query3d", "{d}", "mug", "-o", "{t}/x.ply", "--variant", "push"], "no trained language field"),
        (["query3d", "{d}", "mug", "-o", "{t}/x.ply", "--scale", "all"], "no language field of that scale"),
        (["tables", "{t}/nothing"], "no <scene>/seed<N>/eval/<variant>/queries.csv"),
        (
            ["query3d", "{d}", "mug", "-o", "{t}/x.ply", "--seed", "4"],
            "no run of seed 4 \\(no seed4/\\); runs here: seed0",
        ),
        (
            ["query3d", "{d}/seed0", "mug", "-o", "{t}/x.ply", "--seed", "4"],
            "is the run of seed 0, and --seed 4",
        ),
        (["query3d", "{t}", "mug", "-o", "{t}/x.ply"], "not a results folder \\(no scene.json\\)"),
        # the output's type comes from its suffix: none, or one the writer lacks, is refused up front
        (["query", "{d}", "mug", "--frame", "0", "-o", "{t}/x"], "no suffix; .*accepted: .png, .jpg"),
        (["query3d", "{d}", "mug", "-o", "{t}/x.obj"], "suffix '.obj'.*accepted: .ply"),
    ],
)
def test_bad_input_exits_with_a_message(tiny_results, tmp_path, capsys, args, message):
    argv = [a.format(d=tiny_results["scene_dir"], t=tmp_path) for a in args]
    assert main(argv) == 2
    import re

    assert re.search(message, capsys.readouterr().err), message


def test_a_scene_with_several_runs_needs_a_seed(tiny_results, tmp_path, capsys):
    """Each seed of config `seeds` is a run of its own (results/<scene>/seed<N>): with several, a command
    on the scene's folder asks which, and `--seed` or the run's folder answers."""
    d = tmp_path / "tiny"
    shutil.copytree(tiny_results["scene_dir"], d)
    shutil.copytree(d / "seed0", d / "seed2")
    argv = ["query3d", str(d), "mug", "-o", str(tmp_path / "x.ply")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{d} has runs of seeds [0, 2]: name one with --seed N" in err
    assert main([*argv, "--seed", "2"]) == 0 and (tmp_path / "x.ply").is_file()
    assert main(["query3d", str(d / "seed2"), "mug", "-o", str(tmp_path / "y.ply")]) == 0


def test_evaluate_then_tables(tiny_results, tmp_path, capsys):
    d = tiny_results["scene_dir"]
    out = tmp_path / "results" / "tiny" / "seed0" / "eval" / "full"
    assert main(["evaluate", str(d), "-o", str(out)]) == 0
    rows = pd.read_csv(out / "queries.csv")
    from ccl.eval import read_lerf_label_dir

    labels = read_lerf_label_dir(json.loads((d / "scene.json").read_text())["labels"])
    assert len(rows) == sum(len(fl.categories) for fl in labels)  # one row per (frame, category)
    assert rows["iou"].between(0, 1).all() and set(rows["loc_hit"]) <= {0.0, 1.0}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["results"]["sp+wp"]["miou"] == pytest.approx(rows["iou"].mean())
    assert summary["text_model"]["simulated"] is True
    assert len(list((out / "figures").glob("*.png"))) == min(2, len(labels))
    assert "mIoU" in capsys.readouterr().out

    assert main(["tables", str(tmp_path / "results")]) == 0
    t1 = pd.read_csv(tmp_path / "results" / "tables" / "table1.csv")
    assert t1.loc[0, "tiny"] == pytest.approx(100 * rows["iou"].mean(), abs=1e-3)
    assert (tmp_path / "results" / "tables" / "efficiency.md").is_file()


def test_evaluate_scene_with_the_3dovs_protocol(tiny_results, tiny_scene_dir, tmp_path):
    """A 3D-OVS segmentations folder made from the synthetic ground truth, evaluated end to end."""
    import h5py
    from PIL import Image

    from ccl.eval import EvalConfig, evaluate_scene
    from ccl.features import FeaturesConfig
    from ccl.query import QueryConfig, scene_fields
    from ccl.scene import SceneLoadConfig, write_manifest

    seg = tmp_path / "segmentations"
    cats = tiny_results["categories"]
    (seg / "00").mkdir(parents=True)
    (seg / "classes.txt").write_text("\n".join(cats) + "\ntable\n")  # 3D-OVS classes cover every pixel
    with h5py.File(tiny_scene_dir / "gt.h5", "r") as f:
        cid = f["frame_00000"]["category_id"][()]
    for k, c in enumerate([*cats, "table"]):
        Image.fromarray(((cid == (k if c != "table" else -1)) * 255).astype(np.uint8)).save(
            seg / "00" / f"{c}.png"
        )
    manifest = write_manifest(
        tmp_path / "scene.json", name="tiny", entry={"source": "synthetic", "protocol": "3dovs", "labels": str(seg)},
        source_dir=tiny_scene_dir, cfg=SceneLoadConfig(),
    )  # fmt: skip
    fields, codebooks = scene_fields(tiny_results["scene_dir"], "full")
    out = tmp_path / "eval"
    summary = evaluate_scene(
        out, manifest=manifest, fields=fields, codebooks=codebooks, variant="full", seed=0,
        query_cfg=QueryConfig(), eval_cfg=EvalConfig(), features_cfg=FeaturesConfig(), scene_cfg=SceneLoadConfig(),
    )  # fmt: skip
    rows = pd.read_csv(out / "queries.csv")
    assert len(rows) == len(cats) + 1 and set(rows["protocol"]) == {"3dovs"}
    assert sorted(rows["query"]) == sorted([*cats, "table"])  # every class, 0 for classes not in view
    assert rows["loc_hit"].isna().all() and summary["results"]["sp+wp"]["loc_acc"] is None
    # The field's class c (0 = "table", k + 1 = cats[k]) has its own text as prototype, so the argmax over
    # the classes is the rendered class: each IoU is that of the render against the ground truth.
    from ccl.scene import load_scene_from_manifest
    from ccl.splat.checkpoint import load_language_field
    from ccl.splat.render import render_class_map

    cam = load_scene_from_manifest(manifest, cfg=SceneLoadConfig()).camera("frame_00000")
    rendered = render_class_map(load_language_field(fields["sp"]), cam) - 1  # -1 = table
    for k, c in enumerate([*cats, "table"]):
        want = k if c != "table" else -1
        p, g = rendered == want, cid == want
        union = (p | g).sum()
        expected = (p & g).sum() / union if union else 0.0
        assert rows.set_index("query").loc[c, "iou"] == pytest.approx(expected), c


def test_python_dash_m_ccl_runs_the_command_line(tmp_path):
    """`python -m ccl` is the `ccl` script: same commands, same exit status and message on bad input."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "ccl", "tables", str(tmp_path)], capture_output=True, text=True)
    assert p.returncode == 2
    assert "ccl tables: error:" in p.stderr and "queries.csv" in p.stderr


def test_weights_and_the_sam2_backend_do_not_import_each_other():
    """`ccl.weights` (make checkpoints) reads the SAM2 checkpoint table without loading the sam2 backend."""
    import subprocess
    import sys

    code = "import sys, ccl.weights; print('ccl.tracks.backends.sam2' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "False"


@pytest.mark.parametrize("command", ["query", "query3d", "render", "view", "export", "evaluate", "tables"])
def test_every_command_prints_its_help(command, capsys):
    # argparse formats each help with %: a help text with a bare % (a share written as "25%") raised
    # TypeError at `ccl <command> --help` and nowhere else
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ccl {command}") and "--help" in out
