"""Resumable preprocessing through Snakemake: a sam_masks job killed mid-way (SIGKILL, so nothing of
the job's own cleanup runs) resumes on the next `snakemake` call at the first missing frame, and the
raw.h5 it writes is, byte for byte, the one an uninterrupted job writes.

The kill is a test hook put into this test's copy of the workflow only (workflow/scripts/sam_masks.py
of the copy): the product code has none. The model is the real SAM architecture (vit_h's registry entry
shrunk by masks.sam_overrides) with random weights, loaded from its checkpoint file as a user's is.
"""

from __future__ import annotations

import shutil

import yaml
from masks.masks_testkit import h5_contents
from realpath.tiny_checkpoints import write_tiny_sam
from workflow_testkit import repo_copy, snakemake

from ccl.io.resume import MADE_WITH, partial_folder

KILL_AT = 3
N_VIEWS = 8

# Prepended to the copy's sam_masks.py: the first attempt (while `marker` exists) dies at frame KILL_AT.
KILL_HOOK = """\
# test hook (this copy of the workflow only): the first attempt is killed at frame {kill_at}
import os as _os, pathlib as _pathlib, signal as _signal
from ccl.masks.backends import sam as _sam

_marker, _real = _pathlib.Path({marker!r}), _sam.SamBackend.frame_levels


def _frame_levels(backend, index, camera):
    if index == {kill_at} and _marker.exists():
        _marker.unlink()
        _os.kill(_os.getpid(), _signal.SIGKILL)
    return _real(backend, index, camera)


_sam.SamBackend.frame_levels = _frame_levels
"""


def test_killed_sam_masks_job_resumes_on_the_next_run_and_writes_the_uninterrupted_file(tmp_path):
    repo = repo_copy(tmp_path / "repo")
    config = {
        "scenes": {"synthetic": {"source": "synthetic", "protocol": "lerf_ovs"}},
        "synthetic": {"n_views": N_VIEWS, "width": 64, "height": 48},
        "masks": write_tiny_sam(tmp_path / "models"),
    }
    (repo / "config.yaml").write_text(yaml.safe_dump(config))
    marker = tmp_path / "kill-the-first-attempt"
    marker.touch()
    script = repo / "workflow" / "scripts" / "sam_masks.py"
    script.write_text(KILL_HOOK.format(kill_at=KILL_AT, marker=str(marker)) + script.read_text())
    raw = repo / "results" / "synthetic" / "masks" / "raw.h5"
    target = str(raw.relative_to(repo))

    killed = snakemake(repo, "--cores", "1", target)
    assert killed.returncode != 0, killed.stdout[-3000:] + killed.stderr[-3000:]
    assert not marker.exists(), "the job was not killed by the hook"
    assert not raw.exists()
    folder = partial_folder(raw)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [MADE_WITH, *(f"frame_{i:05d}.h5" for i in range(KILL_AT))]
    )
    assert list(raw.parent.glob(".raw.h5.*.tmp*")), "a SIGKILLed write leaves its temporary"

    resumed = snakemake(repo, "--cores", "1", target)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out[-4000:]
    assert f"sam_masks synthetic: {KILL_AT + 1}/{N_VIEWS} frames" in resumed.stderr  # counts from 3
    assert f"sam_masks synthetic: 1/{N_VIEWS} frames" not in resumed.stderr
    log = (repo / "logs" / "sam_masks" / "synthetic.log").read_text()
    assert f"{KILL_AT} of {N_VIEWS} frames finished by an earlier attempt, kept" in log
    assert not folder.exists() and not list(raw.parent.glob(".raw.h5.*.tmp*"))
    shutil.copy2(raw, tmp_path / "resumed.h5")

    uninterrupted = snakemake(repo, "--cores", "1", target, "--forcerun", "sam_masks")
    assert uninterrupted.returncode == 0, (uninterrupted.stdout + uninterrupted.stderr)[-4000:]
    assert f"sam_masks synthetic: 1/{N_VIEWS} frames" in uninterrupted.stderr
    contents = h5_contents(raw)
    assert contents == h5_contents(tmp_path / "resumed.h5")
    assert sum(v["shape"][0] for k, v in contents.items() if k.endswith("masks_packed")) > 0
