"""Features backends behind one protocol: an `Encoder` embeds the masks of a frame and text queries.

The registry maps a backend name to its module; each module has `check(cfg, scene)` (cheap checks of
the user's input, run at the stage's entry before any work) and `build(cfg, *, scene, device, seed,
load_image) -> Encoder` (`scene=None` for a text-only encoder); the real one also `check_weights(cfg)`
(the preflight's check of its checkpoint). Modules are imported on use, so open_clip is only needed by
`open_clip`. Masks and tracks backends follow the same pattern.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Protocol

import numpy as np

REGISTRY: dict[str, str] = {
    "open_clip": "ccl.features.backends.open_clip",
    "sim": "ccl.features.backends.sim",
}


class Encoder(Protocol):
    dim: int  # D

    def model_info(self) -> dict[str, Any]:
        """What made the features (backend, model, weights and sha256, `simulated`), for the file's attrs."""
        ...

    def encode_frame(self, frame_index: int, camera: Any, masks: Any) -> np.ndarray:
        """The embedding of every mask of one frame (`ccl.io.masks_h5.FrameMasks`) → [M, D] float32, L2-normalised."""
        ...

    def encode_text(self, queries: Sequence[str]) -> np.ndarray:
        """[Q, D] float32, L2-normalised."""
        ...

    def close(self) -> None: ...


def backend_module(name: str) -> ModuleType:
    if name not in REGISTRY:
        raise ValueError(f"features.backend: unknown backend {name!r}; known: {sorted(REGISTRY)}")
    return importlib.import_module(REGISTRY[name])
