"""The benchmark-layout repository of the real-path tests: a copy of the repository root with the synthetic
scene exported in the LERF-OVS and 3D-OVS release layouts under data/ (where configs/lerf_ovs.yaml and
configs/3dovs.yaml point), tiny randomly initialised SAM, SAM2 and OpenCLIP checkpoints under
checkpoints/tiny/, and tiny_<benchmark>.yaml: the benchmark config with only its scenes cut to the exported
one and the data root, checkpoint paths, model sizes, device and iteration counts changed. Used by
tests/realpath (on the CPU) and tests/cuda (device: cuda)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml
from realpath.tiny_checkpoints import write_tiny_checkpoints
from workflow_testkit import repo_copy, snakemake

from ccl.config import REPO_ROOT

# The exported scene: small enough for the real models on 2 CPU cores, labelled every other view.
SYNTHETIC = {"n_views": 8, "width": 96, "height": 72, "label_every": 2, "n_points": 1500}
BENCHMARKS = {  # config → (the scene kept from it, its layout)
    "lerf_ovs": ("ramen", "lerf_ovs"),
    "3dovs": ("bed", "3dovs"),
}
# What the tests change in a benchmark config besides data, checkpoints, model sizes and the device: the
# iteration counts (the 3DGS schedule is hours).
RUN_SIZE = {
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


def _benchmark_config(name: str, repo: Path, models: dict[str, dict], device: str) -> dict:
    config = yaml.safe_load((REPO_ROOT / "configs" / f"{name}.yaml").read_text())
    scene, _ = BENCHMARKS[name]
    config["scenes"] = {scene: config["scenes"][scene]}  # its entry as the benchmark config writes it
    for stage in ("masks", "tracks", "features"):
        config[stage] = _relative(models[stage], repo)
    for key, value in RUN_SIZE.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    config["device"] = device
    return config


def benchmark_repo(root: Path, *, device: str) -> Path:
    """A copy of the repository root under `root` with the exported scenes under data/, the tiny models
    under checkpoints/tiny/ (as a user lays out the real ones) and tiny_<benchmark>.yaml for `device`."""
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
        (repo / f"tiny_{name}.yaml").write_text(yaml.safe_dump(_benchmark_config(name, repo, models, device)))
    return repo
