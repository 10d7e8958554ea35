"""Shared fixtures: a tiny synthetic scene built once per test session."""

from __future__ import annotations

import pytest

from ccl.config import load_config

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
