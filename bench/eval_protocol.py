"""The LERF-OVS protocol at LERF-OVS size (988 x 731), per (frame, query) with two scales.

Figures: `evaluate_query` (mix with the 30x30 box, min-max, threshold, 7x7 majority, IoU, localization)
per (frame, query); the vectorised 7x7 majority alone, and LangSplat's per-pixel loop on a 100-row
strip scaled to the full image (the reference our vectorised filter is tested against); relevance
painting of 15 queries from a class map. Writes bench/out/eval_protocol.json.
Run: python -m bench.eval_protocol
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "out" / "eval_protocol.json"
H, W, SCALES, QUERIES, PROTOTYPES, DIM = 731, 988, 2, 15, 128, 512


def _time(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _loop_majority(mask):
    h, w = mask.shape
    out = mask.copy()
    for i in range(h):
        for j in range(w):
            win = mask[max(0, i - 3) : min(i + 4, h - 1), max(0, j - 3) : min(j + 4, w - 1)]
            out[i, j] = np.argmax(np.bincount(win.reshape(-1)))
    return out


def main() -> None:
    import cv2

    from ccl.eval import evaluate_query, majority_smooth
    from ccl.query import QueryConfig, from_arrays, prototype_relevance, relevance_maps

    rng = np.random.default_rng(0)
    maps = np.stack(
        [cv2.GaussianBlur(rng.random((H, W), dtype=np.float32), (0, 0), 20) for _ in range(SCALES)]
    )
    gt = np.zeros((H, W), bool)
    gt[200:400, 300:600] = True
    boxes = np.array([[300.0, 200.0, 599.0, 399.0]])
    mask = (maps[0] > np.median(maps[0])).astype(np.uint8)
    strip = mask[:100]

    cfg = QueryConfig()
    protos = rng.normal(size=(PROTOTYPES, DIM)).astype(np.float32)
    emb = from_arrays(
        [f"q{i}" for i in range(QUERIES)], rng.normal(size=(QUERIES, DIM)), rng.normal(size=(4, DIM)), cfg=cfg
    )
    class_map = rng.integers(0, PROTOTYPES, size=(H, W))

    res = {
        "image_hw": [H, W],
        "scales": SCALES,
        "evaluate_query_s": _time(lambda: evaluate_query(maps, gt, boxes)),
        "majority_vectorised_s": _time(lambda: majority_smooth(mask)),
        "majority_langsplat_loop_s_extrapolated": _time(lambda: _loop_majority(strip), repeat=1) * H / 100,
        f"relevance_{QUERIES}_queries_s": _time(
            lambda: relevance_maps(class_map, prototype_relevance(protos, emb, cfg=cfg))
        ),
        "machine": platform.processor() or platform.machine(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
