"""Scene loading at LERF-OVS size: a COLMAP binary model of 300 images of 986x728 and 100k points.

Figures: our model reader vs pycolmap's on the same files, load_scene (model + 300 image headers +
checks), and load_image per image at downscale 2 (decode, resize, cache write) vs from the cache, and
with OPENCV undistortion. Writes bench/out/scene_load.json. Run: python -m bench.scene_load
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "out" / "scene_load.json"
N_IMAGES, WIDTH, HEIGHT, N_POINTS = 300, 986, 728, 100_000


def _build(root: Path, model: str, params: list[float]) -> None:
    import cv2

    from ccl.scene import ops
    from ccl.scene.colmap import ColmapCamera, ColmapImage, write_model

    rng = np.random.default_rng(0)
    base = cv2.resize(
        rng.integers(0, 256, (23, 31, 3), dtype=np.uint8), (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC
    )
    (root / "images").mkdir(parents=True)
    images = []
    for i in range(N_IMAGES):
        name = f"frame_{i + 1:05d}.jpg"
        cv2.imwrite(str(root / "images" / name), np.roll(base, i, axis=1))
        a = 2 * np.pi * i / N_IMAGES
        c = np.array([3 * np.cos(a), 3 * np.sin(a), 1.0])
        z = -c / np.linalg.norm(c)
        x = np.cross(z, [0, 0, 1.0])
        x /= np.linalg.norm(x)
        R = np.stack([x, np.cross(z, x), z])
        images.append(ColmapImage(i + 1, ops.rotmat_to_qvec(R), -R @ c, 1, name))
    cams = [ColmapCamera(1, model, WIDTH, HEIGHT, np.array(params))]
    xyz = rng.normal(size=(N_POINTS, 3))
    rgb = rng.integers(0, 256, (N_POINTS, 3), dtype=np.uint8)
    write_model(root / "sparse" / "0", cams, images, xyz, rgb, format="bin")


def _time(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> dict:
    import pycolmap

    from ccl.scene import SceneLoadConfig, load_image, load_scene
    from ccl.scene.colmap import read_model

    out: dict = {"machine": platform.machine(), "cpus": __import__("os").cpu_count()}
    out["setup"] = {
        "n_images": N_IMAGES,
        "width": WIDTH,
        "height": HEIGHT,
        "n_points": N_POINTS,
        "format": "bin",
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pin, dist = tmp / "pinhole", tmp / "opencv"
        _build(pin, "PINHOLE", [1150.0, 1150.0, 493.0, 364.0])
        _build(dist, "OPENCV", [1150.0, 1150.0, 493.0, 364.0, -0.05, 0.01, 0.0005, -0.0003])
        model_dir = str(pin / "sparse" / "0")

        out["read_model_ours_s"] = _time(lambda: read_model(model_dir))
        out["read_model_pycolmap_s"] = _time(lambda: pycolmap.Reconstruction().read(model_dir))
        cfg = SceneLoadConfig(downscale=2)
        out["load_scene_s"] = _time(lambda: load_scene(pin, source="colmap", cfg=cfg))

        for label, root in (("pinhole", pin), ("opencv", dist)):
            scene = load_scene(root, source="colmap", cfg=cfg)
            cams = scene.cameras[:20]
            cache = tmp / f"cache_{label}"
            t0 = time.perf_counter()
            for c in cams:
                load_image(c, cfg=cfg, cache_dir=cache)
            first = (time.perf_counter() - t0) / len(cams)
            t0 = time.perf_counter()
            for c in cams:
                load_image(c, cfg=cfg, cache_dir=cache)
            cached = (time.perf_counter() - t0) / len(cams)
            out[f"load_image_{label}_x2_first_ms"] = 1000 * first
            out[f"load_image_{label}_x2_cached_ms"] = 1000 * cached
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
