"""Config of the features stage: the `features` section of config.yaml.

Defaults equal workflow/schemas/stages/features.schema.yaml (tests/test_config.py holds them equal).
"""

from __future__ import annotations

from dataclasses import dataclass

BACKENDS = ("open_clip", "sim")


@dataclass(frozen=True)
class FeaturesConfig:
    backend: str = "sim"  # "open_clip" or "sim" (synthetic scenes only)
    model_name: str = "ViT-B-16"  # open_clip architecture
    model_config_file: str | None = None  # JSON defining model_name (open_clip's model_configs format)
    pretrained: str = "laion2b_s34b_b88k"  # open_clip tag, or the path of the weights file
    batch_size: int = 64  # crops per forward pass
    crop_size: int = 224  # px, side of the square crop (= the model's input size)
    sim_dim: int = 512  # sim: embedding dimension (ViT-B-16's)
    sim_anchor_cosine: float = 0.75  # sim: cosine between two categories' anchors (CLIP-like crowding)
    sim_part_cosine: float = 0.85  # sim: cosine between a part's anchor and its object's (or subpart/part)
    sim_noise: float = 0.3  # sim: scale of the view-dependent noise of every crop (see backends/sim.py)
    sim_occlusion_gain: float = 0.6  # sim: extra noise per unit of the covered objects' occluded fraction
    sim_blur_gain: float = 0.05  # sim: extra noise per pixel of the frame's motion blur
    sim_text_noise: float = 0.05  # sim: fixed offset of a query's text embedding from its category anchor
    sim_anchor_seed: int = 0  # sim: seed of the anchor space (the simulated model's "weights")

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"features.backend: expected one of {BACKENDS}, got {self.backend!r}")
        for key, lo in (("batch_size", 1), ("crop_size", 8), ("sim_dim", 8)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"features.{key}: expected an integer >= {lo}, got {v!r}")
        for key in ("sim_anchor_cosine", "sim_part_cosine"):
            v = getattr(self, key)
            if not 0.0 < float(v) < 1.0:
                raise ValueError(f"features.{key}: expected a cosine in (0, 1), got {v!r}")
        for key in ("sim_noise", "sim_occlusion_gain", "sim_blur_gain", "sim_text_noise"):
            v = getattr(self, key)
            if float(v) < 0.0:
                raise ValueError(f"features.{key}: expected a number >= 0, got {v!r}")
