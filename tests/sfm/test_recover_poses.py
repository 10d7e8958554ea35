"""recover_poses on photos that share no view: nothing registers, and the message names each photo
with its feature and match counts and the fix (pycolmap runs: SIFT finds features in noise, none match)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ccl.sfm import SfmConfig, recover_poses


def test_photos_without_overlap_register_nothing_and_are_named(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        noise = np.random.default_rng(i).integers(0, 256, (96, 128), dtype=np.uint8)
        Image.fromarray(np.repeat(np.kron(noise, np.ones((2, 2), np.uint8))[..., None], 3, 2)).save(
            photos / f"IMG_{i}.png"
        )
    with pytest.raises(ValueError) as e:
        recover_poses(
            photos, tmp_path / "sfm" / "model", cfg=SfmConfig(), report_path=tmp_path / "sfm" / "poses.json"
        )
    msg = str(e.value)
    assert "no photos registered" in msg and "4 left out" in msg
    assert all(f"IMG_{i}.png (" in msg for i in range(4))
    assert "features" in msg and "overlap by about two thirds" in msg and "min_registered_fraction" in msg
    assert not (tmp_path / "sfm" / "model").exists() and not (tmp_path / "sfm" / "poses.json").exists()
    assert [p.name for p in (tmp_path / "sfm").iterdir()] == []  # the work folder went too
