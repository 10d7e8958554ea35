"""Fixtures of the masks tests (helpers in masks_testkit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from masks_testkit import TINY_SAM_CFG, build_tiny_sam

from ccl.masks import MasksConfig


@pytest.fixture(scope="session")
def tiny_sam_checkpoint(tmp_path_factory) -> Path:
    import torch

    path = tmp_path_factory.mktemp("sam") / "sam_tiny.pth"
    torch.save(build_tiny_sam().state_dict(), path)
    return path


@pytest.fixture
def tiny_sam_cfg(tiny_sam_checkpoint) -> MasksConfig:
    return MasksConfig(**TINY_SAM_CFG, sam_checkpoint=str(tiny_sam_checkpoint))
