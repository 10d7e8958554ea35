"""configs/*.yaml, run as the README says from a copy of the repository root (config.yaml present), plan
the full DAG of every benchmark scene and nothing else; without --configfile the synthetic default runs."""

from __future__ import annotations

import pytest
import yaml
from workflow_testkit import (
    checkpoint_files,
    job_counts,
    minimal_3dovs_scene,
    minimal_lerf_ovs_scene,
    repo_copy,
    snakemake,
)

from ccl.config import REPO_ROOT, load_config

CONFIGS = REPO_ROOT / "configs"
SCENE_MAKERS = {"lerf_ovs": minimal_lerf_ovs_scene, "3dovs": minimal_3dovs_scene}


@pytest.fixture(scope="module")
def benchmark_repo(tmp_path_factory):
    """A copy of the repository root with every benchmark scene where the configs point (data/…) and
    files where they name the checkpoints (checkpoints/…)."""
    repo = repo_copy(tmp_path_factory.mktemp("bench") / "repo")
    for name in ("lerf_ovs", "3dovs"):
        config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
        for scene in config["scenes"]:
            SCENE_MAKERS[name](repo / config["data_root"], scene)
        checkpoint_files(repo, config)
    return repo


def _expected_jobs(config: dict) -> dict[str, int]:
    n_scenes, n_scales, n_variants = len(config["scenes"]), len(config["scales"]), len(config["variants"])
    n_seeds = len(config["seeds"])  # a run per seed from the codebook on; the stages before, once
    return {
        "synthetic_scene": 0,
        "scene_manifest": n_scenes,
        "sam_masks": n_scenes,
        "merge_masks": n_scenes * n_scales,
        "track_masks": n_scenes * n_scales,
        "clip_features": n_scenes * n_scales,
        "train_codebook": n_seeds * n_scenes * n_scales * n_variants,
        "train_rgb": n_seeds * n_scenes,
        "train_language": n_seeds * n_scenes * n_scales * n_variants,
        "evaluate": n_seeds * n_scenes * n_variants,
        "tables": 1,
    }


@pytest.mark.parametrize("name, n_scenes", [("lerf_ovs", 4), ("3dovs", 5)])
def test_benchmark_config_plans_exactly_its_scenes(benchmark_repo, name, n_scenes):
    path = CONFIGS / f"{name}.yaml"
    config = load_config(path)
    assert len(config["scenes"]) == n_scenes
    assert config["masks"]["backend"] == "sam" and config["tracks"]["backend"] == "sam2"
    assert config["features"]["backend"] == "open_clip" and config["device"] == "cuda"
    assert config["rgb"]["iterations"] == 30000 and config["language"]["iterations"] == 30000

    r = snakemake(benchmark_repo, "-n", "--configfile", f"configs/{name}.yaml")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    counts = job_counts(r.stdout)
    assert {k: counts.get(k, 0) for k in _expected_jobs(config)} == _expected_jobs(config), r.stdout[-3000:]
    planned = {
        line.split("results/")[1].split("/")[0] for line in r.stdout.splitlines() if "results/" in line
    }
    assert planned - {"tables"} == set(config["scenes"])  # the synthetic default does not join
    # The GPU stages ask the cluster for a GPU under `device: cuda`.
    for rule in ("sam_masks", "train_rgb"):
        block = r.stdout[r.stdout.index(f"rule {rule}:") :]
        resources = block[block.index("resources:") :].splitlines()[0]
        assert "gpu=1" in resources, (rule, resources)


def test_ablation_config_adds_variants_and_the_merged_scale(benchmark_repo):
    config = load_config(
        CONFIGS / "lerf_ovs.yaml", overrides=yaml.safe_load((CONFIGS / "ablation.yaml").read_text())
    )
    assert config["variants"] == ["full", "base", "pull", "push"]
    assert config["scales"] == ["sp", "wp", "all"]
    r = snakemake(benchmark_repo, "-n", "--configfile", "configs/lerf_ovs.yaml", "configs/ablation.yaml")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert {k: job_counts(r.stdout).get(k, 0) for k in _expected_jobs(config)} == _expected_jobs(config)


def test_three_seeds_repeat_the_training_and_share_the_preprocessing(benchmark_repo):
    config = load_config(CONFIGS / "lerf_ovs.yaml", overrides={"seeds": [0, 1, 2]})
    r = snakemake(benchmark_repo, "-n", "--configfile", "configs/lerf_ovs.yaml", "--config", "seeds=[0,1,2]")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert {k: job_counts(r.stdout).get(k, 0) for k in _expected_jobs(config)} == _expected_jobs(config)
    assert "results/ramen/seed2/gaussians/full/sp.safetensors" in r.stdout
    assert "results/ramen/seed1/eval/full/queries.csv" in r.stdout
    assert "results/ramen/features/sp.h5" in r.stdout and "results/ramen/seed1/features" not in r.stdout


def test_seed_over_a_config_with_seeds_is_refused_before_any_job(benchmark_repo):
    (benchmark_repo / "three_seeds.yaml").write_text("seeds: [0, 1, 2]\n")
    r = snakemake(
        benchmark_repo,
        "-n",
        "--configfile",
        "configs/lerf_ovs.yaml",
        "three_seeds.yaml",
        "--config",
        "seed=4",
    )
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "three_seeds.yaml: both `seed` (4) and `seeds` ([0, 1, 2]) are set: give one" in out
    assert "Job stats" not in out and "Traceback" not in out and "_check_seed_keys" not in out


def test_ablation_config_alone_is_refused_naming_what_it_adds_to(benchmark_repo):
    r = snakemake(benchmark_repo, "-n", "--configfile", "configs/ablation.yaml")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "no `scenes`" in out and "--configfile configs/lerf_ovs.yaml configs/ablation.yaml" in out


def test_no_configfile_plans_the_synthetic_default(benchmark_repo):
    r = snakemake(benchmark_repo, "-n")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    config = load_config(REPO_ROOT / "config.yaml")
    assert list(config["scenes"]) == ["synthetic"]
    assert job_counts(r.stdout) == {**_expected_jobs(config), "synthetic_scene": 1, "all": 1}


def _readme_snakemake_commands() -> list[str]:
    """Every `.venv/bin/snakemake …` line of the README's benchmark section, as written there."""
    import re

    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## Running a real benchmark") : text.index("## Where outputs land")]
    lines = re.findall(r"^(\.venv/bin/snakemake [^#\n]+)", section, flags=re.M)
    lines += re.findall(r"`(\.venv/bin/snakemake [^`]+)`", section)
    return [line.strip() for line in lines]


def test_the_readmes_benchmark_commands_plan_as_written(benchmark_repo):
    """Each benchmark command of the README, run as written in the repository root (with -n added,
    and snakemake from this environment), plans its benchmark scenes and nothing else."""
    import shlex

    commands = _readme_snakemake_commands()
    assert len(commands) >= 3, commands  # workstation, Slurm, a single target
    lerf = set(load_config(CONFIGS / "lerf_ovs.yaml")["scenes"])
    for command in commands:
        args = shlex.split(command)[1:]
        r = snakemake(benchmark_repo, *args, "-n")
        assert r.returncode == 0, (command, r.stdout[-3000:] + r.stderr[-3000:])
        planned = {
            line.split("results/")[1].split("/")[0] for line in r.stdout.splitlines() if "results/" in line
        }
        assert planned - {"tables"} <= lerf and planned, (command, planned)
