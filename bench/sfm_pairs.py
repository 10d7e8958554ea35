"""Why sfm's matching defaults are stricter than COLMAP's: on the synthetic scene exported as photos,
the geometrically verified photo pairs that contradict the true cameras, and the model each setting
gives.

Settings (ccl.sfm.SfmConfig): `colmap` (COLMAP's SIFT, a pair counts with 15 verified matches),
`dsp` (DSP-SIFT with affine shapes, 15), `default` (sfm's: DSP-SIFT, 30). A verified pair is wrong
when fewer than half of its matches lie within 2 px (Sampson distance) of the epipolar lines of the
true cameras. Per setting: SIFT features per view, verified pairs, wrong pairs, the verified matches
of right and of wrong pairs (median, max), the right pairs' matches by the angle between their views,
and recover_poses' model: views registered, camera-centre error as a share of the scene radius
(mean, max; bench/sfm.py's measure), the recovered focal length.
Writes bench/out/sfm_pairs.json. Run: python -m bench.sfm_pairs   (--views 60: bench/sfm.py's scene)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from bench.sfm import _centre_errors, _write

OUT = Path(__file__).parent / "out" / "sfm_pairs.json"
SETTINGS = {
    "colmap": {"dsp_sift": False, "min_pair_inliers": 15},
    "dsp": {"dsp_sift": True, "min_pair_inliers": 15},
    "default": {},
}
CONSISTENT_PX = 2.0  # Sampson distance to the true epipolar geometry that counts a match as right
ANGLE_BINS_DEG = (0, 15, 30, 45, 180)
ANGLE_BINS = list(zip(ANGLE_BINS_DEG[:-1], ANGLE_BINS_DEG[1:], strict=True))  # [lo, hi) degrees


def _fundamental(a, b) -> np.ndarray:
    """F with x_b^T F x_a = 0 for pixels (u, v, 1) of cameras a and b (ccl.scene cameras)."""
    Ra, ta = a.world_to_camera[:3, :3], a.world_to_camera[:3, 3]
    Rb, tb = b.world_to_camera[:3, :3], b.world_to_camera[:3, 3]
    R = Rb @ Ra.T
    t = tb - R @ ta
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    return np.linalg.inv(b.K).T @ tx @ R @ np.linalg.inv(a.K)


def _sampson(F: np.ndarray, xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    xa = np.c_[xa, np.ones(len(xa))]
    xb = np.c_[xb, np.ones(len(xb))]
    Fx, Ftx = xa @ F.T, xb @ F
    num = np.sum(xb * Fx, 1) ** 2
    return np.sqrt(num / (Fx[:, 0] ** 2 + Fx[:, 1] ** 2 + Ftx[:, 0] ** 2 + Ftx[:, 1] ** 2))


def _pairs(database: Path, camera_of: dict) -> dict:
    """The verified pairs of `database` judged against the true cameras (`camera_of`: image name →
    camera): counts, verified matches of right and wrong pairs, right pairs' matches by view angle."""
    import pycolmap

    right, wrong, by_angle = [], [], {f"{lo}-{hi}": [] for lo, hi in ANGLE_BINS}
    with pycolmap.Database.open(database) as db:
        names = {im.image_id: im.name for im in db.read_all_images()}
        keypoints = {i: db.read_keypoints(i)[:, :2] for i in names}
        pair_ids, geometries = db.read_two_view_geometries()
    for pair_id, g in zip(pair_ids, geometries, strict=True):
        i, j = pycolmap.pair_id_to_image_pair(pair_id)
        m = g.inlier_matches
        if len(m) == 0:
            continue
        a, b = camera_of[names[i]], camera_of[names[j]]
        share = float(
            (
                _sampson(_fundamental(a, b), keypoints[i][m[:, 0]], keypoints[j][m[:, 1]]) < CONSISTENT_PX
            ).mean()
        )
        if share < 0.5:
            wrong.append(len(m))
            continue
        right.append(len(m))
        angle = np.degrees(np.arccos(np.clip(a.world_to_camera[2, :3] @ b.world_to_camera[2, :3], -1, 1)))
        for lo, hi in ANGLE_BINS:
            if lo <= angle < hi:
                by_angle[f"{lo}-{hi}"].append(len(m))

    def summary(x):
        return {
            "pairs": len(x),
            "median_matches": float(np.median(x)) if x else None,
            "max_matches": max(x, default=None),
        }

    return {
        "verified_pairs": len(right) + len(wrong),
        "wrong_pairs": len(wrong),
        "right": summary(right),
        "wrong": summary(wrong),
        "right_by_view_angle_deg": {k: summary(v) for k, v in by_angle.items()},
    }


def main(argv: list[str] | None = None) -> dict:
    from ccl.scene import SceneLoadConfig, load_scene
    from ccl.sfm import SfmConfig, _colmap, recover_poses
    from ccl.synthetic import SyntheticConfig, make_scene

    parser = argparse.ArgumentParser(prog="python -m bench.sfm_pairs", description=__doc__.split("\n")[0])
    parser.add_argument("--views", type=int, default=30)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--threads", type=int, default=2, help="pycolmap's threads")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    syn = replace(SyntheticConfig(), n_views=args.views, width=args.width, height=args.height)
    out: dict = {
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "command": " ".join(["python -m bench.sfm_pairs", *(argv or sys.argv[1:])]), "synthetic": asdict(syn),
        "consistent_px": CONSISTENT_PX, "settings": {}, "complete": False,
    }  # fmt: skip
    full_res = SceneLoadConfig()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scene_dir = make_scene(tmp / "scene", cfg=syn, seed=0)
        truth = load_scene(scene_dir, source="synthetic", cfg=full_res)
        photos = scene_dir / "images"
        names = sorted(p.name for p in photos.iterdir())
        camera_of = {c.image_path.name: c for c in truth.cameras}
        for label, overrides in SETTINGS.items():
            cfg = replace(SfmConfig(), **overrides)
            t0 = time.perf_counter()
            database = tmp / f"{label}.db"  # the same SIFT and matching calls as recover_poses
            _colmap.extract(
                database, photos, names, [list(range(len(names)))], camera_model=cfg.camera_model,
                max_image_size=cfg.max_image_size, max_num_features=cfg.max_num_features,
                dsp_sift=cfg.dsp_sift, threads=args.threads,
            )  # fmt: skip
            _colmap.match(database, matcher="exhaustive", threads=args.threads, overlap=cfg.sequential_overlap,
                          vocab_tree_path="", min_inliers=cfg.min_pair_inliers)  # fmt: skip
            counts = _colmap.image_counts(database)
            row = {
                "config": overrides,
                "features_per_view_mean": float(np.mean([c.keypoints for c in counts.values()])),
            }
            row |= _pairs(database, camera_of)
            model = tmp / f"sfm_{label}" / "model"
            try:
                report = recover_poses(
                    photos, model, cfg=cfg, report_path=model.parent / "poses.json", threads=args.threads
                )
                row |= {"images_registered": report["images_registered"], "points": report["points"]}
                row |= _centre_errors(model, truth, full_res)
            except ValueError as e:  # too few registered: the message is the figure
                row["error"] = str(e)
            row["seconds"] = time.perf_counter() - t0
            out["settings"][label] = row
            print(label, json.dumps(row), flush=True)
            _write(args.out, out)
    out["complete"] = True
    _write(args.out, out)
    return out


if __name__ == "__main__":
    main()
