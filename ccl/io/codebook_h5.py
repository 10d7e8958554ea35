"""results/{scene}/seed{N}/codebook/{variant}/{scale}.h5 (kind "codebook"), docs/contracts.md "Codebook".

Root dataset `prototypes` float32 [N, D] (unit rows); root attrs `n_prototypes`, `dim`, `variant`
plus the common frame of `ccl.io.h5` (params, model, inputs, frame_names); per frame group
`prototype_index` int32 [M], row i = mask i of masks/{scale}.h5, values in 0..N−1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccl.io.h5 import frame_names_of, open_h5_for_read, put_array, read_json_attr, write_h5

KIND = "codebook"
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class CodebookFile:
    path: Path
    variant: str  # full, base, pull, push
    prototypes: np.ndarray  # [N, D] float32, unit rows
    prototype_index: dict[str, np.ndarray]  # frame name → [M] int32 j*, in the scene's frame order
    params: dict[str, Any]
    model: dict[str, Any]
    inputs: dict[str, Any]

    @property
    def frame_names(self) -> list[str]:
        return list(self.prototype_index)

    @property
    def n_prototypes(self) -> int:
        return int(self.prototypes.shape[0])


def write_codebook(
    path: str | os.PathLike,
    *,
    variant: str,
    prototypes: np.ndarray,
    prototype_index: Mapping[str, np.ndarray],
    frame_names: Sequence[str],
    params: Mapping[str, Any],
    model: Mapping[str, Any],
    inputs: Mapping[str, Any],
) -> Path:
    """Write a codebook atomically (a killed run leaves no file)."""
    prototypes = np.asarray(prototypes, dtype=np.float32)
    assert prototypes.ndim == 2, prototypes.shape
    assert list(prototype_index) == list(frame_names), "frames must come in the scene's frame order"
    with write_h5(
        path, kind=KIND, format_version=FORMAT_VERSION, params=params, model=model, inputs=inputs,
        frame_names=list(frame_names),
    ) as f:  # fmt: skip
        f.attrs["variant"] = str(variant)
        f.attrs["n_prototypes"] = int(prototypes.shape[0])
        f.attrs["dim"] = int(prototypes.shape[1])
        put_array(f, "prototypes", prototypes)
        for name in frame_names:
            idx = np.asarray(prototype_index[name], dtype=np.int32).reshape(-1)
            assert idx.size == 0 or (idx.min() >= 0 and idx.max() < prototypes.shape[0]), name
            put_array(f.create_group(name), "prototype_index", idx)
    return Path(path)


def read_codebook(path: str | os.PathLike) -> CodebookFile:
    """Read a codebook file, refusing one of another kind, version, or left incomplete by a killed run."""
    path = Path(path)
    with open_h5_for_read(path, kind=KIND, format_versions=(FORMAT_VERSION,)) as f:
        return CodebookFile(
            path=path,
            variant=str(f.attrs["variant"]),
            prototypes=f["prototypes"][:],
            prototype_index={n: f[n]["prototype_index"][:] for n in frame_names_of(f)},
            params=read_json_attr(f, "params", {}),
            model=read_json_attr(f, "model", {}),
            inputs=read_json_attr(f, "inputs", {}),
        )
