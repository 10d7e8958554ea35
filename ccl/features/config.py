"""Config of the features stage: the `features` section of config.yaml.

Defaults equal workflow/schemas/stages/features.schema.yaml (tests/test_config.py holds them equal).
"""

from __future__ import annotations

from dataclasses import dataclass

from ccl.config_checks import check_section, is_int
from ccl.device import PRECISIONS

BACKENDS = ("open_clip", "sim")
SIM_MODES = ("anchor", "crop")
_COSINE_KEYS = ("sim_anchor_cosine", "sim_part_cosine")
_NOISE_KEYS = ("sim_noise", "sim_occlusion_gain", "sim_blur_gain", "sim_text_noise")


@dataclass(frozen=True)
class FeaturesConfig:
    backend: str = "sim"  # "open_clip" or "sim" (synthetic scenes only)
    model_name: str = "ViT-B-16"  # open_clip architecture
    model_config_file: str | None = None  # JSON defining model_name (open_clip's model_configs format)
    pretrained: str = "laion2b_s34b_b88k"  # open_clip tag, or the path of the weights file
    batch_size: int = 64  # crops per forward pass
    precision: str = "fp16"  # CUDA only: the encoders under autocast in this dtype; a CPU runs float32
    crop_size: int = 224  # px, side of the square crop (= the model's input size)
    sim_dim: int = 512  # sim: embedding dimension (ViT-B-16's)
    sim_anchor_cosine: float = 0.75  # sim: cosine between two categories' anchors (CLIP-like crowding)
    sim_part_cosine: float = 0.85  # sim: cosine between a part's anchor and its object's (or subpart/part)
    sim_noise: float = 0.3  # sim: scale of the view-dependent noise of every crop (see backends/sim.py)
    sim_occlusion_gain: float = 0.6  # sim: extra noise per unit of the covered objects' occluded fraction
    sim_blur_gain: float = 0.05  # sim: extra noise per pixel of the frame's motion blur
    sim_text_noise: float = 0.05  # sim: fixed offset of a query's text embedding from its category anchor
    sim_anchor_seed: int = 0  # sim: seed of the anchor space (the simulated model's "weights")
    # sim: "anchor" = anchors plus view noise drawn per view; "crop" = anchors mixed with a fixed
    # descriptor of the mask's rendered crop, no noise (backends/sim_crop.py, docs/features_sim.md)
    sim_mode: str = "anchor"

    def __post_init__(self) -> None:
        check_section(
            "features",
            self,
            [
                ("backend", lambda v: v in BACKENDS, f"one of {BACKENDS}"),
                ("precision", lambda v: v in PRECISIONS, f"one of {tuple(PRECISIONS)}"),
                ("sim_mode", lambda v: v in SIM_MODES, f"one of {SIM_MODES}"),
            ]
            + [
                (key, lambda v, lo=lo: is_int(v) and v >= lo, f"an integer >= {lo}")
                for key, lo in (("batch_size", 1), ("crop_size", 8), ("sim_dim", 8))
            ]
            + [(key, lambda v: 0.0 < float(v) < 1.0, "a cosine in (0, 1)") for key in _COSINE_KEYS]
            + [(key, lambda v: float(v) >= 0.0, "a number >= 0") for key in _NOISE_KEYS]
            + [("sim_anchor_seed", lambda v: is_int(v) and v >= 0, "an integer >= 0")],
        )
