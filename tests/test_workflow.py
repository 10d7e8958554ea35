"""The Snakemake frame: the default config plans a DAG, a broken config stops before any job."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ccl.config import REPO_ROOT

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def _snakemake(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SNAKEMAKE, "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(cwd), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dry_run_plans_the_default_dag(tmp_path):
    # Plans in an empty working directory, so nothing of a previous run counts as done.
    shutil.copy(REPO_ROOT / "config.yaml", tmp_path / "config.yaml")
    r = _snakemake("-n", "--quiet", "rules", "--configfile", str(tmp_path / "config.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    for rule in ("synthetic_scene", "scene_manifest", "all"):
        assert rule in r.stdout, r.stdout


def test_broken_config_stops_with_the_key_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenes:\n  synthetic: {source: synthetic}\nscales: [sp, xp]\n")
    r = _snakemake("-n", "--configfile", str(bad), cwd=tmp_path)
    assert r.returncode != 0
    assert "xp" in r.stderr + r.stdout and "scales" in r.stderr + r.stdout



def test_two_configfile_flags_are_refused_naming_both_and_the_one_flag_fix(tmp_path):
    # Snakemake keeps only the last --configfile flag: the ablation variants would run without the
    # benchmark, or the other way round. One flag with both files composes them.
    from workflow_testkit import repo_copy, snakemake

    repo = repo_copy(tmp_path / "repo")
    r = snakemake(repo, "-n", "--configfile", "config.yaml", "--configfile", "configs/ablation.yaml")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "--configfile is given 2 times (config.yaml, then configs/ablation.yaml)" in out, out
    assert "config.yaml would be silently ignored" in out, out
    assert "`--configfile config.yaml configs/ablation.yaml`" in out, out
    assert "Traceback" not in out, out
    # the fix it names plans
    r = snakemake(repo, "-n", "--quiet", "rules", "--configfile", "config.yaml", "configs/ablation.yaml")
    assert r.returncode == 0, r.stdout + r.stderr

# The software environment is the project's pip venv (Makefile), not conda: no registry here serves
# conda packages, so that one lint is expected. Any other lint fails the test.
EXPECTED_LINT = "Specify a conda environment or container for each rule."


def test_lint_is_clean_but_for_conda():
    import re

    r = _snakemake("--lint")
    lints = re.findall(r"^\s+\* (.+)$", r.stdout + r.stderr, flags=re.M)
    assert r.returncode in (0, 1), r.stderr
    unexpected = [m for m in lints if EXPECTED_LINT not in m]
    assert not unexpected, r.stdout + r.stderr
