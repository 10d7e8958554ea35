"""Shared fixtures: a tiny synthetic scene built once per test session."""

from __future__ import annotations

import pytest

from ccl.config import load_config


@pytest.fixture(scope="session", autouse=True)
def hash_cache_of_the_session(tmp_path_factory):
    """The weights' remembered hashes (ccl.io.hashing) in a folder of the test session, this process's and
    the workflows' it starts, never the user's cache."""
    import os

    before = os.environ.get("CCL_HASH_CACHE")
    os.environ["CCL_HASH_CACHE"] = str(tmp_path_factory.mktemp("hash_cache"))
    yield
    if before is None:
        os.environ.pop("CCL_HASH_CACHE", None)
    else:
        os.environ["CCL_HASH_CACHE"] = before


# Small enough that every stage runs on it in seconds; same shape as the default scene.
TINY_SYNTHETIC = {"n_views": 8, "width": 64, "height": 48}


@pytest.fixture(scope="session")
def default_config() -> dict:
    """The repository's config.yaml, validated, with the schema's defaults filled in."""
    return load_config()


@pytest.fixture(scope="session")
def tiny_synthetic_config(default_config) -> dict:
    from ccl.config import deep_update

    return deep_update(default_config, {"synthetic": TINY_SYNTHETIC})


@pytest.fixture(scope="session")
def tiny_scene_dir(tmp_path_factory, tiny_synthetic_config):
    """A tiny synthetic scene folder (images, transforms.json, gt.h5, labels), built once."""
    from ccl.config import section
    from ccl.synthetic import SyntheticConfig, make_scene

    cfg = section(SyntheticConfig, tiny_synthetic_config["synthetic"])
    out = tmp_path_factory.mktemp("tiny_scene") / "scene"
    make_scene(out, cfg=cfg, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_scene(tiny_scene_dir):
    """The tiny scene loaded (read-only: a test that needs another scene makes one with dataclasses.replace)."""
    from ccl.scene import SceneLoadConfig, load_scene

    return load_scene(tiny_scene_dir, source="synthetic", cfg=SceneLoadConfig(), name="tiny")


@pytest.fixture(scope="session")
def part_masks(tiny_scene, tmp_path_factory):
    """A masks file of the tiny scene: every ground-truth part of every frame is one mask."""
    from gt_masks_testkit import write_gt_masks

    return write_gt_masks(tiny_scene, tmp_path_factory.mktemp("masks") / "sp.h5")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests, restored afterwards. Tiny models on a shared CPU spend more
    on thread hand-offs than on work, and training on one thread is bit-for-bit reproducible (the CPU
    kernel's multi-threaded backward sums per-thread gradient buffers in a varying order)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
