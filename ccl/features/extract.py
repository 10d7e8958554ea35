"""`extract_features` (a CLIP vector per mask) and `encode_text` (a vector per query), paper 3.2 eq. 3."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ccl.config import as_params
from ccl.features.backends import backend_module
from ccl.features.config import FeaturesConfig
from ccl.io.features_h5 import features_writer
from ccl.io.masks_h5 import check_masks_match_scene, open_masks, read_frame_masks
from ccl.io.provenance import file_record
from ccl.runlog import progress

if TYPE_CHECKING:
    from ccl.scene import Camera

log = logging.getLogger(__name__)


def extract_features(
    scene,
    masks_path: str | os.PathLike,
    *,
    cfg: FeaturesConfig,
    out_path: str | os.PathLike,
    device: str = "auto",
    seed: int = 0,
    load_image: Callable[[Camera], np.ndarray] | None = None,
) -> Path:
    """Embed every mask of `masks_path` and write `out_path` (docs/contracts.md "Features") atomically.

    Row i of a frame's `features` [M, D] float16 is mask i of that frame, L2-normalised; a frame without
    masks gets [0, D]. `scene` is a `ccl.scene.Scene`; `load_image(camera) -> [H, W, 3] uint8` reads its
    images (default `ccl.scene.load_image` with the default scene_load config; only `open_clip` reads them).
    """
    if not isinstance(cfg, FeaturesConfig):
        raise TypeError(f"cfg: expected a FeaturesConfig, got {type(cfg).__name__}")
    backend = backend_module(cfg.backend)
    backend.check(cfg, scene)  # the user's files, before any work
    with open_masks(masks_path) as reader:
        check_masks_match_scene(reader, scene, masks_path)
        encoder = backend.build(cfg, scene=scene, device=device, seed=seed, load_image=load_image)
        try:
            total = 0
            with features_writer(
                out_path,
                dim=encoder.dim,
                frame_names=scene.frame_names,
                params={**as_params(cfg), "seed": int(seed), "device": str(device)},
                model=encoder.model_info(),
                inputs={
                    "masks": file_record(masks_path),
                    "masks_model": reader.model,
                    "scene": scene.name,
                },
            ) as writer:
                for t, cam in enumerate(progress(scene.cameras, desc="features", unit="frame")):
                    fm = read_frame_masks(reader, cam, masks_path)
                    if fm.n_masks == 0:
                        log.info("frame %s has no masks: features [0, %d]", cam.name, encoder.dim)
                        feats = np.zeros((0, encoder.dim), np.float32)
                    else:
                        feats = encoder.encode_frame(t, cam, fm)
                    assert feats.shape == (fm.n_masks, encoder.dim), (feats.shape, fm.n_masks)
                    writer.add(cam.name, feats)
                    total += fm.n_masks
        finally:
            encoder.close()
    log.info("%s: %d masks embedded in %d dims", out_path, total, encoder.dim)
    return Path(out_path)


def encode_text(queries: Sequence[str], *, cfg: FeaturesConfig, device: str = "auto") -> np.ndarray:
    """Text embeddings of `queries` from the model `cfg` names → [Q, D] float32, L2-normalised.

    The same backend and weights as `extract_features`, so queries and masks share one space.
    """
    if isinstance(queries, str):
        raise TypeError("queries: expected a list of strings, got one string")
    backend = backend_module(cfg.backend)
    backend.check(cfg, None)
    return _text_encoder(cfg, str(device)).encode_text(list(queries))


@functools.lru_cache(maxsize=2)
def _text_encoder(cfg: FeaturesConfig, device: str):
    return backend_module(cfg.backend).build(cfg, scene=None, device=device)
