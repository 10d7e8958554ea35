"""Index maps: a frame's prototype indices painted over its segmentation (the splat stage's targets)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ccl.codebook.ops import paint_index_map
from ccl.io.codebook_h5 import read_codebook
from ccl.io.h5 import frame_names_of, open_h5_for_read


def iter_index_maps(
    codebook_path: str | os.PathLike, masks_path: str | os.PathLike
) -> Iterator[tuple[str, np.ndarray]]:
    """(frame name, index map [H, W] int64, −1 where no mask) for every frame, in the scene's order.

    `masks_path` is results/{scene}/masks/{scale}.h5 of the same scale as the codebook; a file of
    another scene or scale (other frames or mask counts) raises ValueError naming both files.
    """
    codebook = read_codebook(codebook_path)
    masks_path = Path(masks_path)
    with open_h5_for_read(masks_path, kind="masks") as f:
        names = frame_names_of(f)
        if names != codebook.frame_names:
            raise ValueError(
                f"the masks file {masks_path} ({len(names)} frames) and the codebook {codebook_path} "
                f"({len(codebook.frame_names)} frames) are not of the same scene: frame names differ"
            )
        for name in names:
            seg = f[name]["segmentation"][:]
            idx = codebook.prototype_index[name]
            n_masks = int(f[name]["score"].shape[0]) if "score" in f[name] else int(seg.max()) + 1
            if n_masks != idx.shape[0]:
                raise ValueError(
                    f"frame {name!r}: the masks file {masks_path} has {n_masks} masks but the codebook "
                    f"{codebook_path} indexes {idx.shape[0]}: they are of different scales or runs; "
                    "rerun the codebook from this masks file's features and tracks"
                )
            yield name, paint_index_map(seg, idx)
