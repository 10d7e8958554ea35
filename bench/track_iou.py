"""Track matching: IoU of 50 propagated masks x 200 masks of a 1080x1440 frame, all pairs at once
(ccl.tracks.ops.iou_matrix) vs one pair at a time (the reference), same run, same output; and, on the
synthetic default scene (sim masks, then sim tracks at the default config), the fraction of masks given
the right track label (ccl.tracks.evaluate). Wall and CPU seconds (CPU is steadier on a shared machine).
Writes bench/out/track_iou.json. Run: python -m bench.track_iou
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "out" / "track_iou.json"
H, W, M, K = 1080, 1440, 200, 50


def _timed(fn, repeat: int = 1):
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return result, {"wall_s": min(walls), "cpu_s": min(cpus)}


def frame_masks(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 1080x1440 segmentation of M cells (~15% of the image left unmasked) and K propagated masks:
    cells shifted by a few pixels (propagation error), some merged with a neighbour, some lost."""
    rng = np.random.default_rng(seed)
    step = 8
    gh, gw = H // step, W // step
    centres = rng.uniform((0, 0), (gh, gw), size=(M, 2))
    yy, xx = np.mgrid[0:gh, 0:gw]
    d = (yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2
    cells = d.argmin(axis=-1).astype(np.int32)
    seg = np.kron(cells, np.ones((step, step), np.int32))
    seg[rng.random((gh, gw)).repeat(step, 0).repeat(step, 1) < 0.15] = -1
    prop = np.zeros((K, H, W), bool)
    for k, cell in enumerate(rng.choice(M, size=K, replace=False)):
        region = seg == cell
        if k % 5 == 3:  # merged with the next cell
            region |= seg == (cell + 1) % M
        if k % 10 == 7:  # lost
            region[:] = False
        prop[k] = np.roll(region, shift=tuple(rng.integers(-6, 7, size=2)), axis=(0, 1))
    return seg, prop


def matching_figures() -> dict:
    from ccl.tracks.ops import iou_matrix, iou_matrix_per_pair, match_labels

    seg, prop = frame_masks()
    fast, t_fast = _timed(lambda: iou_matrix(seg, prop, M), repeat=3)
    ref, t_ref = _timed(lambda: iou_matrix_per_pair(seg, prop, M))
    (labels, _), t_match = _timed(lambda: match_labels(fast, 0.5), repeat=3)
    return {
        "frame": {"height": H, "width": W, "masks": M, "propagated": K},
        "vectorised": t_fast,
        "per_pair": t_ref,
        "speedup_wall": t_ref["wall_s"] / t_fast["wall_s"],
        "speedup_cpu": t_ref["cpu_s"] / max(t_fast["cpu_s"], 1e-9),
        "identical_output": bool(np.array_equal(fast, ref)),
        "match_labels": t_match,
        "masks_labelled": int((labels >= 0).sum()),
    }


def synthetic_figures() -> dict:
    from ccl.masks import MasksConfig, generate_masks, merge_masks
    from ccl.scene import SceneLoadConfig, load_scene
    from ccl.synthetic import SyntheticConfig, make_scene
    from ccl.tracks import TracksConfig, track_masks
    from ccl.tracks.evaluate import track_label_accuracy

    out: dict = {
        "synthetic": asdict(SyntheticConfig()),
        "masks": "MasksConfig() (sim)",
        "tracks": asdict(TracksConfig()),
    }
    with tempfile.TemporaryDirectory(prefix="bench-track-") as tmp:
        root = Path(tmp)
        make_scene(root / "scene", cfg=SyntheticConfig(), seed=0)
        scene = load_scene(root / "scene", source="synthetic", cfg=SceneLoadConfig(), name="synthetic")
        generate_masks(scene, cfg=MasksConfig(), out_path=root / "raw.h5", seed=0)
        for scale in ("sp", "wp"):
            merge_masks(root / "raw.h5", scale=scale, cfg=MasksConfig(), out_path=root / f"{scale}.h5")
            _, t = _timed(
                lambda s=scale: track_masks(
                    scene, root / f"{s}.h5", cfg=TracksConfig(), out_path=root / f"tracks_{s}.h5", seed=0
                )
            )
            acc = track_label_accuracy(scene, root / f"{scale}.h5", root / f"tracks_{scale}.h5")
            out[scale] = {**asdict(acc), "track_masks": t}
    return out


def main() -> dict:
    out = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "command": "python -m bench.track_iou",
        "iou_matching": matching_figures(),
        "synthetic_default": synthetic_figures(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    m = out["iou_matching"]
    print(
        f"IoU matching {K} x {M} at {H}x{W}: vectorised {m['vectorised']['wall_s']:.3f} s, per pair "
        f"{m['per_pair']['wall_s']:.1f} s ({m['speedup_wall']:.0f}x), identical: {m['identical_output']}"
    )
    for scale in ("sp", "wp"):
        s = out["synthetic_default"][scale]
        print(
            f"synthetic default {scale}: right label {s['right_fraction']:.3f} of {s['n_masks']} masks "
            f"(precision {s['labelled_precision']:.3f}, recall {s['trackable_recall']:.3f}, {s['n_tracks']} tracks)"
        )
    print(f"wrote {OUT}")
    return out


if __name__ == "__main__":
    main()
