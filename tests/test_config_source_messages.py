"""Messages name the config file the run was given (issue 24.5): a scene that scene_load.downscale
shrinks to nothing is refused naming mine.yaml, the file to edit, not config.yaml."""

from __future__ import annotations

import yaml
from workflow_testkit import minimal_lerf_ovs_scene, repo_copy, snakemake


def test_a_scene_load_error_names_the_config_file_given(tmp_path):
    repo = repo_copy(tmp_path / "repo")
    minimal_lerf_ovs_scene(repo / "data", "tiny")
    config = {
        "scenes": {"tiny": {"source": "colmap", "path": "data/tiny", "protocol": "none"}},
        "scene_load": {"downscale": 100},  # the scene's 64 x 48 images shrink to nothing
    }
    (repo / "mine.yaml").write_text(yaml.safe_dump(config))
    r = snakemake(repo, "results/tiny/scene.json", "--configfile", "mine.yaml", "-n")
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "mine.yaml: scene_load.downscale = 100 shrinks" in out, out
    assert "config.yaml" not in out, out
