"""Fixtures of the features tests (helpers in features_testkit.py)."""

from __future__ import annotations

import pytest
from features_testkit import register_tiny_clip, save_tiny_clip_weights, write_gt_masks


@pytest.fixture(scope="session")
def tiny_scene(tiny_scene_dir):
    from ccl.scene import SceneLoadConfig, load_scene

    return load_scene(tiny_scene_dir, source="synthetic", cfg=SceneLoadConfig(), name="tiny")


@pytest.fixture(scope="session")
def part_masks(tiny_scene, tmp_path_factory):
    return write_gt_masks(tiny_scene, tmp_path_factory.mktemp("masks") / "sp.h5")


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """(model name, weights file) of a tiny randomly initialised OpenCLIP, registered with open_clip."""
    pytest.importorskip("open_clip", reason="the open_clip backend's tests need open_clip_torch")
    folder = tmp_path_factory.mktemp("clip")
    name = register_tiny_clip(folder)
    weights = folder / "open_clip_model.safetensors"
    save_tiny_clip_weights(weights)
    return name, weights


@pytest.fixture(scope="module")
def one_torch_thread():
    # Tiny models on a shared CPU: thread start-up costs more than the work.
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
