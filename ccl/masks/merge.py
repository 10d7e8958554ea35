"""`merge_masks`: raw.h5's levels → one non-overlapping scale, results/{scene}/masks/{scale}.h5."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from ccl.io.masks_h5 import FrameMasks, open_raw_masks, write_masks
from ccl.io.provenance import check_scene_of, file_record
from ccl.masks.config import MasksConfig
from ccl.masks.ops import SCALE_LEVELS, merge_levels
from ccl.runlog import progress

log = logging.getLogger(__name__)


def merge_masks(
    raw_path: str | os.PathLike,
    *,
    scale: str,
    cfg: MasksConfig,
    out_path: str | os.PathLike,
    manifest: str | os.PathLike | None = None,
) -> Path:
    """Merge the levels of `scale` (sp = subpart ∪ part, wp = whole ∪ part, all = every level) of each
    frame of raw.h5 into a segmentation map, contested pixels going by `cfg.contested_pixel(scale)`.

    Masks left with fewer than `cfg.min_merged_area` pixels are dropped; every index kept owns pixels.
    A frame without masks is kept (segmentation all −1, zero-length arrays) and reported once.
    With `manifest` (the scene's scene.json), raw.h5 must record it as its scene; the merged file
    records it in turn, so that every reader of masks can tell their scene.
    """
    if scale not in SCALE_LEVELS:
        raise ValueError(f"unknown mask scale {scale!r}; scales are {sorted(SCALE_LEVELS)}")
    rule = cfg.contested_pixel(scale)
    empty: list[str] = []
    with open_raw_masks(raw_path) as raw:
        if manifest is not None:
            check_scene_of(raw_path, raw.inputs, manifest)
        inputs = {"raw": file_record(raw_path)}
        scene_record = file_record(manifest) if manifest is not None else raw.inputs.get("manifest")
        if scene_record is not None:
            inputs["manifest"] = scene_record

        def frames() -> Iterator[FrameMasks]:
            for frame in progress(raw, desc=f"merge {scale}", total=len(raw), unit="frame"):
                merged = merge_levels(frame, scale=scale, rule=rule, min_area=cfg.min_merged_area)
                if merged.n_masks == 0:
                    empty.append(frame.name)
                yield merged

        path = write_masks(
            out_path,
            frames(),
            frame_names=raw.frame_names,
            scale=scale,
            params={
                **raw.params,
                "scale": scale,
                "levels": list(SCALE_LEVELS[scale]),
                "contested_pixel": rule,
                "min_merged_area": cfg.min_merged_area,
            },
            model=raw.model,
            inputs=inputs,
        )
        n = len(raw)
    if empty:
        log.warning(
            "%s: %d of %d frames have no masks, kept as empty frames: %s%s",
            scale,
            len(empty),
            n,
            ", ".join(empty[:10]),
            " …" if len(empty) > 10 else "",
        )
    return path
