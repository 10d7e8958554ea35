"""bench/gpu_check.py, which `make gpu-check` runs on a GPU machine, exercised here with tiny models on
the CPU (`--device cpu --tiny`): every stage's code path runs, the table and the JSON come out with a
projection for a LERF scene beside the paper's Table 4; without CUDA its default run stops, saying so."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ccl.config import REPO_ROOT

STAGES = {
    "masks: SAM vit_h (tiny)": ("preprocessing", "frame", 300),
    "tracks: SAM2 hiera_l (tiny)": ("preprocessing", "frame", 600),
    "features: OpenCLIP ViT-B-16 (tiny)": ("preprocessing", "crop", 36_000),
    "rasterize 3 ch fwd+bwd": ("training", "iteration", 30_000),
    "rasterize 8 ch fwd+bwd": ("", "iteration", 60_000),
    "language field iterations": ("training", "iteration", 60_000),
}


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", *args], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout, env=env,
    )  # fmt: skip


def test_the_tiny_cpu_run_times_every_stage_and_projects_a_lerf_scene(tmp_path):
    out = tmp_path / "gpu_check.json"
    r = _run("--device", "cpu", "--tiny", "--out", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["failed"] == {} and report["skipped_for_budget"] == []
    got = {t["stage"]: t for t in report["timings"]}
    assert set(got) == set(STAGES)
    for stage, (group, unit, units) in STAGES.items():
        t = got[stage]
        assert (t["group"], t["unit"], t["lerf_units"]) == (group, unit, units), stage
        assert 0 < t["per_unit_s"] <= t["measured_s"] + 1e-12, stage
        assert t["projected_s"] == pytest.approx(t["per_unit_s"] * units)
    preprocessing = sum(t["projected_s"] for t in got.values() if t["group"] == "preprocessing")
    assert f"{preprocessing / 60:.1f} min" in report["table"] or f"{preprocessing:.3g} s" in report["table"]
    for line in ("= preprocessing", "16 min", "= training", "74 min", "= total", "90 min"):
        assert line in report["table"] and line in r.stdout
    assert report["environment"]["device"] == "cpu" and report["sizes"]["n_gaussians"] == 2_000


def test_without_cuda_the_gpu_run_stops_saying_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the default run would start")
    r = _run("--out", str(tmp_path / "x.json"), timeout=60)
    assert r.returncode == 2 and "torch sees no CUDA device" in r.stdout and "--device cpu --tiny" in r.stdout
    assert not (tmp_path / "x.json").exists()


def test_the_cuda_tests_run_with_the_dag_last_and_are_reported():
    import torch

    if torch.cuda.is_available():  # they would run in full a second time: make gpu-check runs them
        pytest.skip("on a CUDA machine tests/cuda runs in full, directly and in make gpu-check")
    from bench.gpu_check import run_cuda_tests

    r = run_cuda_tests(timeout_s=120)
    assert r["returncode"] == 0, r["tail"]
    assert "passed" in r["summary"]
    lines = [
        line for line in r["tail"].splitlines() if "::" in line and ("PASSED" in line or "SKIPPED" in line)
    ]
    assert lines and "test_cuda_end_to_end" in lines[-1], lines[-3:]
