"""MasksConfig refuses bad values with the key named; merge-only keys stay out of raw.h5's params."""

from __future__ import annotations

import pytest

from ccl.config import section
from ccl.masks import MasksConfig
from ccl.masks.config import MERGE_KEYS


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"backend": "sam2"}, "masks.backend"),
        ({"contested_pixel_wp": "biggest"}, "masks.contested_pixel_wp"),
        ({"pred_iou_thresh": 1.5}, "masks.pred_iou_thresh"),
        ({"min_merged_area": 0}, "masks.min_merged_area"),
    ],
)
def test_bad_values_name_the_key(bad, key):
    with pytest.raises(ValueError, match=key):
        section(MasksConfig, bad, where="config.yaml: masks")


def test_generation_params_leave_out_the_merge_keys():
    cfg = MasksConfig()
    params = cfg.generation_params()
    assert not set(MERGE_KEYS) & set(params) and params["points_per_side"] == 32
    assert cfg.contested_pixel("sp") == "smaller" and cfg.contested_pixel("wp") == "larger"
