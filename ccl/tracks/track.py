"""`track_masks`: a track label for every mask of every frame (paper 3.3, step 1)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ccl.config import as_params
from ccl.device import out_of_memory_names
from ccl.io.masks_h5 import FrameMasks, check_masks_match_scene, open_masks, read_frame_masks
from ccl.io.provenance import check_scene_of, file_record
from ccl.io.tracks_h5 import FrameTracks, write_tracks
from ccl.runlog import progress
from ccl.tracks.backends import Seed, backend_module
from ccl.tracks.config import TracksConfig
from ccl.tracks.ops import iou_matrix, match_labels

if TYPE_CHECKING:
    from ccl.scene import Camera

log = logging.getLogger(__name__)


# What lowers SAM2's GPU memory, for the message when it runs out.
OUT_OF_MEMORY_KEYS = (
    "the frames and memory SAM2 keeps on the GPU: set tracks.offload_video_to_cpu: true and "
    "tracks.offload_state_to_cpu: true (or tracks.precision: bf16)"
)


def track_masks(
    scene,
    masks_path: str | os.PathLike,
    *,
    cfg: TracksConfig,
    out_path: str | os.PathLike,
    device: str = "auto",
    seed: int | None = 0,
    load_image: Callable[[Camera], np.ndarray] | None = None,
    manifest: str | os.PathLike | None = None,
) -> list[FrameTracks]:
    """Propagate the first frame's masks through `scene` and label every mask of `masks_path`.

    A mask of frame t takes the label of the propagated mask with which its IoU is highest if that IoU
    exceeds `cfg.iou_thresh`, else -1. With `cfg.reseed_unmatched`, the unmatched masks of a frame start
    new tracks there. Writes `out_path` (docs/contracts.md "Tracks") atomically and returns the labels in
    frame order. `scene` is a `ccl.scene.Scene`; `load_image(camera) -> [H, W, 3] uint8` reads its images
    (default `ccl.scene.load_image` with the default scene_load config; only `sam2` reads images).
    """
    if not isinstance(cfg, TracksConfig):
        raise TypeError(f"cfg: expected a TracksConfig, got {type(cfg).__name__}")
    backend = backend_module(cfg.backend)
    backend.check(cfg, scene)  # the user's files, before any work
    with open_masks(masks_path) as reader:
        check_masks_match_scene(reader, scene, masks_path)
        if manifest is not None:  # the scene's scene.json: the masks must record it as theirs
            check_scene_of(masks_path, reader.inputs, manifest)
        n_tracks, model, tracked = _track(
            reader, scene, cfg=cfg, backend=backend, device=device, seed=seed, load_image=load_image
        )
        masks_model = reader.model
    write_tracks(
        out_path,
        tracked,
        n_tracks=n_tracks,
        frame_names=scene.frame_names,
        params={**as_params(cfg), "seed": None if seed is None else int(seed), "device": str(device)},
        model=model,
        inputs={"masks": file_record(masks_path), "masks_model": masks_model, "scene": scene.name},
    )
    matched = sum(int((fr.labels >= 0).sum()) for fr in tracked)
    total = sum(fr.n_masks for fr in tracked)
    log.info(
        "%s: %d tracks, %d of %d masks labelled (%.1f%%)",
        out_path,
        n_tracks,
        matched,
        total,
        100.0 * matched / max(total, 1),
    )
    return tracked


def _track(reader, scene, *, cfg, backend, device, seed, load_image):
    cameras = scene.cameras
    n_frames = len(cameras)
    masks_path = reader.path
    first = read_frame_masks(reader, cameras[0], masks_path)
    if n_frames == 1 or first.n_masks == 0:
        why = (
            "the scene has one image" if n_frames == 1 else f"its first frame {cameras[0].name} has no masks"
        )
        log.warning("scene %r: %s, nothing to track: every label is -1", scene.name, why)
        out = []
        for cam in cameras:
            m = read_frame_masks(reader, cam, masks_path).n_masks
            out.append(FrameTracks(cam.name, np.full(m, -1, np.int32), np.zeros(m, np.float32)))
        return 0, {"backend": cfg.backend, "simulated": cfg.backend == "sim", "note": why}, out

    seeds = [Seed(k, 0, k, first.segmentation == k, int(first.level[k])) for k in range(first.n_masks)]
    log.info(
        "scene %r: propagating %d first-frame masks through %d frames (%s)",
        scene.name,
        len(seeds),
        n_frames,
        cfg.backend,
    )
    with out_of_memory_names("tracks", OUT_OF_MEMORY_KEYS):
        propagator = backend.build(cfg, scene=scene, device=device, seed=seed, load_image=load_image)
        try:
            model = propagator.model_info()
            results: dict[int, FrameTracks] = {}
            reseeded: set[int] = set()
            start = 0
            while start < n_frames:
                restart = None
                stream = propagator.propagate(seeds, start)
                for t, propagated in progress(stream, desc="tracks", total=n_frames - start, unit="frame"):
                    fm = first if t == 0 else read_frame_masks(reader, cameras[t], masks_path)
                    labels, best_iou = _label_frame(fm, propagated, seeds, t, cfg.iou_thresh)
                    unmatched = np.flatnonzero(labels < 0)
                    if cfg.reseed_unmatched and unmatched.size and t not in reseeded:
                        reseeded.add(t)
                        seeds = seeds + [
                            Seed(len(seeds) + j, t, int(i), fm.segmentation == i, int(fm.level[i]))
                            for j, i in enumerate(unmatched)
                        ]
                        log.info(
                            "frame %s: %d unmatched masks start new tracks", cameras[t].name, unmatched.size
                        )
                        restart = t
                        break
                    results[t] = FrameTracks(cameras[t].name, labels, best_iou)
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
                if restart is None:
                    break
                start = restart
        finally:
            propagator.close()
    assert sorted(results) == list(range(n_frames)), sorted(results)
    return len(seeds), model, [results[t] for t in range(n_frames)]


def _label_frame(fm: FrameMasks, propagated, seeds, t: int, iou_thresh: float):
    iou = iou_matrix(fm.segmentation, propagated, fm.n_masks)  # [M, K]
    labels, best_iou = match_labels(iou, iou_thresh)
    # A seed's own mask keeps its track on the frame it starts (even if the model reproduces it coarsely).
    for s in seeds:
        if s.frame_index == t:
            labels[s.mask_index] = s.track_id
    return labels, best_iou
