"""The tiny end-to-end DAG with `device: cuda`: every stage runs on the GPU (the colour and language
fields through gsplat), the tables come out, the files record the CUDA device, and a rerun has
nothing to do."""

from __future__ import annotations

import yaml
from cuda_testkit import needs_cuda
from test_end_to_end import TINY
from workflow_testkit import repo_copy, snakemake

pytestmark = needs_cuda()


def test_tiny_dag_runs_on_cuda(tmp_path):
    repo = repo_copy(tmp_path / "repo")
    (repo / "cuda.yaml").write_text(yaml.safe_dump({**TINY, "device": "cuda"}))
    r = snakemake(repo, "--cores", "4", "--configfile", "cuda.yaml", timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    results = repo / "results"
    assert any(results.glob("tables/*.csv"))
    from ccl.io.masks_h5 import open_raw_masks
    from ccl.splat.checkpoint import load_rgb_field

    (field,) = sorted(results.glob("synthetic/**/gaussians/rgb.safetensors"))
    _, header = load_rgb_field(field)
    assert header["device"].startswith("cuda"), header  # the colour field trained through gsplat
    with open_raw_masks(results / "synthetic" / "masks" / "raw.h5") as raw:
        assert raw.model["simulated"] is True  # the synthetic scene's masks: its simulator, on any device
    again = snakemake(repo, "-n", "--cores", "4", "--configfile", "cuda.yaml")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
