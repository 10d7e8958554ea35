"""Mask NMS and mask storage at LERF-OVS resolution (1080×1440).

Figures:
- LangSplat's mask NMS on 200 SAM-like masks (nested, near-duplicate, of every size) of one image:
  the per-pair reference (`mask_nms_reference`, one pair at a time as LangSplat computes it) against
  the vectorised `mask_nms` (intersections as banded matrix products), same run, same masks; the
  outputs must be identical. Target: ≥ 20× faster.
- HDF5 bytes per image of raw.h5 and of each merged {scale}.h5, written by the stage's own code from
  simulated SAM output on a procedural scene with objects / parts / subparts, against the boolean
  mask stacks they replace (M × H × W bytes).

Writes bench/out/mask_nms.json. Run: python -m bench.mask_nms
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "out" / "mask_nms.json"
HEIGHT, WIDTH, N_MASKS, N_FRAMES = 1080, 1440, 200, 3
NMS = dict(iou_thresh=0.8, score_thresh=0.7, inner_thresh=0.5)  # LangSplat's


def sam_like_masks(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Ellipses of log-uniform size, each with near-duplicates (shifted copies) and nested smaller ones."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    masks = []
    while len(masks) < n:
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = np.exp(rng.uniform(np.log(10), np.log(400), 2))
        for _ in range(int(rng.integers(1, 4))):  # duplicates from neighbouring grid points
            dy, dx = rng.normal(0, 3, 2)
            masks.append(((yy - cy - dy) / ry) ** 2 + ((xx - cx - dx) / rx) ** 2 < 1)
        if rng.random() < 0.5:  # a part inside
            s = rng.uniform(0.3, 0.7)
            masks.append(((yy - cy) / (ry * s)) ** 2 + ((xx - cx - rx * (1 - s) / 2) / (rx * s)) ** 2 < 1)
    return np.stack(masks[:n])


def hierarchy_layers(rng: np.random.Generator, h: int, w: int, n_objects: int = 12):
    """Ground-truth id layers (subpart, part, whole) of ellipse objects cut into sectors and stripes."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    whole, part, sub = (np.full((h, w), -1, np.int32) for _ in range(3))
    next_id = n_objects
    for o in range(n_objects):
        cy, cx = rng.uniform(0.1 * h, 0.9 * h), rng.uniform(0.1 * w, 0.9 * w)
        ry, rx = rng.uniform(60, 250, 2)
        obj = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        n_parts = int(rng.integers(1, 4))
        sector = np.floor((np.arctan2(yy - cy, xx - cx) + np.pi) / (2 * np.pi) * n_parts).astype(np.int32)
        n_sub = int(rng.integers(1, 4))
        stripe = np.clip(((yy - cy + ry) / (2 * ry) * n_sub).astype(np.int32), 0, n_sub - 1)
        whole[obj] = o
        part[obj] = next_id + np.minimum(sector[obj], n_parts - 1)
        next_id += n_parts
        sub[obj] = next_id + np.minimum(sector[obj], n_parts - 1) * n_sub + stripe[obj]
        next_id += n_parts * n_sub
    return sub, part, whole


def bench_nms(rng: np.random.Generator) -> dict:
    from ccl.masks import mask_nms, mask_nms_reference

    masks = sam_like_masks(rng, N_MASKS, HEIGHT, WIDTH)
    scores = rng.uniform(0.6, 1.0, N_MASKS).astype(np.float32)
    t0 = time.perf_counter()
    ref = mask_nms_reference(masks, scores, **NMS)
    t_ref = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fast = mask_nms(masks, scores, **NMS)
        times.append(time.perf_counter() - t0)
    t_fast = min(times)
    return {
        "n_masks": N_MASKS,
        "height": HEIGHT,
        "width": WIDTH,
        "thresholds": NMS,
        "per_pair_s": round(t_ref, 3),
        "vectorised_s": round(t_fast, 3),
        "speedup": round(t_ref / t_fast, 1),
        "target_speedup": 20,
        "identical": bool(np.array_equal(ref, fast)),
        "kept": int(fast.sum()),
        "tile_px": 128,
    }


def bench_storage(rng: np.random.Generator) -> dict:
    from ccl.io.masks_h5 import RawFrameMasks, write_raw_masks
    from ccl.masks import MasksConfig, merge_masks, open_masks
    from ccl.masks.backends.sim import simulate_levels
    from ccl.masks.ops import apply_mask_nms, filter_candidates

    cfg = MasksConfig(sim_background_masks=True)
    frames = []
    for i in range(N_FRAMES):
        layers = hierarchy_layers(rng, HEIGHT, WIDTH)
        cands = simulate_levels(*layers, cfg=cfg, seed=0, frame_index=i)
        levels = [apply_mask_nms(filter_candidates(c, cfg), cfg) for c in cands]
        frames.append(RawFrameMasks(f"frame_{i:05d}", *levels))
    names = [f.name for f in frames]
    raw_stack = sum(f.n_masks for f in frames) * HEIGHT * WIDTH / N_FRAMES
    out: dict = {"frames": N_FRAMES, "height": HEIGHT, "width": WIDTH}
    with tempfile.TemporaryDirectory() as tmp:
        raw = write_raw_masks(Path(tmp) / "raw.h5", iter(frames), frame_names=names, params={}, model={})
        raw_bytes = raw.stat().st_size / N_FRAMES
        out["raw"] = {
            "masks_per_image": sum(f.n_masks for f in frames) / N_FRAMES,
            "h5_bytes_per_image": int(raw_bytes),
            "bool_stack_bytes_per_image": int(raw_stack),
            "ratio": round(raw_stack / raw_bytes, 1),
        }
        for scale in ("sp", "wp", "all"):
            path = merge_masks(raw, scale=scale, cfg=cfg, out_path=Path(tmp) / f"{scale}.h5")
            with open_masks(path) as r:
                m = sum(fm.n_masks for fm in r) / N_FRAMES
            b = path.stat().st_size / N_FRAMES
            out[scale] = {
                "masks_per_image": m,
                "h5_bytes_per_image": int(b),
                "bool_stack_bytes_per_image": int(m * HEIGHT * WIDTH),
                "ratio": round(m * HEIGHT * WIDTH / b, 1),
            }
    return out


def main() -> dict:
    rng = np.random.default_rng(0)
    out = {
        "command": "python -m bench.mask_nms",
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()},
        "mask_nms": bench_nms(rng),
        "storage": bench_storage(rng),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
