"""Masks: SAM's subpart / part / whole levels per image (raw.h5), merged into non-overlapping scales.

`generate_masks` (backend `sam` or `sim`) → raw.h5; `merge_masks` → {scale}.h5; `open_masks` /
`open_raw_masks` read them back as `FrameMasks` / `RawFrameMasks` (layouts in ccl.io.masks_h5 and
docs/contracts.md, "Masks"). `mask_nms` is LangSplat's mask NMS, vectorised.
"""

from ccl.io.masks_h5 import (
    LEVELS,
    FrameMasks,
    LevelMasks,
    RawFrameMasks,
    boxes_from_masks,
    open_masks,
    open_raw_masks,
)
from ccl.masks.config import MasksConfig
from ccl.masks.generate import generate_masks
from ccl.masks.merge import merge_masks
from ccl.masks.nms import mask_nms, mask_nms_reference, pairwise_intersections
from ccl.masks.ops import SCALE_LEVELS

__all__ = [
    "LEVELS",
    "SCALE_LEVELS",
    "FrameMasks",
    "LevelMasks",
    "MasksConfig",
    "RawFrameMasks",
    "boxes_from_masks",
    "generate_masks",
    "mask_nms",
    "mask_nms_reference",
    "merge_masks",
    "open_masks",
    "open_raw_masks",
    "pairwise_intersections",
]
