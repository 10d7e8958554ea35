"""configs/*.yaml plan the full DAG of every benchmark scene against a fake data root."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ccl.config import REPO_ROOT, load_config

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CONFIGS = REPO_ROOT / "configs"


def _fake_data_root(root: Path, config: dict) -> None:
    """Empty folders where each scene's images, model and labels would be: a dry run reads no data."""
    for entry in config["scenes"].values():
        scene = root / entry["path"]
        (scene / "images").mkdir(parents=True, exist_ok=True)
        (scene / "sparse" / "0").mkdir(parents=True, exist_ok=True)
        (root / entry["labels"]).mkdir(parents=True, exist_ok=True)


def _job_counts(stdout: str) -> dict[str, int]:
    table = stdout[stdout.index("Job stats:") :]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.M)}


@pytest.mark.parametrize("name", ["lerf_ovs", "3dovs"])
def test_benchmark_config_plans_every_stage_of_every_scene(name, tmp_path):
    path = CONFIGS / f"{name}.yaml"
    config = load_config(path)
    assert config["masks"]["backend"] == "sam" and config["tracks"]["backend"] == "sam2"
    assert config["features"]["backend"] == "open_clip" and config["device"] == "cuda"
    assert config["rgb"]["iterations"] == 30000 and config["language"]["iterations"] == 30000
    data_root = tmp_path / "data"
    _fake_data_root(data_root, yaml.safe_load(path.read_text()))

    r = subprocess.run(
        [
            SNAKEMAKE,
            "--snakefile",
            str(REPO_ROOT / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(path),
            "--config",
            f"data_root={data_root}",
            "-n",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    counts = _job_counts(r.stdout)
    n_scenes, n_scales, n_variants = len(config["scenes"]), len(config["scales"]), len(config["variants"])
    assert counts.get("synthetic_scene", 0) == 0
    expected = {
        "scene_manifest": n_scenes,
        "sam_masks": n_scenes,
        "merge_masks": n_scenes * n_scales,
        "track_masks": n_scenes * n_scales,
        "clip_features": n_scenes * n_scales,
        "train_codebook": n_scenes * n_scales * n_variants,
        "train_rgb": n_scenes,
        "train_language": n_scenes * n_scales * n_variants,
        "evaluate": n_scenes * n_variants,
        "tables": 1,
    }
    assert {k: counts.get(k, 0) for k in expected} == expected, r.stdout[-3000:]
    # The GPU stages ask the cluster for a GPU under `device: cuda`.
    for rule in ("sam_masks", "train_rgb"):
        block = r.stdout[r.stdout.index(f"rule {rule}:") :]
        resources = block[block.index("resources:") :].splitlines()[0]
        assert "gpu=1" in resources, (rule, resources)


def test_ablation_config_adds_variants_and_the_merged_scale():
    config = load_config(
        CONFIGS / "lerf_ovs.yaml", overrides=yaml.safe_load((CONFIGS / "ablation.yaml").read_text())
    )
    assert config["variants"] == ["full", "base", "pull", "push"]
    assert config["scales"] == ["sp", "wp", "all"]
