"""Mask backends behind one protocol: `sam` (segment-anything) and `sim` (from a synthetic scene's
ground-truth layers). `build_backend` is the registry from the config's `masks.backend` to a builder;
each builder checks its inputs (checkpoint, ground truth) before any model loads or frame is read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from ccl.io.masks_h5 import LevelMasks
from ccl.masks.config import MasksConfig


class MaskBackend(Protocol):
    model_info: dict[str, Any]  # raw.h5's `model` attribute: backend, model, checkpoint + sha256, simulated

    def frame_levels(self, index: int, camera: Any) -> tuple[LevelMasks, LevelMasks, LevelMasks]:
        """Candidate masks of frame `index` per level (subpart, part, whole), already filtered by
        predicted IoU, stability, box NMS and small-region cleanup; mask NMS comes after."""
        ...

    def close(self) -> None: ...


ImageLoader = Callable[[Any], np.ndarray]  # camera → [H, W, 3] uint8 RGB


def _build_sam(
    scene: Any,
    *,
    cfg: MasksConfig,
    device: str,
    seed: int,
    load_image: ImageLoader,
    sam_builders: Mapping[str, Callable[[], Any]] | None,
) -> MaskBackend:
    from ccl.masks.backends.sam import SamBackend

    return SamBackend.build(cfg=cfg, device=device, load_image=load_image, builders=sam_builders)


def _build_sim(
    scene: Any,
    *,
    cfg: MasksConfig,
    device: str,
    seed: int,
    load_image: ImageLoader,
    sam_builders: Mapping[str, Callable[[], Any]] | None,
) -> MaskBackend:
    from ccl.masks.backends.sim import SimBackend

    return SimBackend(scene, cfg=cfg, seed=seed)


BACKENDS: dict[str, Callable[..., MaskBackend]] = {"sam": _build_sam, "sim": _build_sim}


def build_backend(scene: Any, *, cfg: MasksConfig, **kwargs: Any) -> MaskBackend:
    if cfg.backend not in BACKENDS:
        raise ValueError(f"config.yaml: masks.backend {cfg.backend!r} is not one of {sorted(BACKENDS)}")
    return BACKENDS[cfg.backend](scene, cfg=cfg, **kwargs)
