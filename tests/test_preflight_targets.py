"""The preflight checks what the run's targets need (ccl.targets): poses, a manifest or a colour field
need no model backend, checkpoint, label or codebook check; a stage's target checks its own model and
those upstream of it; no target (the default) checks everything."""

from __future__ import annotations

from workflow_testkit import minimal_lerf_ovs_scene

from ccl.config import validate_config
from ccl.preflight import find_problems
from ccl.targets import command_line_targets, target_needs

REAL_BACKENDS = {  # named, absent
    "masks": {"backend": "sam", "sam_checkpoint": "ckpt/sam_vit_h_4b8939.pth"},
    "tracks": {"backend": "sam2", "sam2_checkpoint": "ckpt/sam2.1_hiera_large.pt"},
    "features": {"backend": "open_clip", "pretrained": "ckpt/open_clip_pytorch_model.bin"},
}


def _keys(cfg, targets):
    return [p.key for p in find_problems(cfg, needs=target_needs(targets))]


def _config(tmp_path, **extra):
    minimal_lerf_ovs_scene(tmp_path / "data", "ramen")
    minimal_lerf_ovs_scene(tmp_path / "data", "other")
    scenes = {  # no labels for `other`: a problem only where evaluation is asked for
        "ramen": {"source": "colmap", "path": "ramen", "labels": "label/ramen"},
        "other": {"source": "colmap", "path": "other"},
    }
    return validate_config({"data_root": str(tmp_path / "data"), "scenes": scenes, **extra}, source="t.yaml")


def test_scene_and_colour_targets_check_no_model_backend_nor_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the default sim backends, and more prototypes than the views fill
    sim = _config(tmp_path / "sim", codebook={"n_prototypes": 4096})
    real = _config(tmp_path / "real", **REAL_BACKENDS)  # checkpoints absent
    for cfg in (sim, real):
        for target in ("results/ramen/scene.json", "results/ramen/sfm/poses.json",
                       "results/ramen/seed0/gaussians/rgb.safetensors", "results/ramen/seed3/gaussians/rgb.metrics.json",
                       "train_rgb"):  # fmt: skip
            assert _keys(cfg, [target]) == [], target


def test_a_model_stage_target_checks_its_model_and_those_upstream(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _config(tmp_path, **REAL_BACKENDS)
    assert _keys(cfg, ["results/ramen/masks/raw.h5"]) == ["masks.sam_checkpoint"]
    assert _keys(cfg, ["results/ramen/tracks/sp.h5"]) == ["masks.sam_checkpoint", "tracks.sam2_checkpoint"]
    assert _keys(cfg, ["results/ramen/features/wp.h5"]) == ["masks.sam_checkpoint", "features.pretrained"]
    every_model = ["masks.sam_checkpoint", "tracks.sam2_checkpoint", "features.pretrained"]
    assert _keys(cfg, ["results/ramen/seed0/gaussians/full/sp.safetensors"]) == every_model
    # evaluation adds the labels, of the targeted scene only; no target or a table: every scene
    assert _keys(cfg, ["results/ramen/seed0/eval/full/queries.csv"]) == every_model
    assert _keys(cfg, []) == [*every_model, "scenes.other.labels"]
    assert _keys(cfg, ["results/tables/table1.csv"]) == [*every_model, "scenes.other.labels"]


def test_sim_backends_are_refused_for_a_real_scene_only_where_its_targets_run_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _config(tmp_path)
    assert _keys(cfg, ["results/other/masks/sp.h5"]) == ["masks.backend"]
    assert _keys(cfg, ["all"]) == [
        "masks.backend",
        "tracks.backend",
        "features.backend",
        "scenes.other.labels",
    ]


def test_the_targets_come_from_snakemakes_own_command_line():
    line = ["results/g/sfm/poses.json", "--configfile", "my.yaml", "--cores", "all"]
    assert command_line_targets(["/x/.venv/bin/snakemake", *line]) == ["results/g/sfm/poses.json"]
    # --configfile takes every name after it: a path there is a config file, not a target
    assert command_line_targets(["snakemake", "--configfile", "my.yaml", "results/g/scene.json"]) == []
    assert command_line_targets(["/usr/bin/pytest", *line]) is None  # not snakemake: check everything
    assert command_line_targets(["snakemake", "--no-such-option"]) is None
