"""What verifying costs: the checksums every ccl checkpoint and HDF5 file carries, the images' content
hashes of the scene manifest, and the text weights' hash, each beside the work of the stage that pays it.

Figures (seconds, and verification as a percentage of the reading or writing it rides on):
- a colour field of 1M Gaussians (sh degree 3, 236 MB): save and load, and the checksum alone;
- raw.h5 at LERF size per frame (986 x 728, 3 levels x 60 masks): write, merge_masks (the cheapest
  stage that reads it), and the checksum alone (write and open each take it once);
- 300 JPEG images of 986 x 728: their content hashes (every stage's load_scene_from_manifest) beside
  decoding them (what the stages do with each image);
- a 600 MB weights file: its sha256 beside torch.load of it (the text encoder's build), and the hash
  remembered by the first process as every later one gets it (`weights_sha256`).
Writes bench/out/integrity.json. Run: python -m bench.integrity
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "out" / "integrity.json"
N_GAUSSIANS, N_FRAMES, MASKS_PER_LEVEL, WIDTH, HEIGHT = 1_000_000, 12, 60, 986, 728
N_IMAGES, WEIGHTS_MB = 300, 600


def _best(fn, repeat=3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _fresh_caches() -> None:
    from ccl.io import h5, provenance

    h5._verified.clear()
    provenance._CACHE.clear()


def bench_field(root: Path) -> dict:
    import torch

    from ccl.io.checkpoint import HEADER_KEY, load_safetensors, tensors_sha256
    from ccl.splat.checkpoint import load_rgb_field, save_rgb_field
    from ccl.splat.model import init_gaussians

    rng = np.random.default_rng(0)
    g = init_gaussians(rng.normal(size=(N_GAUSSIANS, 3)).astype(np.float32),
                       rng.integers(0, 256, (N_GAUSSIANS, 3), dtype=np.uint8), sh_degree=3,
                       init_opacity=0.1, init_scale=1.0)  # fmt: skip
    path = root / "rgb.safetensors"
    header = {"scene": "bench", "config": {}, "iteration": 30000}
    save_s = _best(lambda: save_rgb_field(path, g, header=header))
    load_s = _best(lambda: load_rgb_field(path, scene="bench"))
    tensors, _ = load_safetensors(path)
    head = json.dumps({**header, "kind": "rgb_field"})
    sha_s = _best(lambda: tensors_sha256(tensors, head))
    assert HEADER_KEY and torch.is_tensor(tensors["means"])
    return {
        "n_gaussians": N_GAUSSIANS,
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "save_s": round(save_s, 3),
        "load_s": round(load_s, 3),
        "checksum_s": round(sha_s, 3),
        "checksum_pct_of_save": round(100 * sha_s / save_s, 1),
        "checksum_pct_of_load": round(100 * sha_s / load_s, 1),
    }


def _raw_frames():
    from ccl.io.masks_h5 import LevelMasks, RawFrameMasks

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    for i in range(N_FRAMES):
        levels = {}
        for k, lv in enumerate(("subpart", "part", "whole")):
            cy = rng.integers(0, HEIGHT, MASKS_PER_LEVEL)[:, None, None]
            cx = rng.integers(0, WIDTH, MASKS_PER_LEVEL)[:, None, None]
            r = (20 + 40 * k) * rng.random(MASKS_PER_LEVEL)[:, None, None] + 10
            masks = (yy[None] - cy) ** 2 + (xx[None] - cx) ** 2 < r**2
            score = rng.random(MASKS_PER_LEVEL, dtype=np.float32)
            levels[lv] = LevelMasks.from_masks(masks, score, score)
        yield RawFrameMasks(name=f"frame_{i + 1:05d}", **levels)


def bench_raw_masks(root: Path) -> dict:
    from ccl.io.h5 import bytes_sha256
    from ccl.io.masks_h5 import write_raw_masks
    from ccl.masks import MasksConfig, merge_masks

    names = [f"frame_{i + 1:05d}" for i in range(N_FRAMES)]
    frames = list(_raw_frames())
    raw = root / "raw.h5"
    write_s = _best(lambda: write_raw_masks(raw, iter(frames), frame_names=names, params={}, model={}), 1)

    def merge():
        _fresh_caches()
        merge_masks(raw, scale="wp", cfg=MasksConfig(), out_path=root / "wp.h5")

    merge_s = _best(merge, 1)
    sha_s = _best(lambda: bytes_sha256(raw))
    return {
        "frames": N_FRAMES,
        "masks_per_frame": 3 * MASKS_PER_LEVEL,
        "image": [WIDTH, HEIGHT],
        "file_mb": round(raw.stat().st_size / 2**20, 1),
        "write_s_per_frame": round(write_s / N_FRAMES, 4),
        "merge_s_per_frame": round(merge_s / N_FRAMES, 4),
        "checksum_s_per_frame": round(sha_s / N_FRAMES, 4),
        "checksum_pct_of_write": round(100 * sha_s / write_s, 1),
        "checksum_pct_of_merge": round(100 * sha_s / merge_s, 1),
    }


def bench_images(root: Path) -> dict:
    import cv2

    from ccl.io.hashing import file_sha256

    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 256, (23, 31, 3), dtype=np.uint8), (WIDTH, HEIGHT))
    paths = []
    for i in range(N_IMAGES):
        p = root / f"frame_{i:05d}.jpg"
        cv2.imwrite(str(p), np.roll(base, i, axis=1))
        paths.append(p)
    hash_s = _best(lambda: [file_sha256(p) for p in paths])
    decode_s = _best(lambda: [cv2.imread(str(p)) for p in paths], 1)
    return {
        "images": N_IMAGES,
        "mb": round(sum(p.stat().st_size for p in paths) / 2**20, 1),
        "hash_s": round(hash_s, 3),
        "decode_s": round(decode_s, 3),
        "hash_pct_of_decode": round(100 * hash_s / decode_s, 1),
    }


def bench_weights(root: Path) -> dict:
    import torch

    from ccl.io import hashing
    from ccl.io.hashing import file_sha256

    path = root / "weights.bin"
    torch.save({"w": torch.zeros(WEIGHTS_MB * 2**20 // 4)}, path)
    hash_s = _best(lambda: file_sha256(path))
    load_s = _best(lambda: torch.load(path, weights_only=True), 1)
    os.environ["CCL_HASH_CACHE"] = str(root / "hash_cache")
    hashing.weights_sha256(path)  # the first process to build the model hashes it

    def later_process():
        hashing._REMEMBERED.clear()
        hashing.weights_sha256(path)

    remembered_s = _best(later_process)
    return {
        "mb": WEIGHTS_MB,
        "hash_s": round(hash_s, 3),
        "torch_load_s": round(load_s, 3),
        "hash_pct_of_load": round(100 * hash_s / load_s, 1),
        "remembered_hash_s": round(remembered_s, 5),  # every later process (weights_sha256)
        "remembered_pct_of_load": round(100 * remembered_s / load_s, 2),
    }


def main() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out = {
            "machine": platform.processor() or platform.machine(),
            "field": bench_field(root),
            "raw_masks": bench_raw_masks(root),
            "images": bench_images(root),
            "weights": bench_weights(root),
        }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
