"""Config of the tracks stage: the `tracks` section of config.yaml.

Defaults equal workflow/schemas/stages/tracks.schema.yaml (tests/test_config.py holds them equal).
"""

from __future__ import annotations

from dataclasses import dataclass

from ccl.config_checks import check_section
from ccl.device import PRECISIONS

BACKENDS = ("sam2", "sim")


@dataclass(frozen=True)
class TracksConfig:
    backend: str = "sim"  # "sam2" (video predictor) or "sim" (synthetic scenes only)
    sam2_config: str = "configs/sam2.1/sam2.1_hiera_l.yaml"  # config name inside the sam2 package
    sam2_checkpoint: str | None = None  # path of the matching checkpoint, e.g. sam2.1_hiera_large.pt
    sam2_overrides: tuple[str, ...] = ()  # extra Hydra overrides of the SAM2 config ("++model.x=y")
    iou_thresh: float = 0.5  # a mask takes a track's label when their IoU exceeds this
    offload_video_to_cpu: bool = False  # long sequences: keep decoded frames in CPU memory
    offload_state_to_cpu: bool = False  # long sequences: keep SAM2's memory bank in CPU memory
    precision: str = "bf16"  # CUDA only: SAM2 under autocast in this dtype (fp32, bf16, fp16); CPU float32
    reseed_unmatched: bool = False  # masks left unmatched start new tracks (off in the paper)
    sim_drift_rate: float = 0.005  # sim: per-frame probability that a track is lost for good
    sim_swap_rate: float = 0.003  # sim: per-frame probability that a track jumps to a neighbour

    def __post_init__(self) -> None:
        check_section(
            "tracks",
            self,
            [
                ("backend", lambda v: v in BACKENDS, f"one of {BACKENDS}"),
                ("iou_thresh", lambda v: 0.0 <= float(v) < 1.0, "a number in [0, 1)"),
                ("precision", lambda v: v in PRECISIONS, f"one of {tuple(PRECISIONS)}"),
                ("sim_drift_rate", lambda v: 0.0 <= float(v) <= 1.0, "a probability in [0, 1]"),
                ("sim_swap_rate", lambda v: 0.0 <= float(v) <= 1.0, "a probability in [0, 1]"),
            ],
        )
        object.__setattr__(self, "sam2_overrides", tuple(self.sam2_overrides))
