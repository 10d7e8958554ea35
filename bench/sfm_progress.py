"""How honest the pose job's time-left estimates are, per stage, on the synthetic scene's photos.

ccl.sfm.recover_poses reports each stage in units of its cost (SIFT per photo, mapping per registered
image; matching is one step: matched in parts, reruns made other models) through ccl.runlog.progress, whose estimate is elapsed / done
x (total − done). This bench records when each unit finished (a wrapper around the progress the stages
call) and, per stage, at the first report with at least a quarter of the units done: the predicted
time left by that rule, the actual time left until the stage ended, and the error (predicted − actual)
/ actual. The issue's target: within ±50 %. Mapping's stage end includes the final bundle adjustment,
which no unit carries. Writes bench/out/sfm_progress.json. Run: python -m bench.sfm_progress
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

OUT = Path(__file__).parent / "out" / "sfm_progress.json"


def main(argv: list[str] | None = None) -> dict:
    import ccl.sfm._colmap as colmap_mod
    from ccl.io import atomic_write_text
    from ccl.sfm import SfmConfig, recover_poses
    from ccl.synthetic import SyntheticConfig, make_scene

    parser = argparse.ArgumentParser(prog="python -m bench.sfm_progress", description=__doc__.split("\n")[0])
    parser.add_argument("--views", type=int, default=30)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    stages: dict[str, dict] = {}
    real_progress = colmap_mod.progress

    def recording(iterable, *, desc, total=None, weight=None, **kw):
        rec = stages.setdefault(desc, {"total": total, "t0": time.perf_counter(), "done": []})
        done = 0
        try:
            for item in real_progress(iterable, desc=desc, total=total, weight=weight, **kw):
                yield item
                done += 1 if weight is None else weight(item)
                rec["done"].append((time.perf_counter() - rec["t0"], done))
        finally:
            rec["end"] = time.perf_counter() - rec["t0"]

    syn = replace(SyntheticConfig(), n_views=args.views, width=args.width, height=args.height)
    out: dict = {
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "command": " ".join(["python -m bench.sfm_progress", *(sys.argv[1:] if argv is None else argv)]),
        "synthetic": asdict(syn), "threads": args.threads,
    }  # fmt: skip
    colmap_mod.progress = recording
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            scene_dir = make_scene(tmp / "scene", cfg=syn, seed=0)
            shutil.copytree(scene_dir / "images", tmp / "photos")
            report = recover_poses(tmp / "photos", tmp / "sfm" / "model", cfg=SfmConfig(),
                                   report_path=tmp / "sfm" / "poses.json", threads=args.threads)  # fmt: skip
            out["matcher"] = report["matcher"]
            out["images_registered"] = report["images_registered"]
    finally:
        colmap_mod.progress = real_progress
    out["stages"] = {}
    for desc, rec in stages.items():
        total, end = rec["total"], rec["end"]
        at = next(((t, d) for t, d in rec["done"] if d >= total / 4 and d < total), None)
        row = {"units_total": total, "units_done_at_end": rec["done"][-1][1] if rec["done"] else 0,
               "stage_seconds": end}  # fmt: skip
        if at is not None:
            t, d = at
            predicted = t / d * (total - d)
            actual = end - t
            row |= {"at_units": d, "at_seconds": t, "predicted_left_s": predicted, "actual_left_s": actual,
                    "error": (predicted - actual) / actual if actual > 0 else None}  # fmt: skip
            row["within_50pct"] = row["error"] is not None and abs(row["error"]) <= 0.5
        out["stages"][desc] = row
    atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
