"""The whole DAG on a tiny synthetic scene: every stage runs, the tables come out, a rerun has nothing to do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from ccl.config import REPO_ROOT

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

# Same shape as the default config, sized to run in about a minute on 2 cores.
TINY = {
    "scenes": {"synthetic": {"source": "synthetic", "protocol": "lerf_ovs"}},
    "scales": ["sp", "wp"],
    "variants": ["full", "base"],
    "synthetic": {"n_views": 8, "width": 96, "height": 72, "label_every": 2, "n_points": 1500},
    "codebook": {"n_prototypes": 16, "iterations": 60},
    "rgb": {"iterations": 60, "refine_start_iter": 20, "refine_stop_iter": 50, "refine_every": 10},
    "language": {"iterations": 60},
}


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            SNAKEMAKE,
            "--snakefile",
            str(REPO_ROOT / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(workdir / "config.yaml"),
            "--cores",
            "2",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )


def test_tiny_dag_runs_every_stage_and_writes_tables(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    r = _snakemake(tmp_path)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "results/tables/" in r.stdout + r.stderr  # the closing message says where to look

    results = tmp_path / "results" / "synthetic"
    for rel in (
        "masks/raw.h5",
        "tracks/sp.h5",
        "features/wp.h5",
        "seed0/codebook/full/sp.h5",
        "seed0/gaussians/rgb.safetensors",
        "seed0/gaussians/base/wp.safetensors",
    ):
        assert (results / rel).is_file(), rel
    for variant in ("full", "base"):
        rows = pd.read_csv(results / "seed0" / "eval" / variant / "queries.csv")
        assert len(rows) > 0 and rows["iou"].between(0, 1).all()
        assert set(rows["variant"]) == {variant}
    tables = tmp_path / "results" / "tables"
    assert any(tables.glob("*.md")) and any(tables.glob("*.csv"))
    for rule in ("sam_masks", "train_rgb", "train_language"):
        assert any((tmp_path / "logs" / rule).iterdir()), f"no log for {rule}"

    again = _snakemake(tmp_path, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    # what a user asks next, with the command's defaults: the Gaussians of an object, read over the
    # training views and checked against the maps the field was trained on (whose masks file the field
    # records: a real provenance check here, unlike the hand-built fields of tests/cli)
    ply = tmp_path / "mug.ply"
    q = subprocess.run(
        [str(Path(sys.executable).with_name("ccl")), "query3d", str(results), "red mug", "-o", str(ply)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert q.returncode == 0, q.stdout[-2000:] + q.stderr[-3000:]
    n_selected = int(q.stdout.split(" of ")[0].split()[-1])  # "N of G Gaussians selected (…)"
    assert ply.is_file() and "Gaussians selected" in q.stdout and n_selected > 0, q.stdout
