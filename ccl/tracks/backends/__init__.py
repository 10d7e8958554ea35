"""Tracks backends behind one protocol: a `Propagator` carries seed masks through the frames.

The registry maps a backend name to its module; each module has `check(cfg, scene)` (cheap checks of
the user's input, run at the stage's entry before any work) and `build(cfg, *, scene, device, seed,
load_image) -> Propagator`; the real one also `check_weights(cfg)` (the preflight's check of its
checkpoint). Modules are imported on use, so sam2 is only needed by `sam2`. Masks and features
backends follow the same pattern.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np

REGISTRY: dict[str, str] = {
    "sam2": "ccl.tracks.backends.sam2",
    "sim": "ccl.tracks.backends.sim",
}


@dataclass(frozen=True, eq=False)
class Seed:
    """A mask that starts a track: the first frame's masks, or (re-seeding) masks left unmatched."""

    track_id: int
    frame_index: int  # frame the track starts on
    mask_index: int  # index of the mask in that frame's segmentation
    mask: np.ndarray  # [H, W] bool
    level: int  # 0 subpart, 1 part, 2 whole (the sim reads the matching ground-truth layer)


class Propagator(Protocol):
    def model_info(self) -> dict[str, Any]:
        """What made the tracks (backend, config, checkpoint and sha256, `simulated`), for the file's attrs."""
        ...

    def propagate(self, seeds: Sequence[Seed], start_frame: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (frame index, masks [len(seeds), H, W] bool numpy) for frames start_frame..T-1.

        A seed is tracked from its own frame on; before it, its mask is empty. Calling again with more
        seeds (re-seeding) continues the same tracks: earlier seeds keep their identity.
        """
        ...

    def close(self) -> None: ...


def backend_module(name: str) -> ModuleType:
    if name not in REGISTRY:
        raise ValueError(f"tracks.backend: unknown backend {name!r}; known: {sorted(REGISTRY)}")
    return importlib.import_module(REGISTRY[name])
