"""Building the embedded synthetic scene at its default size (30 views of 160x120, 8 objects), and with
every hard case on (occluders, motion blur), plus one frame's ray casting with and without the
shared-origin bounding test. Wall and CPU seconds (CPU is steadier on a shared machine).
Writes bench/out/synthetic_scene.json. Run: python -m bench.synthetic_scene
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "out" / "synthetic_scene.json"


def _timed(fn, repeat: int = 1) -> dict:
    walls, cpus = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return {"wall_s": min(walls), "cpu_s": min(cpus)}


def main() -> dict:
    from ccl.synthetic import SyntheticConfig, make_scene, ops, plan_scene
    from ccl.synthetic.cameras import pixel_rays, sample_offsets

    cfg = SyntheticConfig()
    out: dict = {"machine": platform.machine(), "cpus": os.cpu_count(), "config": cfg.__dict__}
    with tempfile.TemporaryDirectory() as tmp:
        out["make_scene_default"] = _timed(lambda: make_scene(Path(tmp) / "a", cfg=cfg, seed=0))
        hard = replace(cfg, occluders=4, motion_blur=3.0)
        out["make_scene_hard_cases"] = _timed(lambda: make_scene(Path(tmp) / "b", cfg=hard, seed=0))

    plan = plan_scene(cfg, 0)
    geo, cam = plan.geometry, plan.cameras[0]
    o, d = pixel_rays(cam, sample_offsets(cfg.supersample))
    out["cast_one_frame_shared_origin"] = _timed(lambda: geo.cast(o, d), repeat=3)
    # The same rays with origins perturbed by 1e-12 take the general bounding test.
    o2 = o + np.where(np.arange(len(o))[:, None] % 2 == 0, 1e-12, 0.0)
    out["cast_one_frame_general_bounds"] = _timed(lambda: geo.cast(o2, d), repeat=3)
    dots = ops.ray_dots(o, d)
    c, r = geo.objects[0].bounds()
    assert (ops.cone_sphere_hits(o[0], d, dots[1], c, r) == ops.ray_sphere_hits(o, d, c, r, dots)).all()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
