"""results/{scene}/features/{scale}.h5 (kind "features"), docs/contracts.md "Features".

Root attrs: `dim` (int D), `model` (JSON: backend, model name, pretrained file and sha256, `simulated`)
plus the common frame of `ccl.io.h5`; per frame group `features` float16 [M, D], L2-normalised rows,
row i = mask i of masks/{scale}.h5.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccl.io.h5 import frame_names_of, open_h5_for_read, put_array, read_json_attr, write_h5

KIND = "features"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FeaturesFile:
    path: Path
    dim: int
    frames: dict[str, np.ndarray]  # frame name → [M, D] float16, in the scene's frame order
    params: dict[str, Any]
    model: dict[str, Any]

    @property
    def frame_names(self) -> list[str]:
        return list(self.frames)


class FeaturesWriter:
    """Frames are added one at a time (a scene's features need not fit in memory twice)."""

    def __init__(self, f: Any, dim: int, frame_names: Sequence[str]) -> None:
        self._f, self.dim, self._expected, self._written = f, int(dim), list(frame_names), []

    def add(self, name: str, features: np.ndarray) -> None:
        feats = np.asarray(features)
        assert feats.ndim == 2 and feats.shape[1] == self.dim, (feats.shape, self.dim)
        assert name == self._expected[len(self._written)], "frames must come in the scene's frame order"
        put_array(self._f.create_group(name), "features", feats.astype(np.float16))
        self._written.append(name)


@contextlib.contextmanager
def features_writer(
    path: str | os.PathLike,
    *,
    dim: int,
    frame_names: Sequence[str],
    params: Mapping[str, Any],
    model: Mapping[str, Any],
    inputs: Mapping[str, Any] | None = None,
) -> Iterator[FeaturesWriter]:
    """Open a features file for writing; it appears under `path` only when every frame is in."""
    with write_h5(
        path,
        kind=KIND,
        format_version=FORMAT_VERSION,
        params=params,
        model=model,
        inputs=inputs,
        frame_names=list(frame_names),
    ) as f:
        f.attrs["dim"] = int(dim)
        writer = FeaturesWriter(f, dim, frame_names)
        yield writer
        assert writer._written == list(frame_names), "every frame must be written"


def read_features(path: str | os.PathLike) -> FeaturesFile:
    """Read a features file, refusing one of another kind, version, or left incomplete by a killed run."""
    path = Path(path)
    with open_h5_for_read(path, kind=KIND, format_versions=(FORMAT_VERSION,)) as f:
        dim = int(f.attrs["dim"])
        frames = {name: f[name]["features"][:] for name in frame_names_of(f)}
        return FeaturesFile(
            path=path,
            dim=dim,
            frames=frames,
            params=read_json_attr(f, "params", {}),
            model=read_json_attr(f, "model", {}),
        )
