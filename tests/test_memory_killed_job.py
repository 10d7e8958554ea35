"""A model job the kernel kills for memory (SIGKILL: no handler of the job runs) still tells its user
why: the job's log starts with its estimated peak and the keys that lower it, and Snakemake prints the
failed job's log (the profile's show-failed-logs). Here a real SAM job (tiny checkpoint) is sent
SIGKILL from outside once it has started, as the kernel's out-of-memory killer would."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import yaml
from realpath.tiny_checkpoints import write_tiny_checkpoints
from workflow_testkit import SNAKEMAKE, minimal_lerf_ovs_scene, repo_copy


def _job_pids(script: str, cwd: Path) -> list[int]:
    """Processes running Snakemake's copy of `script` (.snakemake/scripts/tmp*.<script>) in `cwd`."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().decode(errors="replace")
            if script in cmd and "python" in cmd and os.readlink(d / "cwd") == str(cwd):
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


def test_a_sam_job_killed_by_sigkill_leaves_the_memory_line_on_the_console(tmp_path):
    repo = repo_copy(tmp_path / "repo").resolve()
    minimal_lerf_ovs_scene(repo / "data", "tiny")
    config = {
        "device": "cpu",
        "scenes": {"tiny": {"source": "colmap", "path": "data/tiny", "protocol": "none"}},
        "codebook": {"n_prototypes": 16},
        **write_tiny_checkpoints(repo / "models"),
    }
    (repo / "tiny.yaml").write_text(yaml.safe_dump(config))
    log = repo / "logs" / "sam_masks" / "tiny.log"
    proc = subprocess.Popen(
        [SNAKEMAKE, "results/tiny/masks/raw.h5", "--configfile", "tiny.yaml"],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    killed = []
    deadline = time.monotonic() + 120
    while not killed and time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and "memory:" in log.read_text():
            for pid in _job_pids("sam_masks.py", repo):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.02)
    out, _ = proc.communicate(timeout=120)
    assert killed, out  # the job wrote its memory line and was killed while running
    assert proc.returncode != 0, out
    assert not (repo / "results/tiny/masks/raw.h5").exists()
    # the console's copy of the failed job's log: the estimate, what a SIGKILL means, the keys to lower
    line = next(x for x in out.splitlines() if "memory: this job is estimated to need about" in x)
    for part in ("GB host", "(64 x 48 px, 8 frames", "SIGKILL", "scene_load.max_image_side",
                 "masks.points_per_batch", "--set-resources sam_masks:mem_mb=N"):  # fmt: skip
        assert part in line, (part, line)
