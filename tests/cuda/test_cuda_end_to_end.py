"""The DAG with `device: cuda`: the tiny synthetic config (every stage on the GPU, the colour and language
fields through gsplat), and the real path as its user runs it on a GPU: the two benchmark layouts
(LERF-OVS, 3D-OVS) through segment-anything, sam2 and open_clip (tiny random checkpoints of the real
architectures) to the tables. The files record the CUDA device, and a rerun has nothing to do."""

from __future__ import annotations

import json

import h5py
import pytest
import yaml
from cuda_testkit import needs_cuda
from realpath.benchmark_layouts import BENCHMARKS, benchmark_repo
from test_end_to_end import TINY
from workflow_testkit import repo_copy, snakemake

from ccl.splat.checkpoint import load_rgb_field

pytestmark = needs_cuda()


def test_tiny_dag_runs_on_cuda(tmp_path):
    repo = repo_copy(tmp_path / "repo")
    (repo / "cuda.yaml").write_text(yaml.safe_dump({**TINY, "device": "cuda"}))
    r = snakemake(repo, "--cores", "4", "--configfile", "cuda.yaml", timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    results = repo / "results"
    assert any(results.glob("tables/*.csv"))
    from ccl.io.masks_h5 import open_raw_masks

    (field,) = sorted(results.glob("synthetic/**/gaussians/rgb.safetensors"))
    _, header = load_rgb_field(field)
    assert header["device"].startswith("cuda"), header  # the colour field trained through gsplat
    with open_raw_masks(results / "synthetic" / "masks" / "raw.h5") as raw:
        assert raw.model["simulated"] is True  # the synthetic scene's masks: its simulator, on any device
    again = snakemake(repo, "-n", "--cores", "4", "--configfile", "cuda.yaml")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]


@pytest.fixture(scope="module")
def cuda_repo(tmp_path_factory):
    return benchmark_repo(tmp_path_factory.mktemp("realpath_cuda"), device="cuda")


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_benchmark_layout_runs_the_real_backends_on_cuda_to_the_tables(cuda_repo, name):
    scene, layout = BENCHMARKS[name]
    r = snakemake(cuda_repo, "--configfile", f"tiny_{name}.yaml", "--cores", "all", timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    results = cuda_repo / "results" / scene
    for stage, backend in (
        ("masks/raw.h5", "sam"),
        ("tracks/sp.h5", "sam2"),
        ("features/sp.h5", "open_clip"),
    ):
        with h5py.File(results / stage) as f:
            model = json.loads(f.attrs["model"])
        assert model["backend"] == backend and model["device"].startswith("cuda"), (stage, model)
    _, header = load_rgb_field(results / "seed0" / "gaussians" / "rgb.safetensors")
    assert header["device"].startswith("cuda"), header
    suffix = "" if layout == "lerf_ovs" else "_3dovs"
    assert (cuda_repo / "results" / "tables" / f"table1{suffix}.csv").is_file()
    again = snakemake(cuda_repo, "--configfile", f"tiny_{name}.yaml", "--cores", "all", "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
