"""ccl.runlog: a job's progress lines (format, rate, when), where they go, and the job's thread count."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from ccl.config import REPO_ROOT
from ccl.runlog import (
    PROGRESS_EVERY_ENV,
    THREAD_ENV_VARS,
    ProgressLine,
    announce,
    format_progress,
    job_name,
    progress,
    script_logging,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_format_progress_gives_count_rate_and_time_left():
    line = format_progress("sam_masks ramen", 37, 300, unit="frame", elapsed_s=37 * 2.1)
    assert line == "sam_masks ramen: 37/300 frames, 2.1 s/frame, ~9 min left"  # 263 × 2.1 s = 9.2 min
    # fast loops give units per second; a resumed run's rate counts only the steps it ran
    line = format_progress("train_rgb ramen", 110, 800, unit="step", elapsed_s=5.0, initial=100)
    assert line == "train_rgb ramen: 110/800 steps, 2.0 steps/s, ~6 min left"  # 690 × 0.5 s = 345 s
    assert format_progress("x", 3, None, unit="view", elapsed_s=45.0) == "x: 3 views, 15 s/view"
    assert format_progress("x", 3, 4, unit="view", elapsed_s=0.6) == "x: 3/4 views, 5.0 views/s, ~0.2 s left"
    assert (
        format_progress("x", 2, 4000, unit="frame", elapsed_s=60.0)
        == "x: 2/4000 frames, 30 s/frame, ~33.3 h left"
    )
    done = format_progress("x", 300, 300, unit="frame", elapsed_s=630.0, finished=True)
    assert done == "x: 300/300 frames, 2.1 s/frame, done in 10 min"


def test_progress_line_reports_the_first_item_then_every_interval_then_the_end():
    clock = FakeClock()
    meter = ProgressLine("codebook ramen", unit="step", total=100, every_s=20.0, clock=clock)
    lines = {}
    for done in range(1, 101):
        clock.now += 1.5  # 1.5 s per step
        line = meter.update(done)
        if line is not None:
            lines[done] = line
    lines["end"] = meter.finish(100)
    # first item; then the first item whose end is ≥ 20 s after the last line (14 × 1.5 = 21 s), ...
    assert list(lines) == [1, 15, 29, 43, 57, 71, 85, 99, "end"]
    assert lines[1] == "codebook ramen: 1/100 steps, 1.5 s/step, ~2 min left"
    assert lines[57] == "codebook ramen: 57/100 steps, 1.5 s/step, ~64 s left"
    assert lines["end"] == "codebook ramen: 100/100 steps, 1.5 s/step, done in 2 min"


def test_job_name_is_the_rule_and_its_wildcard_values():
    assert job_name("sam_masks", ["ramen"]) == "sam_masks ramen"
    from snakemake.iocontainers import Wildcards

    wildcards = Wildcards(fromdict={"scene": "ramen", "seed": "2", "variant": "full", "scale": "sp"})
    assert job_name("train_language", wildcards) == "train_language ramen seed2 full sp"
    assert job_name("train_language", {"scene": "ramen", "variant": "full", "scale": "sp"}) == (
        "train_language ramen full sp"
    )
    assert job_name("tables") == "tables"


def _job(log: Path, **over):
    return SimpleNamespace(
        log=[str(log)], threads=None, rule="sam_masks", wildcards={"scene": "ramen"}, **over
    )


def test_a_job_reports_progress_on_the_console_and_in_its_log(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(PROGRESS_EVERY_ENV, "3600")  # only the first item's line and the end's
    log = tmp_path / "logs" / "sam_masks" / "ramen.log"
    with script_logging(_job(log)):
        seen = list(progress(range(5), desc="masks ramen", unit="frame"))
    assert seen == [0, 1, 2, 3, 4]
    console = capsys.readouterr().err.splitlines()  # the stderr the process had before the log took it
    assert len(console) == 2, console
    assert re.fullmatch(r"sam_masks ramen: 1/5 frames, .+ frames/s, ~[\d.]+ s left", console[0]), console[0]
    assert re.fullmatch(r"sam_masks ramen: 5/5 frames, .+, done in [\d.]+ s", console[1]), console[1]
    text = log.read_text()
    for line in console:
        assert f"INFO ccl.progress: {line}\n" in text
    assert "it/s" not in text and "frame/s]" not in text  # no tqdm bar in the log


def test_a_job_announces_its_step_at_once_and_counts_batches_in_their_units(tmp_path, capsys, monkeypatch):
    """A stage says what it starts before its first item, and a batch of 3 photos counts 3 photos, so
    the rate and the time left are per photo (SIFT's batches in ccl.sfm)."""
    import logging

    monkeypatch.setenv(PROGRESS_EVERY_ENV, "3600")
    with script_logging(_job(tmp_path / "poses.log")):
        announce(logging.getLogger("t"), "SIFT on 5 photos")
        batches = [["a", "b", "c"], ["d", "e"]]
        seen = list(progress(batches, desc="SIFT", unit="photo", total=5, weight=len))
    assert seen == batches
    console = capsys.readouterr().err.splitlines()
    assert console[0] == "sam_masks ramen: SIFT on 5 photos", console
    assert re.fullmatch(r"sam_masks ramen: 3/5 photos, .+, ~[\d.]+ s left", console[1]), console[1]
    assert re.fullmatch(r"sam_masks ramen: 5/5 photos, .+, done in [\d.]+ s", console[2]), console[2]


def test_outside_a_job_progress_is_a_tqdm_bar(capsys):
    assert list(progress(range(3), desc="loose", unit="frame")) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "loose" in err and "3/3" in err and "ccl.progress" not in err


def test_a_bad_progress_interval_is_refused_before_the_job_runs(tmp_path, monkeypatch):
    monkeypatch.setenv(PROGRESS_EVERY_ENV, "soon")
    with pytest.raises(ValueError, match=f"{PROGRESS_EVERY_ENV}='soon'.*number > 0"):
        with script_logging(_job(tmp_path / "x.log")):
            raise AssertionError("the body must not run")


THREADS_CHILD = """
import os, sys
from types import SimpleNamespace
from ccl.runlog import THREAD_ENV_VARS, script_logging
torch_first = sys.argv[1] == "torch-first"
if torch_first:
    import torch
job = SimpleNamespace(log=[sys.argv[2]], threads=1, rule="train_rgb", wildcards={"scene": "s"})
with script_logging(job):
    import torch
    from ccl.splat._cpu_tiles import _threads
    print(torch.get_num_threads(), _threads().value, *(os.environ[v] for v in THREAD_ENV_VARS))
"""


@pytest.mark.parametrize("order", ["torch-first", "torch-inside"])
def test_a_job_runs_on_its_threads(tmp_path, order):
    """torch, the CPU tile kernel and the OpenMP/BLAS pools use `snakemake.threads`, whether torch was
    imported before the job's context or inside it (as the workflow's scripts do)."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: torch's default is already one thread, so the test could not fail")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for var in THREAD_ENV_VARS:
        env[var] = "2"  # what a job would otherwise inherit
    r = subprocess.run(
        [sys.executable, "-c", THREADS_CHILD, order, str(tmp_path / "job.log")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr + (tmp_path / "job.log").read_text()
    assert r.stdout.split() == ["1"] * (2 + len(THREAD_ENV_VARS))


def test_every_rule_declares_its_threads():
    """Snakemake counts a job's `threads:` against --cores; a rule without one counts 1 whatever it uses."""
    missing = []
    for smk in sorted((REPO_ROOT / "workflow" / "rules").glob("*.smk")):
        blocks = re.split(r"^\s*rule (\w+):\n", smk.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2], strict=True):
            if not re.search(r"^\s+threads:", body, flags=re.M):
                missing.append(f"{smk.name}: rule {name}")
    assert not missing, missing


def test_a_job_says_it_started_before_its_work(tmp_path):
    """A job's log opens with its start (job name, host, pid, threads), written before anything inside
    the job's context runs: a model job's imports and its scene take tens of seconds before its first
    step on a real scene, and a silent log then looks like a hung job."""
    from types import SimpleNamespace

    from ccl.runlog import script_logging

    log_path = tmp_path / "logs" / "train_rgb" / "ramen.log"
    smk = SimpleNamespace(log=[str(log_path)], output=[], threads=1, rule="train_rgb",
                          wildcards={"scene": "ramen"})  # fmt: skip
    with script_logging(smk) as log:
        said = log_path.read_text().splitlines()
        log.info("work")
    started = f"train_rgb ramen: started ({os.uname().nodename}, pid {os.getpid()}, 1 thread)"
    assert len(said) == 1 and said[0].endswith(started), said
    assert log_path.read_text().splitlines()[1].endswith("ccl: work")
