"""Preflight: what the config and the scene folders tell is refused before any job, all at once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from workflow_testkit import checkpoint_files, minimal_lerf_ovs_scene, repo_copy, snakemake

from ccl.config import validate_config
from ccl.preflight import MASKS_PER_VIEW_CEILING, PreflightError, check_run, find_problems

REAL_BACKENDS = {  # checkpoints named but absent unless a test makes them
    "masks": {"backend": "sam", "sam_checkpoint": "ckpt/sam_vit_h_4b8939.pth"},
    "tracks": {"backend": "sam2", "sam2_checkpoint": "ckpt/sam2.1_hiera_large.pt"},
    "features": {"backend": "open_clip", "pretrained": "ckpt/open_clip_pytorch_model.bin"},
}


def _config(data_root: Path, scenes: dict, **extra) -> dict:
    return validate_config({"data_root": str(data_root), "scenes": scenes, **extra}, source="test.yaml")


def _keys(problems) -> list[str]:
    return [p.key for p in problems]


def test_a_well_formed_benchmark_scene_has_no_problem(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    minimal_lerf_ovs_scene(tmp_path / "data", "ramen")
    checkpoint_files(tmp_path, REAL_BACKENDS)
    cfg = _config(
        tmp_path / "data",
        {"ramen": {"source": "colmap", "path": "ramen", "labels": "label/ramen"}},
        codebook={"n_prototypes": 8},
        **REAL_BACKENDS,
    )
    assert find_problems(cfg) == []


def test_sim_backends_on_a_real_scene_are_refused_per_stage(tmp_path):
    minimal_lerf_ovs_scene(tmp_path / "data", "ramen")
    cfg = _config(
        tmp_path / "data",
        {"ramen": {"source": "colmap", "path": "ramen", "labels": "label/ramen"}},
        codebook={"n_prototypes": 8},
    )
    problems = find_problems(cfg)
    assert _keys(problems) == ["masks.backend", "tracks.backend", "features.backend"]
    assert "set masks.backend: sam" in problems[0].fix and "['ramen']" in problems[0].what


def test_missing_checkpoints_are_named_with_their_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    minimal_lerf_ovs_scene(tmp_path / "data", "ramen")
    cfg = _config(
        tmp_path / "data",
        {"ramen": {"source": "colmap", "path": "ramen", "labels": "label/ramen"}},
        codebook={"n_prototypes": 8},
        **REAL_BACKENDS,
    )
    problems = find_problems(cfg)
    assert _keys(problems) == ["masks.sam_checkpoint", "tracks.sam2_checkpoint", "features.pretrained"]
    assert all("ckpt/" in p.what for p in problems)


def test_checkpoints_of_another_model_are_refused_before_any_job(tmp_path, monkeypatch):
    """The file is there but holds another model: found from its tensor index, no tensor read."""
    monkeypatch.chdir(tmp_path)
    minimal_lerf_ovs_scene(tmp_path / "data", "ramen")
    checkpoint_files(tmp_path, REAL_BACKENDS)
    other = {  # vit_b, hiera_t and ViT-B-32 files where the config names vit_h, hiera_l and ViT-B-16
        "masks": {**REAL_BACKENDS["masks"], "sam_model_type": "vit_b"},
        "tracks": {**REAL_BACKENDS["tracks"], "sam2_config": "configs/sam2.1/sam2.1_hiera_t.yaml"},
        "features": {**REAL_BACKENDS["features"], "model_name": "ViT-B-32"},
    }
    checkpoint_files(tmp_path, other)
    cfg = _config(
        tmp_path / "data",
        {"ramen": {"source": "colmap", "path": "ramen", "labels": "label/ramen"}},
        codebook={"n_prototypes": 8},
        **REAL_BACKENDS,
    )
    problems = find_problems(cfg)
    assert _keys(problems) == ["masks.sam_checkpoint", "tracks.sam2_checkpoint", "features.pretrained"]
    for p in problems:
        assert "tensor shape(s) differ" in p.what or "does not match the model" in p.what, p.what
    assert "SAM vit_h" in problems[0].what and "sam2.1_hiera_l" in problems[1].what
    assert "ViT-B-16" in problems[2].what


def test_a_pickle_bearing_checkpoint_is_never_loaded_nor_is_unsafe_loading_advised(tmp_path, monkeypatch):
    import pickle

    monkeypatch.chdir(tmp_path)
    minimal_lerf_ovs_scene(tmp_path / "data", "ramen")
    checkpoint_files(tmp_path, REAL_BACKENDS)
    import torch

    torch.save(
        {"model": {"w": torch.zeros(2)}, "optimizer": pickle.PickleError},
        tmp_path / "ckpt/sam2.1_hiera_large.pt",
    )
    cfg = _config(
        tmp_path / "data",
        {"ramen": {"source": "colmap", "path": "ramen", "labels": "label/ramen"}},
        codebook={"n_prototypes": 8},
        **REAL_BACKENDS,
    )
    (p,) = find_problems(cfg)
    assert p.key == "tracks.sam2_checkpoint" and "never executed" in p.what
    assert "weights_only" not in p.what and "delete" not in p.what


def test_unlabelled_scene_of_a_labelled_protocol_names_protocol_none(tmp_path):
    minimal_lerf_ovs_scene(tmp_path / "data", "ramen")
    cfg = _config(
        tmp_path / "data", {"ramen": {"source": "colmap", "path": "ramen"}}, codebook={"n_prototypes": 8}
    )
    (p,) = [p for p in find_problems(cfg) if p.key.startswith("scenes.")]
    assert p.key == "scenes.ramen.labels" and "protocol: none" in p.fix


def test_labels_of_frames_the_scene_does_not_have(tmp_path):
    minimal_lerf_ovs_scene(tmp_path / "data", "ramen", label_frames=("frame_00001", "frame_00099"))
    cfg = _config(
        tmp_path / "data",
        {"ramen": {"source": "colmap", "path": "ramen", "labels": "label/ramen"}},
        codebook={"n_prototypes": 8},
    )
    (p,) = [p for p in find_problems(cfg) if p.key.startswith("scenes.")]
    assert p.key == "scenes.ramen.labels" and "label frames ['frame_00099'] (1)" in p.what


def test_a_3dovs_view_without_the_mask_of_a_listed_class(tmp_path):
    from workflow_testkit import minimal_3dovs_scene

    minimal_3dovs_scene(tmp_path / "data", "bed", label_views=(0, 2))
    (tmp_path / "data" / "bed" / "segmentations" / "classes.txt").write_text("cube\nlamp\n")
    cfg = _config(
        tmp_path / "data",
        {"bed": {"source": "colmap", "path": "bed", "labels": "bed/segmentations", "protocol": "3dovs"}},
        codebook={"n_prototypes": 8},
    )
    (p,) = [p for p in find_problems(cfg) if p.key.startswith("scenes.")]
    assert p.key == "scenes.bed.labels" and "['00/lamp.png', '02/lamp.png']" in p.what


def test_single_view_scene_with_held_out_views(tmp_path):
    minimal_lerf_ovs_scene(tmp_path / "data", "one", n_views=1)
    cfg = _config(
        tmp_path / "data",
        {"one": {"source": "colmap", "path": "one", "protocol": "none"}},
        codebook={"n_prototypes": 2},
    )
    problems = [p for p in find_problems(cfg) if "holdout" in p.key]
    assert _keys(problems) == ["rgb.holdout_every", "language.holdout_every"]
    assert "holdout_every: 0" in problems[0].fix


def test_more_prototypes_than_a_six_view_scene_can_fill(tmp_path):
    minimal_lerf_ovs_scene(tmp_path / "data", "six", n_views=6)
    cfg = _config(
        tmp_path / "data",
        {"six": {"source": "colmap", "path": "six", "protocol": "none"}},
        codebook={"n_prototypes": 128},
    )
    (p,) = [p for p in find_problems(cfg) if p.key == "codebook.n_prototypes"]
    bound = 6 * MASKS_PER_VIEW_CEILING
    assert f"at most {bound}" in p.fix and "'six'" in p.what
    ok = _config(
        tmp_path / "data",
        {"six": {"source": "colmap", "path": "six", "protocol": "none"}},
        codebook={"n_prototypes": bound},
    )
    assert "codebook.n_prototypes" not in _keys(find_problems(ok))


def test_mistyped_path_shared_folder_and_missing_data_root(tmp_path):
    minimal_lerf_ovs_scene(tmp_path / "data", "ramen")
    scenes = {
        "ramen": {"source": "colmap", "path": "ramen", "protocol": "none"},
        "raman": {"source": "colmap", "path": "raman", "protocol": "none"},  # the typo
        "again": {"source": "colmap", "path": str(tmp_path / "data" / "ramen"), "protocol": "none"},
    }
    problems = find_problems(_config(tmp_path / "data", scenes, codebook={"n_prototypes": 8}))
    by_key = {p.key: p for p in problems}
    assert "'ramen'" in by_key["scenes.raman.path"].what  # the near name
    assert "['ramen', 'again']" in by_key["scenes.again.path"].what
    gone = find_problems(
        _config(tmp_path / "nowhere", {"ramen": scenes["ramen"]}, codebook={"n_prototypes": 8})
    )
    assert _keys(gone) == ["data_root"] and "['ramen']" in gone[0].what


def test_synthetic_default_passes_and_check_run_lists_every_problem(tmp_path, default_config):
    check_run(default_config)  # the embedded default has nothing to refuse
    minimal_lerf_ovs_scene(tmp_path / "data", "one", n_views=1)
    cfg = _config(tmp_path / "data", {"one": {"source": "colmap", "path": "one"}})
    with pytest.raises(PreflightError) as e:
        check_run(cfg, source="bench.yaml")
    msg = str(e.value)
    assert msg.startswith("ccl-lgs preflight: 7 problem(s) in bench.yaml; nothing was run.")
    for key in ("masks.backend", "scenes.one.labels", "rgb.holdout_every", "codebook.n_prototypes"):
        assert f"[{key}]" in msg


def test_snakemake_refuses_before_any_job_even_on_a_dry_run(tmp_path):
    """From a copy of the repository root, a bad benchmark config stops at parse time: nothing is made."""
    repo = repo_copy(tmp_path / "repo")
    minimal_lerf_ovs_scene(repo / "data" / "lerf_ovs", "ramen", n_views=1)
    shutil.copytree(
        repo / "data" / "lerf_ovs" / "label" / "ramen", repo / "data" / "lerf_ovs" / "label" / "x"
    )
    (repo / "bad.yaml").write_text(
        "data_root: data/lerf_ovs\n"
        "scenes:\n  ramen: {source: colmap, path: ramen, labels: label/ramen}\n"
        "  teatime: {source: colmap, path: teatime, labels: label/teatime}\n"
    )
    for args in (["-n"], ["--cores", "1"]):
        r = snakemake(repo, "--configfile", "bad.yaml", *args)
        out = r.stdout + r.stderr
        assert r.returncode != 0, out
        assert "preflight:" in out and "nothing was run" in out
        for key in ("masks.backend", "scenes.teatime.path", "rgb.holdout_every", "codebook.n_prototypes"):
            assert f"[{key}]" in out, out
        assert not (repo / "results").exists() and not (repo / "logs").exists()
