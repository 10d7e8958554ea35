"""results/{scene}/tracks/{scale}.h5 (kind "tracks"), docs/contracts.md "Tracks".

Root attrs: `n_tracks` (int) plus the common frame of `ccl.io.h5`; per frame group `labels` int32 [M]
(-1 unmatched) and `best_iou` float32 [M], M = the frame's mask count in masks/{scale}.h5.
Typed form: `FrameTracks` (re-exported as `ccl.tracks.FrameTracks`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccl.io.h5 import frame_names_of, open_h5_for_read, put_array, read_json_attr, write_h5

KIND = "tracks"
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class FrameTracks:
    """Track labels of the masks of one frame (mask i of `masks/{scale}.h5` ↔ row i)."""

    name: str  # frame name (image file stem)
    labels: np.ndarray  # [M] int32, track index, -1 = unmatched
    best_iou: np.ndarray  # [M] float32, IoU with the best propagated mask (0 when there is none)

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=np.int32).reshape(-1)
        best_iou = np.asarray(self.best_iou, dtype=np.float32).reshape(-1)
        assert labels.shape == best_iou.shape, (labels.shape, best_iou.shape)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "best_iou", best_iou)

    @property
    def n_masks(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class TracksFile:
    path: Path
    n_tracks: int
    frames: dict[str, FrameTracks]  # by frame name, in the scene's frame order
    params: dict[str, Any]
    model: dict[str, Any]  # backend, checkpoint, `simulated`

    @property
    def frame_names(self) -> list[str]:
        return list(self.frames)


def write_tracks(
    path: str | os.PathLike,
    frames: Iterable[FrameTracks],
    *,
    n_tracks: int,
    frame_names: Sequence[str],
    params: Mapping[str, Any],
    model: Mapping[str, Any],
    inputs: Mapping[str, Any] | None = None,
) -> Path:
    """Write every frame's labels atomically (a killed run leaves no file)."""
    frames = list(frames)
    names = [fr.name for fr in frames]
    assert names == list(frame_names), "frames must come in the scene's frame order"
    with write_h5(
        path,
        kind=KIND,
        format_version=FORMAT_VERSION,
        params=params,
        model=model,
        inputs=inputs,
        frame_names=list(frame_names),
    ) as f:
        f.attrs["n_tracks"] = int(n_tracks)
        for fr in frames:
            g = f.create_group(fr.name)
            put_array(g, "labels", fr.labels.astype("int32"))
            put_array(g, "best_iou", fr.best_iou.astype("float32"))
    return Path(path)


def read_tracks(path: str | os.PathLike) -> TracksFile:
    """Read a tracks file, refusing one of another kind, version, or left incomplete by a killed run."""
    path = Path(path)
    with open_h5_for_read(path, kind=KIND, format_versions=(FORMAT_VERSION,)) as f:
        frames = {}
        for name in frame_names_of(f):
            g = f[name]
            frames[name] = FrameTracks(name=name, labels=g["labels"][:], best_iou=g["best_iou"][:])
        return TracksFile(
            path=path,
            n_tracks=int(f.attrs["n_tracks"]),
            frames=frames,
            params=read_json_attr(f, "params", {}),
            model=read_json_attr(f, "model", {}),
        )
