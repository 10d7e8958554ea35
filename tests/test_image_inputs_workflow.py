"""Image content is an input of the workflow: a COLMAP scene's image replaced in place (same name, same
size), restored after it was missing, or removed replans scene_manifest (and so everything made of the
scene), and an image replaced behind Snakemake's back (its old mtime kept) is refused by the stages."""

from __future__ import annotations

import os
import shutil

import pytest
import yaml
from scene.scene_testkit import write_image
from workflow_testkit import job_counts, minimal_lerf_ovs_scene, repo_copy, snakemake

from ccl.scene import SceneLoadConfig, load_scene_from_manifest

TARGET = "results/ramen/scene.json"


def _plan(repo):
    r = snakemake(repo, TARGET, "--configfile", "c.yaml", "-n")
    assert r.returncode == 0, r.stdout + r.stderr
    return {} if "Job stats:" not in r.stdout else job_counts(r.stdout)


def test_changed_restored_or_removed_images_replan_the_scene(tmp_path):
    repo = repo_copy(tmp_path / "repo")
    minimal_lerf_ovs_scene(tmp_path / "data", "ramen", n_views=6)
    images = tmp_path / "data" / "ramen" / "images"
    config = {
        "data_root": str(tmp_path / "data"),
        "scenes": {"ramen": {"source": "colmap", "path": "ramen", "labels": "label/ramen"}},
    }
    (repo / "c.yaml").write_text(yaml.safe_dump(config))
    aside = tmp_path / "aside.jpg"
    shutil.move(images / "frame_00006.jpg", aside)  # missing: the scene is read without it

    r = snakemake(repo, TARGET, "--configfile", "c.yaml", "--cores", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    manifest = repo / TARGET
    assert len(yaml.safe_load(manifest.read_text())["frames"]) == 5
    assert _plan(repo) == {}  # nothing changed: nothing to do

    shutil.move(aside, images / "frame_00006.jpg")  # restored, with its old mtime
    assert _plan(repo).get("scene_manifest") == 1
    r = snakemake(repo, TARGET, "--configfile", "c.yaml", "--cores", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(yaml.safe_load(manifest.read_text())["frames"]) == 6
    assert _plan(repo) == {}

    first = images / "frame_00001.jpg"
    write_image(first, seed=7)  # other pixels, same name and size
    assert _plan(repo).get("scene_manifest") == 1

    # the same replacement with the old mtime put back: Snakemake cannot tell, the stages can
    st = manifest.stat()
    os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    assert _plan(repo) == {}
    with pytest.raises(ValueError, match="changed since the manifest was written") as e:
        load_scene_from_manifest(manifest, cfg=SceneLoadConfig())
    assert "frame_00001.jpg" in str(e.value) and "--forcerun scene_manifest" in str(e.value)

    (images / "frame_00003.jpg").unlink()  # removed
    assert _plan(repo).get("scene_manifest") == 1
