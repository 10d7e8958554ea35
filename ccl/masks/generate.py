"""`generate_masks`: SAM's three levels for every image of a scene → results/{scene}/masks/raw.h5."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ccl.device import out_of_memory_names
from ccl.io.masks_h5 import RAW_FORMAT_VERSION, RAW_KIND, RawFrameMasks, open_raw_masks, write_raw_masks
from ccl.io.resume import FrameStore, frames_record
from ccl.masks.backends import backend_module
from ccl.masks.config import MasksConfig
from ccl.masks.ops import apply_mask_nms
from ccl.runlog import progress

log = logging.getLogger(__name__)


# What lowers SAM's GPU memory, for the message when it runs out (the decoder's logits grow with the
# prompts decoded at once, the encoder's activations with its dtype).
OUT_OF_MEMORY_KEYS = "masks.points_per_batch (e.g. 64), or set masks.precision: bf16"


def generate_masks(
    scene: Any,
    *,
    cfg: MasksConfig,
    out_path: str | os.PathLike,
    device: str = "auto",
    seed: int | None = 0,
    load_image: Callable[[Any], np.ndarray] | None = None,
    sam_builders: Mapping[str, Callable[[], Any]] | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> Path:
    """Per-level masks of every camera of `scene` (a `ccl.scene.Scene`), written atomically to `out_path`.

    Backend `sam` runs segment-anything (checkpoint checked before anything loads; `sam_builders`
    replaces the model-type → architecture registry, as tests do with a tiny model); `sim` simulates it
    from a synthetic scene's gt.h5. Then LangSplat's mask NMS runs on every level. `load_image`
    (camera → [H, W, 3] uint8 RGB) defaults to `ccl.scene.load_image` with the default scene_load config.
    A frame without masks is kept, with empty levels, and reported once.

    Resumable: each finished frame is kept in a side folder beside `out_path` (`ccl.io.resume`,
    ``raw.partial/``), so a rerun after a failure or a kill makes only the missing frames and writes
    the same file an uninterrupted run writes; a folder made with other params, model, checkpoint,
    frames or inputs is set aside with a warning. The folder is removed once `out_path` is written.
    """
    module = backend_module(cfg.backend)
    module.check(cfg, scene, builders=sam_builders)  # the user's files, before any model loads
    if load_image is None:
        load_image = _default_loader()
    with out_of_memory_names("masks", OUT_OF_MEMORY_KEYS):
        backend = module.build(
            cfg, scene=scene, device=device, seed=seed, load_image=load_image, builders=sam_builders
        )
    cameras = scene.cameras
    params = {**cfg.generation_params(), "seed": None if seed is None else int(seed)}
    model = backend.model_info
    inputs = {"scene": str(scene.root), **dict(inputs or {})}
    empty: list[str] = []
    try:
        store = FrameStore.open(
            out_path,
            made_with=_made_with(params, model, inputs, cameras),
            frame_names=scene.frame_names,
            check_frame=functools.partial(
                _check_kept_frame, sizes={c.name: (c.height, c.width) for c in cameras}
            ),
            logger=log,
        )
        kept = set(store.kept)
        to_make = [i for i, c in enumerate(cameras) if c.name not in kept]

        def frames() -> Iterator[RawFrameMasks]:
            made = progress(
                to_make, desc=f"masks {scene.name}", unit="frame", total=len(cameras), initial=len(kept)
            )
            for index, camera in enumerate(cameras):
                if camera.name in kept:
                    with open_raw_masks(store.frame_path(camera.name)) as reader:
                        frame = reader.read(camera.name)
                else:
                    made_index = next(made)
                    assert made_index == index, (made_index, index)
                    with out_of_memory_names(f"masks of frame {camera.name}", OUT_OF_MEMORY_KEYS):
                        candidates = backend.frame_levels(index, camera)
                    levels = [apply_mask_nms(lv, cfg) for lv in candidates]
                    frame = RawFrameMasks(camera.name, *levels)
                    assert frame.shape_hw == (camera.height, camera.width), (frame.shape_hw, camera.name)
                    # kept before it goes on: a failure at a later frame loses none of this one's work
                    write_raw_masks(
                        store.frame_path(camera.name),
                        [frame],
                        frame_names=[camera.name],
                        params=params,
                        model=model,
                        inputs=inputs,
                    )
                if frame.n_masks == 0:
                    empty.append(camera.name)
                yield frame
            for _ in made:  # none left: this ends the progress loop, which reports its closing line
                raise AssertionError("a frame to make was not made")

        path = write_raw_masks(
            out_path,
            frames(),
            frame_names=scene.frame_names,
            params=params,
            model=model,
            inputs=inputs,
        )
    finally:
        backend.close()
    store.remove(log)
    if empty:
        log.warning(
            "%d of %d frames have no masks, kept as empty frames: %s%s",
            len(empty),
            len(cameras),
            ", ".join(empty[:10]),
            " …" if len(empty) > 10 else "",
        )
    return path


def _made_with(
    params: Mapping[str, Any], model: Mapping[str, Any], inputs: Mapping[str, Any], cameras: Any
) -> dict[str, Any]:
    """What the side folder's frames are made with: a rerun reuses them only if it has all of it."""
    return {
        "kind": RAW_KIND,
        "format_version": RAW_FORMAT_VERSION,
        "params": params,
        "model": model,  # backend, checkpoint and its sha256 (sim: gt.h5 and its sha256), device
        "inputs": inputs,  # the workflow's: the manifest by path and sha256 (ccl.io.provenance)
        "frames": frames_record(cameras),
    }


def _check_kept_frame(path: Path, name: str, *, sizes: Mapping[str, tuple[int, int]]) -> None:
    """A kept frame file holds frame `name`, complete, readable in full, of the camera's size."""
    with open_raw_masks(path) as reader:
        if reader.frame_names != [name]:
            raise ValueError(f"holds frames {reader.frame_names}, expected [{name!r}]")
        frame = reader.read(name)
    if frame.shape_hw != sizes[name]:
        raise ValueError(f"frame {name} is {frame.shape_hw}, the camera's {sizes[name]}")


def _default_loader() -> Callable[[Any], np.ndarray]:
    from ccl.scene import SceneLoadConfig, load_image

    return functools.partial(load_image, cfg=SceneLoadConfig())
