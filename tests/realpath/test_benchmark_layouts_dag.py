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

import pandas as pd
import pytest
import yaml
from realpath.benchmark_layouts import BENCHMARKS, benchmark_repo
from workflow_testkit import job_counts, snakemake

from ccl import HOST_TENSOR_GUARD_ENV


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return benchmark_repo(tmp_path_factory.mktemp("realpath"), device="cpu")


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_benchmark_layout_runs_the_whole_dag_with_the_real_backends(repo, name):
    scene, layout = BENCHMARKS[name]
    r = snakemake(
        repo,
        "--configfile",
        f"tiny_{name}.yaml",
        "--cores",
        "all",
        timeout=900,
        env={HOST_TENSOR_GUARD_ENV: "1"},
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

    # Another seed: the real models draw nothing, so only the per-seed stages are planned (in seed1/)
    reseeded = snakemake(repo, "--configfile", f"tiny_{name}.yaml", "--config", "seed=1", "-n")
    assert reseeded.returncode == 0, reseeded.stdout[-3000:] + reseeded.stderr[-3000:]
    per_seed = {"train_codebook", "train_rgb", "train_language", "evaluate", "tables", "all"}
    assert set(job_counts(reseeded.stdout)) <= per_seed, reseeded.stdout[-3000:]

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
