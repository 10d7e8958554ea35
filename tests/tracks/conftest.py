"""Fixtures of the tracks tests (helpers in tracks_testkit.py)."""

from __future__ import annotations

import pytest
from tracks_testkit import write_gt_masks


@pytest.fixture(scope="session")
def tiny_scene(tiny_scene_dir):
    from ccl.scene import SceneLoadConfig, load_scene

    return load_scene(tiny_scene_dir, source="synthetic", cfg=SceneLoadConfig(), name="tiny")


@pytest.fixture(scope="session")
def part_masks(tiny_scene, tmp_path_factory):
    return write_gt_masks(tiny_scene, tmp_path_factory.mktemp("masks") / "sp.h5")
