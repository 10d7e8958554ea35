"""Fixtures of the features tests (helpers in features_testkit.py)."""

from __future__ import annotations

import pytest
from features_testkit import register_tiny_clip, save_tiny_clip_weights


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """(model name, weights file) of a tiny randomly initialised OpenCLIP, registered with open_clip."""
    folder = tmp_path_factory.mktemp("clip")
    name = register_tiny_clip(folder)
    weights = folder / "open_clip_model.safetensors"
    save_tiny_clip_weights(weights)
    return name, weights
