"""`extract_features` (a CLIP vector per mask) and `encode_text` (a vector per query), paper 3.2 eq. 3."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ccl.config import as_params
from ccl.device import out_of_memory_names
from ccl.features.backends import backend_module
from ccl.features.config import FeaturesConfig
from ccl.io.features_h5 import FORMAT_VERSION as FEATURES_FORMAT_VERSION
from ccl.io.features_h5 import KIND as FEATURES_KIND
from ccl.io.features_h5 import features_writer, read_features
from ccl.io.masks_h5 import check_masks_match_scene, open_masks, read_frame_masks
from ccl.io.provenance import check_scene_of, file_record
from ccl.io.resume import FrameStore, frames_record
from ccl.runlog import progress

if TYPE_CHECKING:
    from ccl.scene import Camera

log = logging.getLogger(__name__)

# What lowers the encoder's GPU memory, for the message when it runs out.
OUT_OF_MEMORY_KEYS = "features.batch_size (crops per forward pass, e.g. 32)"


def extract_features(
    scene,
    masks_path: str | os.PathLike,
    *,
    cfg: FeaturesConfig,
    out_path: str | os.PathLike,
    device: str = "auto",
    seed: int | None = 0,
    load_image: Callable[[Camera], np.ndarray] | None = None,
    manifest: str | os.PathLike | None = None,
) -> Path:
    """Embed every mask of `masks_path` and write `out_path` (docs/contracts.md "Features") atomically.

    Row i of a frame's `features` [M, D] float16 is mask i of that frame, L2-normalised; a frame without
    masks gets [0, D]. `scene` is a `ccl.scene.Scene`; `load_image(camera) -> [H, W, 3] uint8` reads its
    images (default `ccl.scene.load_image` with the default scene_load config; only `open_clip` reads them).

    Resumable as `ccl.masks.generate_masks` is: each finished frame is kept in ``{scale}.partial/``
    beside `out_path` (`ccl.io.resume`) until `out_path` is written, so a rerun after a failure embeds
    only the missing frames and writes the file an uninterrupted run writes.
    """
    if not isinstance(cfg, FeaturesConfig):
        raise TypeError(f"cfg: expected a FeaturesConfig, got {type(cfg).__name__}")
    backend = backend_module(cfg.backend)
    backend.check(cfg, scene)  # the user's files, before any work
    with open_masks(masks_path) as reader:
        check_masks_match_scene(reader, scene, masks_path)
        if manifest is not None:  # the scene's scene.json: the masks must record it as theirs
            check_scene_of(masks_path, reader.inputs, manifest)
        with out_of_memory_names("features", OUT_OF_MEMORY_KEYS):
            encoder = backend.build(cfg, scene=scene, device=device, seed=seed, load_image=load_image)
        try:
            params = {**as_params(cfg), "seed": None if seed is None else int(seed), "device": str(device)}
            model = encoder.model_info()
            store = FrameStore.open(
                out_path,
                made_with={
                    "kind": FEATURES_KIND,
                    "format_version": FEATURES_FORMAT_VERSION,
                    "params": params,
                    # with the device it computes on where that changes the features (OpenCLIP: "auto" on
                    # a GPU embeds in float16 autocast, on a CPU in float32); the sim ignores the device
                    "model": model,
                    "masks": file_record(masks_path),
                    "masks_model": reader.model,
                    "scene": scene.name,
                    "frames": frames_record(scene.cameras),
                },
                frame_names=scene.frame_names,
                check_frame=functools.partial(_check_kept_frame, masks=reader, dim=encoder.dim),
                logger=log,
            )
            kept = set(store.kept)
            to_make = [t for t, cam in enumerate(scene.cameras) if cam.name not in kept]
            total = 0
            with features_writer(
                out_path,
                dim=encoder.dim,
                frame_names=scene.frame_names,
                params=params,
                model=model,
                inputs={
                    "masks": file_record(masks_path),
                    "masks_model": reader.model,
                    "scene": scene.name,
                },
            ) as writer:
                made = progress(
                    to_make, desc="features", unit="frame", total=len(scene.cameras), initial=len(kept)
                )
                for t, cam in enumerate(scene.cameras):
                    if cam.name in kept:
                        feats = read_features(store.frame_path(cam.name)).frames[cam.name]
                    else:
                        made_t = next(made)
                        assert made_t == t, (made_t, t)
                        fm = read_frame_masks(reader, cam, masks_path)
                        if fm.n_masks == 0:
                            log.info("frame %s has no masks: features [0, %d]", cam.name, encoder.dim)
                            feats = np.zeros((0, encoder.dim), np.float32)
                        else:
                            with out_of_memory_names(f"features of frame {cam.name}", OUT_OF_MEMORY_KEYS):
                                feats = encoder.encode_frame(t, cam, fm)
                        assert feats.shape == (fm.n_masks, encoder.dim), (feats.shape, fm.n_masks)
                        # kept before it goes on: a failure at a later frame loses none of this one's work
                        with features_writer(
                            store.frame_path(cam.name),
                            dim=encoder.dim,
                            frame_names=[cam.name],
                            params=params,
                            model=model,
                        ) as frame_file:
                            frame_file.add(cam.name, feats)
                    writer.add(cam.name, feats)
                    total += len(feats)
                for _ in made:  # none left: this ends the progress loop, which reports its closing line
                    raise AssertionError("a frame to embed was not embedded")
        finally:
            encoder.close()
    store.remove(log)
    log.info("%s: %d masks embedded in %d dims", out_path, total, encoder.dim)
    return Path(out_path)


def _check_kept_frame(path: Path, name: str, *, masks: Any, dim: int) -> None:
    """A kept frame file holds frame `name`, complete, one `dim`-vector per mask of the masks file."""
    kept = read_features(path)
    if kept.frame_names != [name] or kept.dim != dim:
        raise ValueError(
            f"holds frames {kept.frame_names} of dim {kept.dim}, expected [{name!r}] of dim {dim}"
        )
    want = (masks.read(name).n_masks, dim)
    if kept.frames[name].shape != want:
        raise ValueError(f"holds features {kept.frames[name].shape}, expected {want}")


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
