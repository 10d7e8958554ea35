"""The workflow's config and its rules' params carry every schema default, not only config.yaml's keys.

A rule's `params` decide whether a changed setting reruns it, and its script builds the stage config
from them: both need the values the job runs with, stage-schema defaults included.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ccl.config import REPO_ROOT, SECTION_DATACLASSES, as_params, section, section_dataclass

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
MARK = "CCL_TEST_PARAMS "

# Includes the real Snakefile, then prints its config and, per rule, the params named after a section.
WRAPPER = """
include: {snakefile!r}


import json

SECTIONS = {sections!r}
print({mark!r} + json.dumps({{
    "config": config,
    "params": {{
        r.name: {{k: v for k, v in getattr(rules, r.name).params.items() if k in SECTIONS}}
        for r in workflow.rules
    }},
}}))
"""


def _workflow_params(tmp_path: Path, config_yaml: str, *extra_args: str) -> dict:
    (tmp_path / "config.yaml").write_text(config_yaml)
    wrapper = tmp_path / "Snakefile"
    wrapper.write_text(
        WRAPPER.format(
            snakefile=str(REPO_ROOT / "Snakefile"), sections=sorted(SECTION_DATACLASSES), mark=MARK
        )
    )
    r = subprocess.run(
        [
            SNAKEMAKE,
            "-n",
            "--quiet",
            "all",
            "--snakefile",
            str(wrapper),
            "--directory",
            str(tmp_path),
            *extra_args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith(MARK))
    return json.loads(line.removeprefix(MARK))


def test_params_carry_stage_schema_defaults_that_config_yaml_does_not_set(tmp_path):
    got = _workflow_params(
        tmp_path, "scenes:\n  synthetic: {source: synthetic}\ncodebook:\n  n_prototypes: 64\n"
    )
    want = {name: as_params(section(section_dataclass(name), {})) for name in SECTION_DATACLASSES}
    want["codebook"]["n_prototypes"] = 64  # the one key set: kept, the rest filled

    for name in SECTION_DATACLASSES:
        assert got["config"][name] == want[name], name
    assert got["config"]["scenes"] == {
        "synthetic": {"source": "synthetic", "protocol": "lerf_ovs", "images": "images"}
    }
    # The rules: train_codebook's full section, and every section-named param (a stage may pass only
    # the keys its output depends on) holds the resolved values.
    assert got["params"]["train_codebook"]["codebook"] == want["codebook"]
    checked = 0
    for rule, params in got["params"].items():
        for name, value in params.items():
            assert value.items() <= want[name].items(), (rule, name)
            checked += 1
    assert checked >= 10


def test_nested_command_line_config_reaches_the_rules_with_its_type(tmp_path):
    """Snakemake leaves nested `--config` values as strings; the workflow reads them as YAML would."""
    got = _workflow_params(
        tmp_path,
        "scenes:\n  synthetic: {source: synthetic}\n",
        "--config",
        "codebook={n_prototypes: 64, lr: 1e-2}",
        "language={joint: true}",
    )
    assert got["params"]["train_codebook"]["codebook"]["n_prototypes"] == 64
    assert got["params"]["train_codebook"]["codebook"]["lr"] == 0.01
    assert got["config"]["language"]["joint"] is True
