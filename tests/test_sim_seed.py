"""The `sim` backends draw their simulated masks, tracks and features from the seed: called without one
(seed=None, what the workflow gives the real models), each stage refuses before any work, naming the stage
and the fix, and writes nothing; `True` is not taken for seed 1."""

from __future__ import annotations

import numpy as np
import pytest

from ccl.features import FeaturesConfig, extract_features
from ccl.masks import MasksConfig, generate_masks
from ccl.synthetic import require_seed
from ccl.tracks import TracksConfig, track_masks


@pytest.mark.parametrize("seed", [None, 1.0, "0", True])
def test_a_seed_that_is_not_an_integer_is_refused_naming_the_stage(seed):
    with pytest.raises(ValueError, match=rf"^tracks\.backend = 'sim' .* given seed={seed!r}\. Pass an integer"):
        require_seed(seed, "tracks")


@pytest.mark.parametrize("seed", [0, 7, np.int64(3)])
def test_an_integer_seed_is_taken_as_it_is(seed):
    got = require_seed(seed, "masks")
    assert got == int(seed) and type(got) is int


def test_each_sim_stage_refuses_no_seed_before_writing(tiny_scene, part_masks, tmp_path):
    runs = {
        "masks": lambda out: generate_masks(tiny_scene, cfg=MasksConfig(), out_path=out, seed=None),
        "tracks": lambda out: track_masks(tiny_scene, part_masks, cfg=TracksConfig(), out_path=out, seed=None),
        "features": lambda out: extract_features(
            tiny_scene, part_masks, cfg=FeaturesConfig(), out_path=out, seed=None
        ),
    }
    for stage, run in runs.items():
        out = tmp_path / stage / "out.h5"
        with pytest.raises(ValueError, match=rf"^{stage}\.backend = 'sim' draws .* seed=None"):
            run(out)
        assert not out.parent.exists() or not any(out.parent.iterdir()), stage
