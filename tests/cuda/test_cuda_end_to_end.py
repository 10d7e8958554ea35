"""The tiny end-to-end DAG with `device: cuda`: every stage runs on the GPU (the colour and language
fields through gsplat), the tables come out, the files record the CUDA device, and a rerun has
nothing to do."""

from __future__ import annotations

import json

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
    fields = sorted(results.glob("synthetic/**/gaussians/rgb.safetensors"))
    assert fields, sorted(str(p) for p in results.rglob("*"))[:50]
    from safetensors import safe_open

    with safe_open(str(fields[0]), framework="pt") as f:
        header = json.loads(f.metadata()["header"]) if "header" in (f.metadata() or {}) else f.metadata()
    assert "cuda" in json.dumps(header), header
    again = snakemake(repo, "-n", "--cores", "4", "--configfile", "cuda.yaml")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
