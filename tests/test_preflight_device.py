"""`device: cuda` where torch sees no CUDA device: refused with the fix before any job when the jobs run
on this machine; planned without complaint by a dry run (which needs no GPU) and left to the nodes'
jobs under a cluster executor."""

from __future__ import annotations

import pytest
import yaml
from workflow_testkit import repo_copy, snakemake

from ccl.preflight import PreflightError, check_device, device_problems

TINY = {
    "scenes": {"synthetic": {"source": "synthetic", "protocol": "lerf_ovs"}},
    "synthetic": {"n_views": 4, "width": 48, "height": 36, "label_every": 2, "n_points": 300},
    "codebook": {"n_prototypes": 16},
}


def _no_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_a_device_is_a_problem_with_the_fix(monkeypatch, device):
    _no_cuda(monkeypatch)
    (problem,) = device_problems({"device": device})
    assert problem.key == "device" and repr(device) in problem.what
    assert "device: auto" in problem.fix and "device: cpu" in problem.fix
    with pytest.raises(PreflightError, match=r"\[device\] device is"):
        check_device({"device": device}, source="configs/lerf_ovs.yaml")


def test_cpu_and_auto_need_no_cuda(monkeypatch):
    _no_cuda(monkeypatch)
    assert device_problems({"device": "cpu"}) == [] and device_problems({"device": "auto"}) == []


def test_a_device_past_the_last_is_named(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_problems({"device": "cuda:1"}) == []
    (problem,) = device_problems({"device": "cuda:2"})
    assert "2 CUDA device(s), cuda:0..cuda:1" in problem.what


def test_the_workflow_refuses_cuda_here_before_any_job_and_a_dry_run_plans_it(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: device: cuda is not refused here")
    repo = repo_copy(tmp_path / "repo")
    (repo / "run.yaml").write_text(yaml.safe_dump({**TINY, "device": "cuda"}))
    dry = snakemake(repo, "-n", "--cores", "1", "--configfile", "run.yaml")
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    r = snakemake(repo, "--cores", "1", "--configfile", "run.yaml")
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert "[device] device is 'cuda' but" in out and "set `device: auto`" in out, out[-3000:]
    assert not (repo / "results").exists()  # no job ran
