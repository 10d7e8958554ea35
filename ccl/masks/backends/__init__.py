"""Mask backends behind one protocol: `sam` (segment-anything) and `sim` (from a synthetic scene's
ground-truth layers).

The registry maps a backend name to its module; each module has `check(cfg, scene, *, builders=None)`
(cheap checks of the user's input, run at the stage's entry before any model loads or frame is read)
and `build(cfg, *, scene, device, seed, load_image, builders=None) -> MaskBackend`; the real one also
`check_weights(cfg)` (the preflight's check of its checkpoint). `builders` replaces the sam backend's
model type → architecture registry (a tiny SAM in tests); the sim backend has no model and ignores it.
Modules are imported on use, so segment-anything is only needed by `sam`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Protocol

from ccl.io.masks_h5 import LevelMasks

REGISTRY: dict[str, str] = {
    "sam": "ccl.masks.backends.sam",
    "sim": "ccl.masks.backends.sim",
}


class MaskBackend(Protocol):
    model_info: dict[str, Any]  # raw.h5's `model` attribute: backend, model, checkpoint + sha256, simulated

    def frame_levels(self, index: int, camera: Any) -> tuple[LevelMasks, LevelMasks, LevelMasks]:
        """Candidate masks of frame `index` per level (subpart, part, whole), already filtered by
        predicted IoU, stability, box NMS and small-region cleanup; mask NMS comes after."""
        ...

    def close(self) -> None: ...


def backend_module(name: str) -> ModuleType:
    if name not in REGISTRY:
        raise ValueError(f"masks.backend: unknown backend {name!r}; known: {sorted(REGISTRY)}")
    return importlib.import_module(REGISTRY[name])
