"""CPU rasterizer: forward + backward time of ccl.splat.rasterize beside the dense PyTorch compositor.

Cases (D = 11 channels = 3 colour + 8 language feature, one camera, float32):
- 20k Gaussians at 128 x 128 and 100k Gaussians at 256 x 256;
- two scenes each: "surfaces" (Gaussians flattened onto a wall, a floor and five spheres, mostly opaque,
  like a trained scene) and "cloud" (Gaussians uniform in the frustum, opacity sigmoid(N(0, 1)): the
  worst case for early termination). Gaussian sizes scale with 1/sqrt(N) so both resolutions have the
  same coverage per pixel.

Every (case, backend, threads) runs in a fresh subprocess: 1 warm-up then the median of `repeats` timed
runs of forward + backward (loss = weighted sum of colours, alpha and depth), wall clock and process
CPU time, and the peak memory as the growth of the process's peak RSS (getrusage ru_maxrss) over its
RSS after the inputs are built. Workers run with MALLOC_MMAP_THRESHOLD_=131072 so that glibc returns
large freed blocks to the OS and peak RSS measures what is in use, not heap fragmentation (without it
the dense reference's RSS grows to ~10 GB at 20k / 128^2 though it never holds more than one chunk).
The CPU backend runs with 1 thread and with torch's default thread count; the dense reference
("reference" backend: every Gaussian x every pixel, chunked and checkpointed) with 1 thread, once, no
warm-up (a run takes minutes); speed-ups compare equal thread counts. On the 100k / 256^2 case the
dense reference blends a 256 x 16 strip (1/16 of the pixels) against every Gaussian visible in the full
image and its time is scaled by 16 (its cost is linear in the pixel count), labelled as estimated.

Writes bench/out/rasterizer.json. Run: python -m bench.rasterizer [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "out" / "rasterizer.json"
D = 11
CASES = {"20k_128": (20_000, 128), "100k_256": (100_000, 256)}
SCENES = ("surfaces", "cloud")
DENSE_STRIP_ROWS = 16  # rows of the 256-row image the dense reference renders in the 100k case


def make_scene(scene: str, n: int, size: int, seed: int = 0):
    """-> (means, quats, scales, opacities, colors, viewmats, Ks, backgrounds), float32, camera at the
    origin looking down +z with a 53 degree field of view."""
    import torch

    g = torch.Generator().manual_seed(seed)
    k = (20_000 / n) ** 0.5  # same coverage per pixel at every (n, size)
    if scene == "cloud":
        z = torch.rand(n, generator=g) * 4 + 2
        xy = (torch.rand(n, 2, generator=g) * 2 - 1) * z[:, None] * 0.55
        means = torch.cat([xy, z[:, None]], 1)
        scales = torch.exp(torch.randn(n, 3, generator=g) * 0.4) * 0.047 * k
        opacities = torch.sigmoid(torch.randn(n, generator=g))
    elif scene == "surfaces":
        # a back wall (z = 6), a floor (y = 1.2) and five spheres; points uniform on each, the Gaussian
        # flat along the surface normal (scale 0.1 x in-plane), 2 x 2 surfaces per 1/N of the area
        parts = []
        n_wall, n_floor = int(0.35 * n), int(0.25 * n)
        n_sph = n - n_wall - n_floor
        u = torch.rand(n_wall, 2, generator=g)
        wall = torch.stack([(u[:, 0] * 2 - 1) * 3.6, (u[:, 1] * 2 - 1) * 3.6, torch.full((n_wall,), 6.0)], 1)
        parts.append((wall, torch.tensor([0.0, 0.0, 1.0]).expand(n_wall, 3), 0.030))
        u = torch.rand(n_floor, 2, generator=g)
        floor = torch.stack([(u[:, 0] * 2 - 1) * 3.0, torch.full((n_floor,), 1.2), 1.5 + u[:, 1] * 4.5], 1)
        parts.append((floor, torch.tensor([0.0, 1.0, 0.0]).expand(n_floor, 3), 0.030))
        centres = torch.tensor(
            [[-1.0, 0.3, 3.5], [0.8, 0.5, 4.0], [0.0, -0.6, 4.8], [-1.6, -1.0, 5.2], [1.7, -0.9, 3.2]]
        )
        radii = torch.tensor([0.6, 0.7, 0.8, 0.5, 0.45])
        which = torch.randint(0, 5, (n_sph,), generator=g)
        nrm = torch.randn(n_sph, 3, generator=g)
        nrm = nrm / nrm.norm(dim=1, keepdim=True)
        parts.append((centres[which] + radii[which, None] * nrm, nrm, 0.022))
        means = torch.cat([p[0] for p in parts])
        normals = torch.cat([p[1] for p in parts])
        s_in = torch.cat([torch.full((p[0].shape[0],), p[2]) for p in parts]) * k
        s_in = s_in * torch.exp(torch.randn(n, generator=g) * 0.3)
        # rotation taking z to the normal (quaternion wxyz), then a random spin about the normal
        zax = torch.tensor([0.0, 0.0, 1.0]).expand(n, 3)
        axis = torch.linalg.cross(zax, normals)
        w = 1.0 + (zax * normals).sum(1)
        q = torch.cat([w[:, None], axis], 1)
        q[w < 1e-6] = torch.tensor([0.0, 1.0, 0.0, 0.0])
        q = q / q.norm(dim=1, keepdim=True)
        spin = torch.rand(n, generator=g) * torch.pi
        qs = torch.stack([torch.cos(spin), torch.zeros(n), torch.zeros(n), torch.sin(spin)], 1)
        w1, x1, y1, z1 = q.unbind(1)
        w2, x2, y2, z2 = qs.unbind(1)
        quat = torch.stack(
            [
                w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
                w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
            ],
            1,
        )
        scales = torch.stack([s_in, s_in * torch.exp(torch.randn(n, generator=g) * 0.2), 0.1 * s_in], 1)
        opacities = torch.sigmoid(torch.randn(n, generator=g) + 2.0)
        perm = torch.randperm(n, generator=g)
        means, scales, opacities, quat = means[perm], scales[perm], opacities[perm], quat[perm]
    else:
        raise ValueError(f"unknown scene {scene!r}")
    if scene == "cloud":
        quat = torch.randn(n, 4, generator=g)
    colors = torch.rand(n, D, generator=g)
    viewmats = torch.eye(4)[None]
    f = float(size)
    Ks = torch.tensor([[[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]]])
    backgrounds = torch.rand(1, D, generator=g)
    return means, quat.contiguous(), scales, opacities, colors, viewmats, Ks, backgrounds


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def worker(scene: str, case: str, backend: str, repeats: int, threads: int) -> dict:
    """One measurement, run in its own process so the peak-RSS figure is this measurement's."""
    import torch

    from ccl.splat import rasterize
    from ccl.splat._cpu_kernel import load_kernel
    from ccl.splat._reference import composite_reference
    from ccl.splat.projection import project_gaussians

    torch.set_num_threads(threads)
    n, size = CASES[case]
    height = size
    note = None
    if backend == "reference" and case == "100k_256":
        height = DENSE_STRIP_ROWS
        note = (
            f"blended the first {height} of {size} rows against every Gaussian visible in the full image; "
            f"time scaled by {size // height} (the dense cost is linear in the pixel count)"
        )
    means, quats, scales, opacities, colors, viewmats, Ks, bgs = make_scene(scene, n, size)
    params = [t.clone().requires_grad_() for t in (means, quats, scales, opacities, colors, bgs)]
    g = torch.Generator().manual_seed(1)
    weights = [torch.rand(1, height, size, c, generator=g) for c in (D, 1, 1)]
    if backend == "cpu":
        load_kernel()  # build outside the timing
    stats = {}

    def render():
        if height == size:
            out = rasterize(*params[:5], viewmats, Ks, size, height, backgrounds=params[5], backend=backend)
            return out.colors, out.alpha, out.depth, out.radii
        # dense strip: project for the full image (so every Gaussian visible in it is kept), then
        # blend only the first `height` rows against all of them
        proj = project_gaussians(*params[:3], viewmats, Ks, size, size, opacities=params[3])
        outs = composite_reference(
            proj.means2d, proj.conics, params[3], params[4], proj.depths, proj.radii, size, height, params[5]
        )
        return (*outs, proj.radii)

    def run():
        for p in params:
            p.grad = None
        colors, alpha, depth, radii = render()
        loss = sum((t * w).sum() for t, w in zip((colors, alpha, depth), weights, strict=True))
        loss.backward()
        if not stats:
            radii = radii[0]
            vis = (radii > 0).all(-1)
            stats["visible_gaussians"] = int(vis.sum())
            stats["mean_radius_px"] = round(float(radii[vis].float().mean()), 2)
            box = (2 * radii[vis].float() + 1).prod(-1).sum()
            stats["box_area_per_pixel"] = round(float(box) / (size * size), 1)
            stats["alpha_mean"] = round(float(alpha.detach().mean()), 4)

    rss0 = _rss_kb()
    if repeats > 1:
        run()  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = size / height
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    res = {
        "scene": scene,
        "case": case,
        "backend": backend,
        "n_gaussians": n,
        "width": size,
        "height": size,
        "channels": D,
        "threads": torch.get_num_threads(),
        "fwd_bwd_wall_s": round(med(walls) * scale, 4),
        "fwd_bwd_cpu_s": round(med(cpus) * scale, 4),
        "wall_runs_s": [round(w * scale, 4) for w in walls],
        "peak_rss_growth_mb": round((peak - rss0) / 1024, 1),
        "estimated": note is not None,
        **stats,
    }
    if note:
        res["note"] = note
        res["peak_rss_growth_mb_note"] = "for the strip, not scaled"
    return res


