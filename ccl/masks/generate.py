"""`generate_masks`: SAM's three levels for every image of a scene → results/{scene}/masks/raw.h5."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ccl.io.masks_h5 import RawFrameMasks, write_raw_masks
from ccl.masks.backends import backend_module
from ccl.masks.config import MasksConfig
from ccl.masks.ops import apply_mask_nms
from ccl.runlog import progress

log = logging.getLogger(__name__)


def generate_masks(
    scene: Any,
    *,
    cfg: MasksConfig,
    out_path: str | os.PathLike,
    device: str = "auto",
    seed: int = 0,
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
    """
    module = backend_module(cfg.backend)
    module.check(cfg, scene, builders=sam_builders)  # the user's files, before any model loads
    if load_image is None:
        load_image = _default_loader()
    backend = module.build(
        cfg, scene=scene, device=device, seed=seed, load_image=load_image, builders=sam_builders
    )
    empty: list[str] = []

    def frames() -> Iterator[RawFrameMasks]:
        for index, camera in enumerate(progress(scene.cameras, desc=f"masks {scene.name}", unit="frame")):
            levels = [apply_mask_nms(lv, cfg) for lv in backend.frame_levels(index, camera)]
            frame = RawFrameMasks(camera.name, *levels)
            assert frame.shape_hw == (camera.height, camera.width), (frame.shape_hw, camera.name)
            if frame.n_masks == 0:
                empty.append(camera.name)
            yield frame

    try:
        path = write_raw_masks(
            out_path,
            frames(),
            frame_names=[c.name for c in scene.cameras],
            params={**cfg.generation_params(), "seed": int(seed)},
            model=backend.model_info,
            inputs={"scene": str(scene.root), **dict(inputs or {})},
        )
    finally:
        backend.close()
    if empty:
        log.warning(
            "%d of %d frames have no masks, kept as empty frames: %s%s",
            len(empty),
            len(scene.cameras),
            ", ".join(empty[:10]),
            " …" if len(empty) > 10 else "",
        )
    return path


def _default_loader() -> Callable[[Any], np.ndarray]:
    import functools

    from ccl.scene import SceneLoadConfig, load_image

    return functools.partial(load_image, cfg=SceneLoadConfig())
