"""The real path as its user runs it: benchmark-layout scenes through the real backends, through Snakemake.

From a copy of the repository root, the workflow exports its synthetic scene in the LERF-OVS and 3D-OVS
release layouts (data/lerf_ovs/ramen with label/ramen, data/3dovs/bed with bed/segmentations, where the
benchmark configs point); then configs/lerf_ovs.yaml and configs/3dovs.yaml, with only their scenes cut
to the exported one and the data root, checkpoint paths, model sizes, device and iteration counts
changed, run the whole DAG with segment-anything, sam2 and open_clip on tiny randomly initialised
models of the real architectures (official file formats), through to the tables. Random weights make
the masks meaningless, so this asserts every output, the tables' rows and that a rerun has nothing to
do, not accuracy. Every job runs under the host-tensor guard (ccl/host_tensor_guard.py): a tensor that
ccl's code makes off the data's device fails here, on a CPU, where it would fail on a GPU.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny_checkpoints import write_tiny_checkpoints
from workflow_testkit import job_counts, repo_copy, snakemake

from ccl import HOST_TENSOR_GUARD_ENV
from ccl.config import REPO_ROOT

# The exported scene: small enough for the real models on 2 CPU cores, labelled every other view.
SYNTHETIC = {"n_views": 8, "width": 96, "height": 72, "label_every": 2, "n_points": 1500}
BENCHMARKS = {  # config → (the scene kept from it, its layout)
    "lerf_ovs": ("ramen", "lerf_ovs"),
    "3dovs": ("bed", "3dovs"),
}
# What the test changes in a benchmark config besides data, checkpoints and model sizes: the device
# (no GPU in CI) and the iteration counts (the 3DGS schedule is hours).
RUN_SIZE = {
    "device": "cpu",
    "codebook": {"n_prototypes": 8, "iterations": 40},
    "rgb": {
        "iterations": 60,
        "refine_start_iter": 20,
        "refine_stop_iter": 50,
        "refine_every": 10,
        "reset_every": 3000,
        "checkpoint_every": 30,
    },
    "language": {"iterations": 60, "checkpoint_every": 30},
}


def _relative(section: dict, root: Path) -> dict:
    """Checkpoint paths written as the benchmark configs write them: relative to the repository root."""
    return {k: os.path.relpath(v, root) if isinstance(v, str) and v.startswith(str(root)) else v
            for k, v in section.items()}  # fmt: skip


def _benchmark_config(name: str, repo: Path, models: dict[str, dict]) -> dict:
    config = yaml.safe_load((REPO_ROOT / "configs" / f"{name}.yaml").read_text())
    scene, _ = BENCHMARKS[name]
    config["scenes"] = {scene: config["scenes"][scene]}  # its entry as the benchmark config writes it
    for stage in ("masks", "tracks", "features"):
        config[stage] = _relative(models[stage], repo)
    for key, value in RUN_SIZE.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the repository root with the exported scenes under data/ and the tiny models under
    checkpoints/tiny/, as a user lays out the real ones."""
    root = tmp_path_factory.mktemp("realpath")
    exporter = repo_copy(root / "exporter")
    (exporter / "synthetic.yaml").write_text(
        yaml.safe_dump(
            {"scenes": {s: {"source": "synthetic"} for s, _ in BENCHMARKS.values()}, "synthetic": SYNTHETIC}
        )
    )
    targets = [f"results/{scene}/export/{layout}" for scene, layout in BENCHMARKS.values()]
    r = snakemake(exporter, *targets, "--cores", "all", "--configfile", "synthetic.yaml")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    repo = repo_copy(root / "repo")
    for name, (scene, layout) in BENCHMARKS.items():
        data_root = yaml.safe_load((REPO_ROOT / "configs" / f"{name}.yaml").read_text())["data_root"]
        shutil.copytree(exporter / "results" / scene / "export" / layout, repo / data_root)
    models = write_tiny_checkpoints(repo / "checkpoints" / "tiny")
    for name in BENCHMARKS:
        (repo / f"tiny_{name}.yaml").write_text(yaml.safe_dump(_benchmark_config(name, repo, models)))
    return repo


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_benchmark_layout_runs_the_whole_dag_with_the_real_backends(repo, name):
    scene, layout = BENCHMARKS[name]
    r = snakemake(
        repo, "--configfile", f"tiny_{name}.yaml", "--cores", "all", timeout=900, env={HOST_TENSOR_GUARD_ENV: "1"}
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert f"{scene}: " in out and "results/tables/" in out  # the closing message names what was built

    results = repo / "results" / scene
    config = yaml.safe_load((repo / f"tiny_{name}.yaml").read_text())
    run = "seed0/"  # the one seed's run (ccl.results_tree)
    expected = [
        "scene.json",
        "masks/raw.h5",
        f"{run}gaussians/rgb.safetensors",
        f"{run}gaussians/rgb.metrics.json",
    ]
    for scale in config["scales"]:
        expected += [f"masks/{scale}.h5", f"tracks/{scale}.h5", f"features/{scale}.h5"]
        for variant in config["variants"]:
            expected += [
                f"{run}codebook/{variant}/{scale}.h5",
                f"{run}gaussians/{variant}/{scale}.safetensors",
            ]
    for variant in config["variants"]:
        expected += [f"{run}eval/{variant}/queries.csv", f"{run}eval/{variant}/summary.json"]
    missing = [rel for rel in expected if not (results / rel).is_file()]
    assert not missing, missing

    import h5py

    for stage, backend in (
        ("masks/raw.h5", "sam"),
        ("tracks/sp.h5", "sam2"),
        ("features/sp.h5", "open_clip"),
    ):
        with h5py.File(results / stage) as f:
            assert f'"backend": "{backend}"' in f.attrs["model"], (stage, f.attrs["model"])
            assert '"simulated": false' in f.attrs["model"], stage

    suffix = "" if layout == "lerf_ovs" else "_3dovs"
    table1 = pd.read_csv(repo / "results" / "tables" / f"table1{suffix}.csv")
    assert scene in " ".join(map(str, table1.columns)) + " ".join(map(str, table1.iloc[:, 0])), table1
    queries = pd.read_csv(results / "seed0" / "eval" / "full" / "queries.csv")
    assert len(queries) > 0 and queries["iou"].between(0, 1).all()

    again = snakemake(repo, "--configfile", f"tiny_{name}.yaml", "--cores", "all", "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]

    # The label files are inputs of the evaluation: an edited or removed one reruns exactly it and the
    # tables, never a model stage.
    labels = repo / config["data_root"] / config["scenes"][scene]["labels"]
    edited_file = sorted(labels.glob("*.json"))[0] if layout == "lerf_ovs" else labels / "classes.txt"
    edited_file.write_bytes(edited_file.read_bytes() + b"\n")  # Snakemake compares content, not only times
    edited = snakemake(repo, "--configfile", f"tiny_{name}.yaml", "-n")
    assert edited.returncode == 0, edited.stdout[-3000:] + edited.stderr[-3000:]
    assert job_counts(edited.stdout) == {"evaluate": 1, "tables": 1, "all": 1}, edited.stdout[-3000:]
    # a label frame (LERF-OVS) or an evaluated view (3D-OVS) taken away
    removed_file = (
        sorted(labels.glob("*.json"))[-1] if layout == "lerf_ovs" else sorted(labels.glob("[0-9]*"))[-1]
    )
    removed_file.rename(labels.parent / "removed.bak")
    removed = snakemake(repo, "--configfile", f"tiny_{name}.yaml", "-n")
    assert removed.returncode == 0, removed.stdout[-3000:] + removed.stderr[-3000:]
    assert job_counts(removed.stdout) == {"evaluate": 1, "tables": 1, "all": 1}, removed.stdout[-3000:]
