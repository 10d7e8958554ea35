"""The official SAM2 checkpoints of the configs shipped with sam2 (sam2/build_sam.py,
HF_MODEL_ID_TO_FILENAMES): data only, so that the sam2 backend and `ccl.weights` (`make checkpoints`)
both read it without importing each other."""

from __future__ import annotations

_URL_21 = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_URL_20 = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
OFFICIAL_CHECKPOINTS: dict[str, str] = {
    "configs/sam2.1/sam2.1_hiera_t.yaml": _URL_21 + "sam2.1_hiera_tiny.pt",
    "configs/sam2.1/sam2.1_hiera_s.yaml": _URL_21 + "sam2.1_hiera_small.pt",
    "configs/sam2.1/sam2.1_hiera_b+.yaml": _URL_21 + "sam2.1_hiera_base_plus.pt",
    "configs/sam2.1/sam2.1_hiera_l.yaml": _URL_21 + "sam2.1_hiera_large.pt",
    "configs/sam2/sam2_hiera_t.yaml": _URL_20 + "sam2_hiera_tiny.pt",
    "configs/sam2/sam2_hiera_s.yaml": _URL_20 + "sam2_hiera_small.pt",
    "configs/sam2/sam2_hiera_b+.yaml": _URL_20 + "sam2_hiera_base_plus.pt",
    "configs/sam2/sam2_hiera_l.yaml": _URL_20 + "sam2_hiera_large.pt",
}
