"""The README's "Running your own photos" section, run as written from a copy of the repository root:
its myphotos.yaml names the files `make checkpoints` writes, and each of its commands plans with them
in place; with no checkpoint at all, the poses-only command runs to poses.json and the colour-field
command plans no model stage (neither needs model weights)."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml
from sfm import textured_room as room
from workflow_testkit import checkpoint_files, job_counts, repo_copy, snakemake

from ccl.config import REPO_ROOT
from ccl.weights import WEIGHTS


def _readme_section() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index("## Running your own photos")
    return text[start : text.index("\n## ", start + 1)]


def _readme_config() -> tuple[str, dict]:
    """The section's YAML block: (its file name, from its first comment line; its text)."""
    block = re.search(r"```yaml\n(.*?)```", _readme_section(), flags=re.S)[1]
    name = re.match(r"# (\S+\.yaml)", block)[1]
    return name, block


def _readme_commands() -> list[list[str]]:
    block = re.search(r"```bash\n(.*?)```", _readme_section(), flags=re.S)[1]
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith(".venv/bin/snakemake")]


@pytest.fixture
def own_photos_repo(tmp_path):
    """A repository copy with the README's config file and a photo folder where it points."""
    name, text = _readme_config()
    repo = repo_copy(tmp_path / "repo")
    (repo / name).write_text(text)
    config = yaml.safe_load(text)
    for scene in config["scenes"].values():
        room.write_photos(repo / scene["path"])  # ten views that register in seconds
    return repo, config


def test_the_readme_config_names_the_files_make_checkpoints_writes():
    _, text = _readme_config()
    config = yaml.safe_load(text)
    named = {w.config_key: f"checkpoints/{w.file}" for w in WEIGHTS}
    for key, path in named.items():
        stage, field = key.split(".")
        assert config[stage][field] == path, (key, config[stage][field], path)


def test_the_readmes_own_photo_commands_plan_after_make_checkpoints(own_photos_repo):
    repo, config = own_photos_repo
    checkpoint_files(repo, config)  # where make checkpoints puts them (the test above holds the names)
    commands = _readme_commands()
    assert len(commands) >= 3, commands  # poses, colour field, everything
    for args in commands:
        r = snakemake(repo, *args, "-n")
        assert r.returncode == 0, (args, r.stdout[-3000:] + r.stderr[-3000:])
    jobs = job_counts(snakemake(repo, *commands[-1], "-n").stdout)
    assert jobs["poses"] == 1 and jobs["sam_masks"] == 1 and jobs["train_language"] >= 1, jobs


@pytest.mark.slow  # runs SfM on ten photos for real: about 30 s on 2 cores
def test_poses_and_the_colour_field_need_no_checkpoint(own_photos_repo):
    """Before `make checkpoints`: the poses command runs as written; the colour field's plans (no model
    stage in it); the whole run is refused, naming the checkpoints' keys."""
    repo, _ = own_photos_repo
    poses, colour, everything = _readme_commands()
    r = snakemake(repo, *poses)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    scene = poses[0].split("/")[1]
    assert (repo / "results" / scene / "sfm" / "poses.json").is_file()
    r = snakemake(repo, *colour, "-n")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert set(job_counts(r.stdout)) == {"scene_manifest", "train_rgb"}  # poses is done
    r = snakemake(repo, *everything, "-n")
    assert r.returncode != 0 and "preflight" in r.stdout + r.stderr
    for key in ("masks.sam_checkpoint", "tracks.sam2_checkpoint", "features.pretrained"):
        assert key in r.stdout + r.stderr, r.stdout[-3000:] + r.stderr[-3000:]


def test_poses_need_no_model_backend(own_photos_repo):
    """A config with the scene alone (the stages' default backends are the simulators, which need a
    synthetic scene) plans the poses: they run no model."""
    repo, config = own_photos_repo
    (repo / "scene_only.yaml").write_text(yaml.safe_dump({"scenes": config["scenes"]}))
    poses = _readme_commands()[0]
    args = ["scene_only.yaml" if a.endswith(".yaml") else a for a in poses]
    r = snakemake(repo, *args, "-n")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert job_counts(r.stdout) == {"poses": 1}
