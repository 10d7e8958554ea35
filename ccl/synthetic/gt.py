"""Reading a synthetic scene's gt.h5 (docs/contracts.md "gt.h5"), written by `make_scene`, for the
`sim` backends of the masks, tracks and features stages and for the tracks evaluation.

Only synthetic scenes have it: `require_gt(scene, stage)` is the check every sim backend runs at the
stage's entry, so a real scene is refused before any work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccl.config import config_source

GT_KIND = "gt"
LEVEL_LAYERS = ("subpart_id", "part_id", "whole_id")  # mask level 0, 1, 2 → the layer it is judged on
WHOLE_LEVEL = 2
BACKGROUND = -1  # the id `majority_id` gives a mask that covers mostly background


def gt_path(scene) -> Path:
    return Path(scene.root) / "gt.h5"


def require_gt(scene, stage: str, *, fix: str | None = None) -> Path:
    """gt.h5 of `scene`; a ValueError naming `stage` and `fix` (default: use the stage's real backend)
    when the scene is not synthetic."""
    path = gt_path(scene)
    if not path.is_file():
        fix = fix or f"Use the real backend for real scenes ({stage}.backend in {config_source()})"
        raise ValueError(
            f"{stage}.backend = 'sim' simulates models from a synthetic scene's ground truth, but scene "
            f"{scene.name!r} has no {path}: it is not a synthetic scene. {fix}"
        )
    return path


def require_seed(seed, stage: str) -> int:
    """`seed` as the int a `sim` backend draws its noise from; a ValueError naming `stage` for None (what
    the workflow passes to the real models, which draw nothing) or a value that is not an integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(
            f"{stage}.backend = 'sim' draws its simulated output from a seed, but it was given seed={seed!r}. "
            "Pass an integer seed (the workflow passes the config's `seed`); seed=None is for the real "
            "models, which draw nothing."
        )
    return int(seed)


@dataclass(frozen=True, eq=False)
class GtFrame:
    name: str
    whole_id: np.ndarray  # [H, W] int32, object id, -1 background/table/occluder
    part_id: np.ndarray  # [H, W] int32, -1 none
    subpart_id: np.ndarray  # [H, W] int32, -1 none (= the part's id for a part without subparts)
    occluded_fraction: np.ndarray  # [n_objects] float32
    blur: float  # motion-blur length in pixels

    def layer(self, level: int) -> np.ndarray:
        return getattr(self, LEVEL_LAYERS[int(level)])

    def region(self, level: int, ident: int) -> np.ndarray:
        """[H, W] bool: the pixels of `ident` on the layer of `level`.

        BACKGROUND at the whole level is the background itself (table, walls, occluders): gt.h5 gives
        it no ids, but SAM segments it at that level (the masks sim offers it there) and SAM2 tracks it
        like any other mask. Below the whole level a background id is nothing (an empty region).
        """
        if ident >= 0:
            return self.layer(level) == ident
        if ident == BACKGROUND and int(level) == WHOLE_LEVEL:
            return self.whole_id < 0
        return np.zeros(self.whole_id.shape, dtype=bool)


class GroundTruth:
    """An open gt.h5: `categories`, `objects` (the hierarchy JSON), `frame(name)` (cached)."""

    def __init__(self, path: str | Path, frame_names: list[str]):
        from ccl.io import open_h5_for_read
        from ccl.io.h5 import frame_names_of

        self.path = Path(path)
        self._f = open_h5_for_read(self.path, kind=GT_KIND, format_versions=(1,))
        missing = sorted(set(frame_names) - set(frame_names_of(self._f)))
        if missing:
            self._f.close()
            raise ValueError(
                f"{self.path}: no ground truth for frames {missing[:3]}… of the scene: gt.h5 belongs to another "
                "scene; rebuild the synthetic scene (rule synthetic_scene)"
            )
        self.categories: list[str] = json.loads(self._f.attrs["categories"])
        self.objects: list[dict[str, Any]] = json.loads(self._f.attrs["objects"])
        self._cache: dict[str, GtFrame] = {}

    def frame(self, name: str) -> GtFrame:
        """The frame's layers, kept for the next call (backends that revisit frames)."""
        if name not in self._cache:
            self._cache[name] = self.read_frame(name)
        return self._cache[name]

    def read_frame(self, name: str) -> GtFrame:
        """The frame's layers read from the file, not kept (one pass over the frames)."""
        g = self._f[name]
        return GtFrame(
            name=name,
            whole_id=g["whole_id"][()].astype(np.int32),
            part_id=g["part_id"][()].astype(np.int32),
            subpart_id=g["subpart_id"][()].astype(np.int32),
            occluded_fraction=g["occluded_fraction"][()].astype(np.float32),
            blur=float(g["blur"][()]),
        )

    def close(self) -> None:
        self._f.close()


def majority_id(layer: np.ndarray, mask: np.ndarray) -> int:
    """The id that covers most of `mask` in a ground-truth layer (-1 counts as an id: background)."""
    vals = layer[mask]
    if vals.size == 0:
        return -1
    ids, counts = np.unique(vals, return_counts=True)
    return int(ids[counts.argmax()])
