"""Index maps: a frame's prototype indices painted over its segmentation (the splat stage's targets).

The one reader of a scale's masks file with its codebook. The two files are of the same scene and
scale when they hold the same frames and, in every frame, the codebook indexes exactly the masks file's
masks (docs/contracts.md: `prototype_index` row i = mask i of `masks/{scale}.h5`, every mask has one),
with indices among the codebook's prototypes. Anything else is refused naming both files: fewer
indices than masks would leave masks without a class, more would mean the codebook was fitted on
another masks file (another scale or run) whose masks 0..M−1 are different masks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccl.codebook.ops import paint_index_map
from ccl.io.codebook_h5 import CodebookFile, read_codebook
from ccl.io.h5 import frame_names_of, open_h5_for_read


@dataclass(frozen=True, eq=False)
class IndexMaps:
    """A scale's index maps and the codebook whose prototypes they index."""

    prototypes: np.ndarray  # [N, D] float32, unit rows: class j of a map is prototype j
    maps: dict[str, np.ndarray]  # frame name → [H, W] int64, −1 where no mask; in the scene's frame order

    @property
    def n_classes(self) -> int:
        return int(self.prototypes.shape[0])


def read_index_maps(codebook_path: str | os.PathLike, masks_path: str | os.PathLike) -> IndexMaps:
    """Every frame's index map with the codebook's prototypes; refuses files that do not match
    (see the module docstring) with a ValueError naming both."""
    codebook = read_codebook(codebook_path)
    return IndexMaps(prototypes=codebook.prototypes, maps=dict(_paint_frames(codebook, masks_path)))


def iter_index_maps(
    codebook_path: str | os.PathLike, masks_path: str | os.PathLike
) -> Iterator[tuple[str, np.ndarray]]:
    """(frame name, index map [H, W] int64, −1 where no mask) for every frame, in the scene's order.

    `masks_path` is results/{scene}/masks/{scale}.h5 of the same scale as the codebook; a file of
    another scene or scale (other frames or mask counts) raises ValueError naming both files.
    """
    yield from _paint_frames(read_codebook(codebook_path), masks_path)


def _same_frames(f: Any, codebook: CodebookFile, masks_path: Path) -> list[str]:
    """The frame names of the open masks file `f`, refused unless they are the codebook's."""
    names = frame_names_of(f)
    if names != codebook.frame_names:
        raise ValueError(
            f"the masks file {masks_path} ({len(names)} frames) and the codebook {codebook.path} "
            f"({len(codebook.frame_names)} frames) are not of the same scene: frame names differ"
        )
    return names


def _paint_frame(f: Any, name: str, codebook: CodebookFile, masks_path: Path) -> np.ndarray:
    """Frame `name`'s index map from the open masks file `f` (of `masks_path`) and `codebook`."""
    n_prototypes = codebook.n_prototypes
    seg = f[name]["segmentation"][:]
    idx = codebook.prototype_index[name]
    # M is the length of the per-mask arrays; every mask owns a pixel, so seg.max() + 1 equals it
    n_masks = int(f[name]["score"].shape[0]) if "score" in f[name] else int(seg.max()) + 1
    if n_masks != idx.shape[0]:
        raise ValueError(
            f"frame {name!r}: the masks file {masks_path} has {n_masks} masks but the codebook "
            f"{codebook.path} indexes {idx.shape[0]}: they are of different scales or runs; "
            "rerun the codebook from this masks file's features and tracks"
        )
    if idx.size and (idx.min() < 0 or idx.max() >= n_prototypes):
        raise ValueError(
            f"frame {name!r}: the codebook {codebook.path} has prototype indices "
            f"{int(idx.min())}..{int(idx.max())}, outside 0..{n_prototypes - 1} (its {n_prototypes} "
            f"prototypes), for the masks of {masks_path}; the codebook is damaged: rerun its rule"
        )
    return paint_index_map(seg, idx)


def _paint_frames(codebook: CodebookFile, masks_path: str | os.PathLike) -> Iterator[tuple[str, np.ndarray]]:
    masks_path = Path(masks_path)
    with open_h5_for_read(masks_path, kind="masks") as f:
        for name in _same_frames(f, codebook, masks_path):
            yield name, _paint_frame(f, name, codebook, masks_path)


class FrameIndexMaps(Mapping[str, np.ndarray]):
    """A scale's index maps painted one frame at a time, when asked (frame name -> [H, W] int64, −1
    where no mask): for a reader that visits each frame once, where holding them all would take 8 bytes
    a pixel of every frame (1.7 GB for 300 frames of 988×731). The frames are checked at once; each
    frame's masks against the codebook when it is painted (as read_index_maps does)."""

    def __init__(self, codebook_path: str | os.PathLike, masks_path: str | os.PathLike):
        self.codebook = read_codebook(codebook_path)
        self.masks_path = Path(masks_path)
        with open_h5_for_read(self.masks_path, kind="masks") as f:
            names = _same_frames(f, self.codebook, self.masks_path)
            self._shapes = {n: tuple(int(x) for x in f[n]["segmentation"].shape) for n in names}

    def frame_shape(self, name: str) -> tuple[int, int]:
        """(H, W) of frame `name`'s map, without painting it."""
        return self._shapes[name]  # type: ignore[return-value]

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._shapes:
            raise KeyError(name)
        with open_h5_for_read(self.masks_path, kind="masks") as f:
            return _paint_frame(f, name, self.codebook, self.masks_path)

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)
