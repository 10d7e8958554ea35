"""How honest the pose job's time-left estimates are, per stage, on the synthetic scene's photos.

ccl.sfm.recover_poses reports each stage in units of its cost through ccl.runlog.progress: SIFT per
photo; mapping per registered image, the clock started at the first image after the initial pair (the
pair's 2 images and it are the meter's `initial`), so the pair's search and that image's one-off cost
are not in the rate (ccl.sfm._colmap.incremental_mapping); matching is one step without an estimate
(matched in parts, reruns made other models). The estimate is runlog.format_progress's: elapsed /
(done − initial) x (total − done). This bench records when each unit finished (a wrapper around the
progress the stages call) and, per stage, at the first report with at least a quarter of the units
done: the predicted time left by that rule, the actual time left until the stage ended, and the error
(predicted − actual) / actual. Mapping's end includes the final bundle adjustment, which no unit
carries. The scene is made once and recover_poses run --repeats times on its photos: mapping takes
about a second here, so one run's error is mostly the machine's noise (other jobs on its cores); the
figure is the median over the runs, with every run's. `stage_seconds` runs from the meter's start
(mapping: from the first image after the pair) to the stage's end.
The issue's target: within ±50 %. Writes bench/out/sfm_progress.json. Run: python -m bench.sfm_progress
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
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
    parser.add_argument("--repeats", type=int, default=3, help="recover_poses runs on the same photos")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    stages: dict[str, dict] = {}
    real_progress = colmap_mod.progress

    def recording(iterable, *, desc, total=None, weight=None, initial=0, **kw):
        rec = stages.setdefault(
            desc, {"total": total, "initial": initial, "t0": time.perf_counter(), "done": []}
        )
        done = initial
        try:
            for item in real_progress(iterable, desc=desc, total=total, weight=weight, initial=initial, **kw):
                yield item
                step = 1 if weight is None else weight(item)
                done += step
                if step:
                    rec["done"].append((time.perf_counter() - rec["t0"], done))
        finally:
            rec["end"] = time.perf_counter() - rec["t0"]

    syn = replace(SyntheticConfig(), n_views=args.views, width=args.width, height=args.height)
    out: dict = {
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "command": " ".join(["python -m bench.sfm_progress", *(sys.argv[1:] if argv is None else argv)]),
        "synthetic": asdict(syn), "threads": args.threads, "repeats": args.repeats,
        "estimate": "elapsed / (done - initial) x (total - done), elapsed from the meter's start",
    }  # fmt: skip
    runs = []
    colmap_mod.progress = recording
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            scene_dir = make_scene(tmp / "scene", cfg=syn, seed=0)
            shutil.copytree(scene_dir / "images", tmp / "photos")
            for r in range(args.repeats):
                stages.clear()
                report = recover_poses(tmp / "photos", tmp / f"sfm{r}" / "model", cfg=SfmConfig(),
                                       report_path=tmp / f"sfm{r}" / "poses.json", threads=args.threads)  # fmt: skip
                out["matcher"] = report["matcher"]
                row = {"images_registered": report["images_registered"], "stages": _errors(stages)}
                runs.append(row)
                print(json.dumps(row), flush=True)
    finally:
        colmap_mod.progress = real_progress
    out["runs"] = runs
    out["stages"] = {}
    for desc in runs[0]["stages"]:
        errors = [run["stages"][desc].get("error") for run in runs]
        errors = [e for e in errors if e is not None]
        if not errors:
            continue
        median = float(statistics.median(errors))
        out["stages"][desc] = {
            "errors": errors, "median_error": median, "within_50pct": abs(median) <= 0.5,
            "runs_within_50pct": sum(abs(e) <= 0.5 for e in errors), "runs": len(errors),
            "stage_seconds": [run["stages"][desc]["stage_seconds"] for run in runs],
        }  # fmt: skip
    atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["stages"], indent=2))
    return out


def _errors(stages: dict) -> dict:
    """Per stage: at the first report with a quarter of the units done, the estimate against the truth."""
    rows = {}
    for desc, rec in stages.items():
        total, initial, end = rec["total"], rec["initial"], rec["end"]
        at = next(((t, d) for t, d in rec["done"] if d >= total / 4 and d < total), None)
        row = {"units_total": total, "units_initial": initial,
               "units_done_at_end": rec["done"][-1][1] if rec["done"] else initial, "stage_seconds": end}  # fmt: skip
        if at is not None:
            t, d = at
            predicted = t / (d - initial) * (total - d)
            actual = end - t
            row |= {"at_units": d, "at_seconds": t, "predicted_left_s": predicted, "actual_left_s": actual,
                    "error": (predicted - actual) / actual if actual > 0 else None}  # fmt: skip
        rows[desc] = row
    return rows


if __name__ == "__main__":
    main()
