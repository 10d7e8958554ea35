"""`MasksConfig`: the `masks` section of config.yaml (schema: workflow/schemas/stages/masks.schema.yaml).

SAM thresholds are LangSplat's preprocessing values (its preprocess.py): 32×32 points, predicted IoU
0.7, stability 0.85, box NMS 0.7, one crop layer, min region area 100; mask NMS IoU 0.8, score 0.7,
inner 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ccl.config_checks import check_section, is_int
from ccl.device import PRECISIONS

BACKENDS = ("sam", "sim")
SCALES = ("sp", "wp", "all")
# Which merged mask owns a pixel that several masks cover (ccl.masks.ops.paint_segmentation):
#   smaller  the smaller mask wins (nested masks all keep pixels: the finest segmentation)
#   larger   the larger mask wins (a whole covers its parts: the coarsest segmentation)
#   score    the higher pred_iou × stability wins
CONTESTED_PIXEL_RULES = ("smaller", "larger", "score")
# Keys that only `merge_masks` reads: the rule making raw.h5 does not depend on them, so changing
# one reruns the cheap merge and never SAM.
MERGE_KEYS = ("contested_pixel_sp", "contested_pixel_wp", "contested_pixel_all", "min_merged_area")
_RULE_KEYS = ("contested_pixel_sp", "contested_pixel_wp", "contested_pixel_all")
_FRACTION_KEYS = (  # thresholds, rates and ratios in [0, 1]
    "pred_iou_thresh",
    "stability_score_thresh",
    "box_nms_thresh",
    "crop_nms_thresh",
    "crop_overlap_ratio",
    "mask_nms_iou_thresh",
    "mask_nms_score_thresh",
    "mask_nms_inner_thresh",
    "sim_miss_rate",
    "sim_split_rate",
    "sim_merge_rate",
)
_MINIMUMS = (  # counts and sizes: (key, its minimum)
    ("points_per_side", 1),
    ("crop_n_layers", 0),
    ("crop_n_points_downscale_factor", 1),
    ("min_mask_region_area", 0),
    ("min_merged_area", 1),
    ("sim_erode_px", 0),
    ("sim_duplicates", 1),
)


@dataclass(frozen=True)
class MasksConfig:
    backend: str = "sim"
    sam_model_type: str = "vit_h"
    sam_checkpoint: str | None = None
    # segment-anything build arguments replacing those of sam_model_type (a smaller or resized SAM);
    # the keys are checked by the sam backend, which alone knows the architectures. Left out of the
    # hash (a dict has none); equality still compares it.
    sam_overrides: dict[str, Any] = field(default_factory=dict, hash=False)
    points_per_side: int = 32
    # point prompts decoded at once; "auto": 64 on a CPU, 256 on CUDA (a 24 GB card with vit_h at
    # 988 x 731 px), see ccl.masks.backends.sam.points_per_batch
    points_per_batch: int | str = "auto"
    # CUDA only: SAM's image encoder under autocast in this dtype (fp32, bf16, fp16); the prompt decoder
    # and every threshold stay float32, and a CPU runs float32 whatever this says
    precision: str = "bf16"
    pred_iou_thresh: float = 0.7
    stability_score_thresh: float = 0.85
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 1
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 100
    mask_nms_iou_thresh: float = 0.8
    mask_nms_score_thresh: float = 0.7
    mask_nms_inner_thresh: float = 0.5
    mask_nms_tile_px: int = 128
    contested_pixel_sp: str = "smaller"
    contested_pixel_wp: str = "larger"
    contested_pixel_all: str = "smaller"
    min_merged_area: int = 25
    sim_miss_rate: float = 0.1
    sim_split_rate: float = 0.1
    sim_merge_rate: float = 0.05
    sim_erode_px: int = 1
    sim_duplicates: int = 2
    sim_score_noise: float = 0.03
    sim_background_masks: bool = True

    def __post_init__(self) -> None:
        check_section(
            "masks",
            self,
            [
                ("backend", lambda v: v in BACKENDS, f"one of {BACKENDS}"),
                (
                    "sam_overrides",
                    lambda v: isinstance(v, Mapping),
                    "a mapping of SAM build arguments (e.g. {encoder_depth: 2})",
                ),
            ]
            + [
                (k, lambda v: v in CONTESTED_PIXEL_RULES, f"one of {CONTESTED_PIXEL_RULES}")
                for k in _RULE_KEYS
            ]
            + [(k, lambda v: 0.0 <= v <= 1.0, "in [0, 1]") for k in _FRACTION_KEYS]
            + [(k, lambda v, low=low: int(v) >= low, f">= {low}") for k, low in _MINIMUMS]
            + [
                (
                    "points_per_batch",
                    lambda v: v == "auto" or (is_int(v) and v >= 1),
                    "an integer >= 1, or auto",
                ),
                ("precision", lambda v: v in PRECISIONS, f"one of {tuple(PRECISIONS)}"),
                ("stability_score_offset", lambda v: v > 0, "> 0"),
                ("mask_nms_tile_px", lambda v: 1 <= int(v) <= 4096, "in [1, 4096]"),
                ("sim_score_noise", lambda v: v >= 0, ">= 0"),
            ],
        )
        # a plain dict with lists, as YAML gives it: the same value whether built from config or Python
        object.__setattr__(
            self,
            "sam_overrides",
            {str(k): (list(v) if isinstance(v, list | tuple) else v) for k, v in self.sam_overrides.items()},
        )

    def contested_pixel(self, scale: str) -> str:
        """The contested-pixel rule of a merged scale (sp, wp, all)."""
        if scale not in SCALES:
            raise ValueError(f"unknown mask scale {scale!r}; scales are {SCALES}")
        return getattr(self, f"contested_pixel_{scale}")

    def merge_params(self) -> dict[str, Any]:
        """The merge-only keys (what the merge_masks rule passes)."""
        return {k: getattr(self, k) for k in MERGE_KEYS}

    def generation_params(self) -> dict[str, Any]:
        """The keys raw.h5 depends on (every key but the merge-only ones), for its `params` attribute."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in MERGE_KEYS}
