"""Undistortion on the synthetic scene: does a scene whose photos carry lens distortion train as well as
the same scene without it, scored against the same truth over the same pixels?

The synthetic scene (rendered at --width x --height, pinhole) is written as NeRF transforms.json scenes
(`source: nerf`, its point cloud as ply_file_path):
  pinhole     the rendered PNGs, no distortion keys
  <lens>      each PNG warped by an OpenCV lens (--lens NAME:k1,k2,p1,p2, written into transforms.json as
              k1 k2 p1 p2, as colmap2nerf / ns-process-data write an OPENCV camera): the distorted photo's
              pixel d shows the pinhole image at undistort(d) (bilinear; where that lies outside the render,
              the nearest edge pixel), saved as PNG so that only the lens, not a codec, differs.
              Default lenses: `barrel` (k1 -0.15, k2 0.03: a phone-like lens; its undistortion reads inside
              the photo everywhere, so the valid rectangle is the whole image) and `pincushion` (the same
              coefficients mirrored, k1 +0.15, k2 -0.03: the undistorted image's corners have no source in
              the photo, so ccl.scene crops to the valid rectangle, ccl.scene.ops.valid_rectangle).
ccl.scene loads a distorted scene by undistorting onto the same K and cropping to the valid rectangle
(K shifted by the crop's corner). Each scene is trained at the default colour-field schedule
(RgbConfig, or --iterations with densification scaled as bench.sfm does) at --downscale, with --seeds
seeds (0, 1, ...; the same seeds for every scene), one torch thread per training, two side by side.

What is compared, and why. A model's own held-out PSNR (`own_heldout`, what train_rgb reports) scores it
against its own working images; a distorted scene's are the render resampled twice (the lens warp, then
the undistortion), i.e. smoothed, and easier to fit, so that figure favours the distorted scene without
saying anything about the undistortion. The figure of merit is therefore `truth_heldout`: every model
(pinhole and distorted alike) rendered at the held-out views' cameras of the lens's working scene (cropped,
K shifted) and scored against the same reference, the pinhole render cropped to the valid rectangle and
downscaled as load_image does: the same views, the same pixels, the same truth. Per lens: the paired
difference (lens − pinhole, same seed) over seeds, mean ± sample std, and `meets_target` = |mean| <=
0.3 dB (the issue's target). For a lens that crops, a control scene `<lens>_crop` (the pinhole renders
cut to the same valid rectangle, K shifted, no resampling: the very pixels the lens scene keeps) splits
that difference in two: `crop_alone_db` (control − pinhole: what the border the crop drops costs) and
`undistortion_alone_db` (lens − control: what the lens's resampling and its undoing cost). Also the
pinhole scene's own held-out PSNR over seeds (the training's run-to-run spread), and how closely the
undistorted working images reproduce the reference (PSNR over all views: the resampling's loss before
any training). The distorted photos are made by resampling a pinhole render (bilinear), not rendered
through the lens, so a distorted scene carries two resamplings where a real photo carries one.
Writes bench/out/distortion.json; the figures and their reading: docs/distortion.md.
Run: python -m bench.distortion
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "out" / "distortion.json"
TARGET_DB = 0.3
LENSES = ("barrel:-0.15,0.03,0.001,-0.0008", "pincushion:0.15,-0.03,0.001,-0.0008")


def distort_image(img: np.ndarray, K: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """The photo a lens with OpenCV `coeffs` takes of the pinhole image `img` [H, W, 3] (intrinsics K,
    pixel centres at +0.5): each output pixel samples `img` where the lens's ray lands undistorted."""
    import cv2

    from ccl.scene.ops import distort_points

    h, w = img.shape[:2]
    k1, k2, p1, p2, k3 = np.asarray(coeffs, np.float64)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5  # pixel centres in K's convention
    xd, yd = (xs.ravel() - K[0, 2]) / K[0, 0], (ys.ravel() - K[1, 2]) / K[1, 1]
    x, y = xd.copy(), yd.copy()
    for _ in range(200):  # OpenCV's fixed point (cv::undistortPoints), run to convergence
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2**3
        x = (xd - 2 * p1 * x * y - p2 * (r2 + 2 * x * x)) / radial
        y = (yd - p1 * (r2 + 2 * y * y) - 2 * p2 * x * y) / radial
    und = np.stack([x * K[0, 0] + K[0, 2], y * K[1, 1] + K[1, 2]], 1)
    err = np.abs(distort_points(und, K, coeffs) - np.stack([xs.ravel(), ys.ravel()], 1)).max()
    if err > 1e-3:
        raise ValueError(
            f"the inverse of the lens did not converge (max {err:.2g} px): coefficients too strong"
        )
    und = (und - 0.5).reshape(h, w, 2)  # cv2.remap's pixel centres are integers
    return cv2.remap(img, und[..., 0].astype(np.float32), und[..., 1].astype(np.float32),
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # fmt: skip


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _fit(
    label: str, seed: int, scene_dir: str, downscale: int, rgb_cfg, regions: dict
) -> tuple[str, int, dict]:
    """Train on `scene_dir` with `seed`; score the model's held-out renders at each region's cameras
    ({name: (scene dir, {view name: reference [H, W, 3] uint8})}) against the references."""
    import torch

    from ccl.scene import SceneLoadConfig, load_image, load_scene
    from ccl.splat.losses import psnr
    from ccl.splat.render import render_channels
    from ccl.splat.train_rgb import fit_rgb

    torch.set_num_threads(1)
    cfg = SceneLoadConfig(downscale=downscale)
    scene = load_scene(Path(scene_dir), source="nerf", cfg=cfg)
    cams = list(scene.cameras)
    images = [load_image(c, cfg=cfg) for c in cams]
    g, m = fit_rgb(cams, images, points_xyz=scene.points_xyz, points_rgb=scene.points_rgb, cfg=rgb_cfg, seed=seed,
                   device="cpu")  # fmt: skip
    truth = {}
    for region, (region_dir, refs) in regions.items():
        by_name = {c.name: c for c in load_scene(Path(region_dir), source="nerf", cfg=cfg).cameras}
        per_view = []
        for name, ref in refs.items():
            with torch.no_grad():
                out = render_channels(g, by_name[name], background=rgb_cfg.background)
            per_view.append(psnr(out.colors[0], torch.from_numpy(ref).to(torch.float32) / 255.0))
        truth[region] = float(np.mean(per_view))
    return label, seed, {
        "own_heldout": m.psnr_heldout, "truth_heldout": truth, "train": m.psnr_train, "gaussians": m.n_gaussians,
        "seconds": m.seconds, "heldout_views": sorted(m.psnr_heldout_per_view),
        "working_size": [cams[0].width, cams[0].height],
    }  # fmt: skip


def _spread(values: list[float]) -> dict:
    v = np.asarray(values, np.float64)
    return {
        "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None,
        "min": float(v.min()), "max": float(v.max()), "n": len(v), "values": [float(x) for x in v],
    }  # fmt: skip


def _lens(spec: str) -> tuple[str, np.ndarray]:
    name, _, values = spec.partition(":")
    k = [float(x) for x in values.split(",")]
    if not name or name == "pinhole" or len(k) != 4:
        raise argparse.ArgumentTypeError(f"--lens {spec!r}: expected NAME:k1,k2,p1,p2 (NAME not 'pinhole')")
    return name, np.array([*k, 0.0])


def main(argv: list[str] | None = None) -> dict:
    from PIL import Image

    from ccl.io import atomic_write_text
    from ccl.scene import SceneLoadConfig, load_image, load_scene
    from ccl.scene.images import downscale_image
    from ccl.splat import RgbConfig
    from ccl.splat.trainer import split_views
    from ccl.synthetic import SyntheticConfig, make_scene

    parser = argparse.ArgumentParser(prog="python -m bench.distortion", description=__doc__.split("\n")[0])
    parser.add_argument("--views", type=int, default=30)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--downscale", type=int, default=2, help="training resolution = width / this")
    parser.add_argument(
        "--lens", type=_lens, action="append", help=f"NAME:k1,k2,p1,p2 (default {' '.join(LENSES)})"
    )
    parser.add_argument("--seeds", type=int, default=3, help="trainings per scene (seeds 0..N-1)")
    parser.add_argument("--workers", type=int, default=2, help="trainings side by side")
    parser.add_argument("--iterations", type=int, default=None, help="the schedule (default rgb.iterations)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    lenses = dict(args.lens or [_lens(s) for s in LENSES])

    syn = replace(SyntheticConfig(), n_views=args.views, width=args.width, height=args.height)
    rgb = RgbConfig()
    if args.iterations is not None:  # a shorter look: densification scaled with it (as bench.sfm)
        k = args.iterations / rgb.iterations
        rgb = replace(rgb, iterations=args.iterations, refine_start_iter=int(k * rgb.refine_start_iter),
                      refine_stop_iter=int(k * rgb.refine_stop_iter), refine_every=max(1, int(k * rgb.refine_every)))  # fmt: skip
    out: dict = {
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "command": " ".join(["python -m bench.distortion", *(sys.argv[1:] if argv is None else argv)]),
        "synthetic": asdict(syn), "train_downscale": args.downscale, "seeds": list(range(args.seeds)),
        "lenses": {name: {"model": "OpenCV (transforms.json k1 k2 p1 p2)",
                          **dict(zip(("k1", "k2", "p1", "p2"), map(float, c[:4]), strict=True))}
                   for name, c in lenses.items()},
        "schedule": {"iterations": rgb.iterations, "refine_stop_iter": rgb.refine_stop_iter},
    }  # fmt: skip
    f = args.downscale
    cfg = SceneLoadConfig(downscale=f)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        scene_dir = make_scene(tmp / "scene", cfg=syn, seed=0)
        out["make_scene_s"] = time.perf_counter() - t0
        meta = json.loads((scene_dir / "transforms.json").read_text())
        meta["ply_file_path"] = str((scene_dir / meta["ply_file_path"]).absolute())
        K = np.array([[meta["fl_x"], 0, meta["cx"]], [0, meta["fl_y"], meta["cy"]], [0, 0, 1]], np.float64)
        dirs = {"pinhole": tmp / "pinhole"} | {name: tmp / name for name in lenses}
        for d in dirs.values():
            (d / "images").mkdir(parents=True)
        full = {}  # view name → the pinhole render [H, W, 3]
        for fr in meta["frames"]:
            src = scene_dir / fr["file_path"]
            (dirs["pinhole"] / fr["file_path"]).symlink_to(src)
            with Image.open(src) as im:
                full[Path(fr["file_path"]).stem] = img = np.asarray(im.convert("RGB"))
            for name, coeffs in lenses.items():
                Image.fromarray(distort_image(img, K, coeffs)).save(dirs[name] / fr["file_path"])
        (dirs["pinhole"] / "transforms.json").write_text(json.dumps(meta))
        for name in lenses:
            (dirs[name] / "transforms.json").write_text(
                json.dumps(
                    meta
                    | {k: out["lenses"][name][k] for k in ("k1", "k2", "p1", "p2")}
                    | {"camera_model": "OPENCV"}
                )  # fmt: skip
            )

        # each scene's working cameras; the reference at each: the pinhole render over its valid rectangle
        _, test_idx = split_views(args.views, rgb.holdout_every)
        regions, out["scenes"] = {}, {}
        for name, d in dirs.items():
            cams = load_scene(d, source="nerf", cfg=cfg).cameras
            crop = (
                cams[0].distortion.crop_xywh
                if cams[0].distortion is not None
                else (0, 0, args.width, args.height)
            )
            x0, y0, w, h = crop
            refs = {c.name: downscale_image(full[c.name][y0 : y0 + h, x0 : x0 + w], f) for c in cams}
            assert all(r.shape == (c.height, c.width, 3) for r, c in zip(refs.values(), cams, strict=True))
            row: dict = {"valid_rectangle": {"xywh": list(map(int, crop)),
                                             "share_of_pixels": w * h / (args.width * args.height)},
                         "working_size": [cams[0].width, cams[0].height]}  # fmt: skip
            if name != "pinhole":  # the resampling's loss: the undistorted working images against the truth
                row["undistorted_vs_truth_psnr"] = _spread(
                    [_psnr(load_image(c, cfg=cfg), refs[c.name]) for c in cams]
                )
            out["scenes"][name] = row
            regions[name] = (str(d), {cams[i].name: refs[cams[i].name] for i in test_idx})
        # a control per lens that crops: the pinhole renders cut to its valid rectangle (K shifted, no
        # resampling), which sees the same pixels as the lens scene: what the crop alone costs
        controls = {}
        for name in lenses:
            x0, y0, w, h = out["scenes"][name]["valid_rectangle"]["xywh"]
            if (w, h) == (args.width, args.height):
                continue
            d = controls[name] = tmp / f"{name}_crop"
            (d / "images").mkdir(parents=True)
            for fr in meta["frames"]:
                Image.fromarray(full[Path(fr["file_path"]).stem][y0 : y0 + h, x0 : x0 + w]).save(
                    d / fr["file_path"]
                )
            (d / "transforms.json").write_text(
                json.dumps(meta | {"w": w, "h": h, "cx": meta["cx"] - x0, "cy": meta["cy"] - y0})
            )
            assert all(  # the same cameras as the lens scene's
                np.allclose(a.K, b.K) and (a.width, a.height) == (b.width, b.height)
                for a, b in zip(load_scene(d, source="nerf", cfg=cfg).cameras,
                                load_scene(dirs[name], source="nerf", cfg=cfg).cameras, strict=True)
            )  # fmt: skip
        dirs |= {f"{name}_crop": d for name, d in controls.items()}
        print(json.dumps(out["scenes"]), flush=True)

        runs: dict = {name: {} for name in dirs}
        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_fit, name, seed, str(d), f, rgb, regions)
                       for seed in range(args.seeds) for name, d in dirs.items()]  # fmt: skip
            for future in futures:
                name, seed, row = future.result()
                runs[name][str(seed)] = row
                print(name, seed, json.dumps(row), flush=True)
    out["runs"] = runs
    seeds = [str(s) for s in range(args.seeds)]
    out["pinhole_own_heldout"] = _spread([runs["pinhole"][s]["own_heldout"] for s in seeds])
    out["results"] = {}
    for name in lenses:
        truth = [runs[name][s]["truth_heldout"][name] for s in seeds]
        base = [runs["pinhole"][s]["truth_heldout"][name] for s in seeds]
        diff = _spread([a - b for a, b in zip(truth, base, strict=True)])
        row = out["results"][name] = {
            "region": out["scenes"][name]["valid_rectangle"],
            "pinhole_truth_heldout": _spread(base),
            "lens_truth_heldout": _spread(truth),
            "difference_db": diff,
            "lens_own_heldout": _spread([runs[name][s]["own_heldout"] for s in seeds]),
            "own_minus_truth_db": _spread(
                [runs[name][s]["own_heldout"] - runs[name][s]["truth_heldout"][name] for s in seeds]
            ),
            "meets_target": abs(diff["mean"]) <= TARGET_DB,
        }
        if f"{name}_crop" in runs:  # the difference in two: the crop's fewer pixels, then the resampling
            crop = [runs[f"{name}_crop"][s]["truth_heldout"][name] for s in seeds]
            row["crop_control_truth_heldout"] = _spread(crop)
            row["crop_alone_db"] = _spread([a - b for a, b in zip(crop, base, strict=True)])
            row["undistortion_alone_db"] = _spread([a - b for a, b in zip(truth, crop, strict=True)])
    out["same_heldout_views"] = (
        len({json.dumps(r["heldout_views"]) for v in runs.values() for r in v.values()}) == 1
    )
    out["target_db"] = TARGET_DB
    out["meets_target"] = all(r["meets_target"] for r in out["results"].values())
    atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("pinhole_own_heldout", "results", "meets_target")}, indent=2))
    return out


if __name__ == "__main__":
    main()
