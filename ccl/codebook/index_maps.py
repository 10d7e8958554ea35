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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


def _paint_frames(codebook: CodebookFile, masks_path: str | os.PathLike) -> Iterator[tuple[str, np.ndarray]]:
    masks_path = Path(masks_path)
    n_prototypes = codebook.n_prototypes
    with open_h5_for_read(masks_path, kind="masks") as f:
        names = frame_names_of(f)
        if names != codebook.frame_names:
            raise ValueError(
                f"the masks file {masks_path} ({len(names)} frames) and the codebook {codebook.path} "
                f"({len(codebook.frame_names)} frames) are not of the same scene: frame names differ"
            )
        for name in names:
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
            yield name, paint_index_map(seg, idx)