def _run_worker(scene: str, case: str, backend: str, repeats: int, threads: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "bench.rasterizer",
        "--worker",
        scene,
        case,
        backend,
        str(repeats),
        str(threads),
    ]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env)
    if proc.returncode != 0:
        return {"scene": scene, "case": case, "backend": backend, "error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, no dense reference at 100k")
    args = ap.parse_args(argv if argv is not None else [])
    repeats = 3 if args.quick else 5
    load0 = os.getloadavg()
    t0 = time.time()
    results = []
    default_threads = torch.get_num_threads()
    for scene in SCENES:
        for case in CASES:
            cpus = [_run_worker(scene, case, "cpu", repeats, t) for t in sorted({1, default_threads})]
            for r in cpus:
                results.append(r)
                print(json.dumps(r), flush=True)
            if args.quick and case == "100k_256":
                continue
            ref = _run_worker(scene, case, "reference", 1, 1)
            results.append(ref)
            print(json.dumps(ref), flush=True)
            for cpu in cpus:
                if "error" in cpu or "error" in ref:
                    continue
                cpu["dense_reference_1_thread_wall_s"] = ref["fwd_bwd_wall_s"]
                cpu["speedup_vs_dense_1_thread_wall"] = round(
                    ref["fwd_bwd_wall_s"] / cpu["fwd_bwd_wall_s"], 1
                )
                cpu["speedup_vs_dense_1_thread_cpu"] = round(ref["fwd_bwd_cpu_s"] / cpu["fwd_bwd_cpu_s"], 1)
                cpu["dense_estimated"] = ref["estimated"]
    out = {
        "benchmark": "rasterizer",
        "command": "python -m bench.rasterizer" + (" --quick" if args.quick else ""),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads_default": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "dtype": "float32",
        "load_average_before": [round(x, 2) for x in load0],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "note": (
            "times are forward + backward of one camera, median of the timed runs after one warm-up; "
            "wall on a machine shared with other jobs (see load averages), cpu = process CPU time "
            "(all threads); peak memory = growth of peak RSS over the RSS after building inputs"
        ),
        "total_s": round(time.time() - t0, 1),
        "results": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    from ccl.io import atomic_write_json

    atomic_write_json(OUT, out)
    print(f"wrote {OUT}")
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))))
    else:
        main(sys.argv[1:])
