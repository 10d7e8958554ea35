"""profiles/slurm against a real single-node Slurm (tests/slurm/local_slurm.sh) on localhost.

The tiny config of tests/test_end_to_end.py (the default's shape: every rule, both variants and
scales) runs once through the slurm executor and once locally; sacct must list the jobs the executor
submitted, and the outputs must agree. `.ci/run` runs it after `make test`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_end_to_end import TINY

from ccl.config import REPO_ROOT

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SCRIPT = REPO_ROOT / "tests" / "slurm" / "local_slurm.sh"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def slurm_env():
    if os.geteuid() != 0:
        pytest.skip("a local Slurm needs root to start munge, MariaDB and the Slurm daemons")
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.skip("no Slurm installed and no apt-get to install Debian's slurm-wlm")
    r = _run(["bash", str(SCRIPT), "install"], timeout=900)
    if r.returncode != 0:
        pytest.skip(f"cannot install Slurm here: {r.stderr.strip()[-500:]}")
    # Not under pytest's tmp folder: that is private to root, and munge and MariaDB run as their users.
    state = Path(tempfile.mkdtemp(prefix="ccl-slurm-"))
    state.chmod(0o755)
    r = _run(["bash", str(SCRIPT), "start", str(state)], timeout=600)
    try:
        assert r.returncode == 0, f"local Slurm did not start:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        env = dict(os.environ, SLURM_CONF=str(state / "slurm.conf"))
        yield env
    finally:
        _run(["bash", str(SCRIPT), "stop", str(state)], timeout=120)
        shutil.rmtree(state, ignore_errors=True)


def _snakemake(workdir: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    # the tiny config of the end-to-end test: the default's shape (every rule, both variants and
    # scales), sized so that the cluster path fits in CI
    (workdir / "config.yaml").write_text(yaml.safe_dump(TINY))
    return _run(
        [
            SNAKEMAKE,
            "--snakefile",
            str(REPO_ROOT / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(workdir / "config.yaml"),
            *args,
        ],
        env=env,
        timeout=3600,
    )


def _h5_arrays(path: Path) -> dict[str, np.ndarray]:
    import h5py

    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
        )
    return out


def _without_timings(obj):
    """A metrics or diagnostics JSON without its wall-clock fields (seconds, elapsed ...)."""
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if "second" not in k and "elapsed" not in k}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def _compare_outputs(a: Path, b: Path) -> list[str]:
    """Files under results/ that differ in content (HDF5 by arrays, the rest by bytes)."""
    diffs = []
    files_a = sorted(p.relative_to(a) for p in (a / "results").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in (b / "results").rglob("*") if p.is_file())
    if files_a != files_b:
        return [f"file sets differ: {sorted(set(map(str, files_a)) ^ set(map(str, files_b)))}"]
    for rel in files_a:
        pa, pb = a / rel, b / rel
        if rel.suffix == ".h5":
            xa, xb = _h5_arrays(pa), _h5_arrays(pb)
            if xa.keys() != xb.keys() or any(not np.array_equal(xa[k], xb[k]) for k in xa):
                diffs.append(str(rel))
        elif rel.name == "scene.json" and rel.parent.name != "scene":
            ja, jb = json.loads(pa.read_text()), json.loads(pb.read_text())
            ja.pop("root", None), jb.pop("root", None)  # absolute paths of two working folders
            for j in (ja, jb):
                j.pop("labels", None)
                for fr in j.get("frames", []):
                    fr.pop("image_path", None)
            if ja != jb:
                diffs.append(str(rel))
        elif rel.suffix == ".json":
            if _without_timings(json.loads(pa.read_text())) != _without_timings(json.loads(pb.read_text())):
                diffs.append(str(rel))
        elif rel.name.startswith("efficiency"):
            continue  # wall times and memory of the jobs: they differ by nature between two runs
        elif rel.suffix in {".png", ".csv", ".md", ".ply"} and pa.read_bytes() != pb.read_bytes():
            diffs.append(str(rel))
    return diffs


def test_tiny_config_runs_through_sbatch_and_matches_a_local_run(slurm_env, tmp_path):
    slurm_dir, local_dir = tmp_path / "slurm", tmp_path / "local"
    slurm_dir.mkdir(), local_dir.mkdir()

    r = _snakemake(
        slurm_dir, "--profile", str(REPO_ROOT / "profiles" / "slurm"), "--jobs", "4", env=slurm_env
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]

    acct = _run(["sacct", "-X", "-n", "-P", "-o", "JobID,JobName,State,Comment"], env=slurm_env, timeout=60)
    assert acct.returncode == 0, acct.stderr
    rows = [line.split("|") for line in acct.stdout.splitlines() if line.strip()]
    comments = " ".join(row[3] for row in rows)
    assert rows and all(row[2] == "COMPLETED" for row in rows), acct.stdout
    for rule in ("synthetic_scene", "sam_masks"):  # heavy rules went through sbatch ...
        assert f"rule_{rule}" in comments, acct.stdout
    assert "rule_scene_manifest" not in comments, (
        "a localrule was submitted as a job"
    )  # ... cheap ones did not

    r = _snakemake(local_dir, "--cores", "2", "--workflow-profile", "none")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert _compare_outputs(slurm_dir, local_dir) == []
