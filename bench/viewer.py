"""`ccl view` on the CPU: frames per second at 640 x 480 and the time to answer a query, 100k Gaussians.

The field: bench.rasterizer's "surfaces" scene (100k Gaussians flattened on a wall, a floor and five
spheres, mostly opaque, like a trained scene) with SH degree 3 colours, and two language fields (sp, wp)
on the same geometry, as the frozen language stage writes them: 8-dim features, the default decoder
(8 -> 64 -> 128 classes, untrained), a codebook whose prototypes are `sim` text embeddings of 128
phrases. The session is ccl.view's own (ViewSession), so the figures are the page's render and answer,
less the JPEG and the websocket.

- frames: `ViewSession.render` from a camera orbiting the scene, colour alone and with the relevance
  of a query drawn over it (colour and both scales' features in one pass, view_relevance): still
  (every pixel's class decoded) and moving (every 2nd pixel's, as the page does while the camera
  moves), median of `repeats` frames after one warm-up, wall clock;
- query: `ViewSession.ask` (text embedding, each scale's Gaussians decoded and thresholded) and that
  plus the first frame showing it, median of `repeats`.

Run with torch's default thread count and with one thread. Writes bench/out/viewer.json.
Run: python -m bench.viewer [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "out" / "viewer.json"
N_GAUSSIANS = 100_000
WIDTH, HEIGHT = 640, 480
N_CLASSES = 128  # the codebook's default n_prototypes
HIDDEN = 64  # the decoder's default hidden width (language.decoder_hidden)


def build_session(folder: Path):
    """(ViewSession on a 100k-Gaussian colour field and two language fields written under `folder`,
    a query: the phrase of the class the decoder gives most Gaussians, so that it selects some)."""
    import numpy as np
    import torch

    from bench.rasterizer import make_scene
    from ccl.features import FeaturesConfig, encode_text
    from ccl.io import write_h5
    from ccl.query import LanguageFieldSource, QueryConfig
    from ccl.splat.checkpoint import LanguageField, save_language_field
    from ccl.splat.decoder import build_decoder
    from ccl.splat.model import Gaussians, rgb_to_sh0
    from ccl.view import ViewSession

    means, quats, scales, opacities, colors, *_ = make_scene("surfaces", N_GAUSSIANS, HEIGHT)
    g = torch.Generator().manual_seed(1)
    colour = Gaussians(
        means=means, quats=quats, log_scales=scales.log(), opacity_logits=torch.logit(opacities),
        sh0=torch.from_numpy(rgb_to_sh0(colors[:, :3].numpy())),
        shN=torch.randn(N_GAUSSIANS, 15, 3, generator=g) * 0.05,
    )  # fmt: skip
    features = torch.nn.functional.normalize(torch.randn(N_GAUSSIANS, 8, generator=g), dim=1)
    torch.manual_seed(0)
    decoder = build_decoder(8, HIDDEN, N_CLASSES).eval()  # untrained: the classes it picks are arbitrary
    features_cfg = FeaturesConfig()
    prototypes = np.asarray(encode_text([f"phrase {k}" for k in range(N_CLASSES)], cfg=features_cfg))
    fields, books = {}, {}
    for scale in ("sp", "wp"):
        field = LanguageField(colour, features, decoder, {})
        fields[scale] = save_language_field(folder / f"{scale}.safetensors", field,
                                            header={"scene": "bench", "config": {}})  # fmt: skip
        books[scale] = folder / f"{scale}.h5"
        with write_h5(books[scale], kind="codebook", format_version=1, params={}) as f:
            f.create_dataset("prototypes", data=prototypes.astype(np.float32))
    sources = {"auto": LanguageFieldSource(fields, books, scene="bench")}
    sources.update({s: LanguageFieldSource({s: fields[s]}, {s: books[s]}, scene="bench") for s in fields})
    with torch.no_grad():
        commonest = int(torch.bincount(decoder(features).argmax(dim=-1), minlength=N_CLASSES).argmax())
    session = ViewSession(
        run_dir=folder, scene="bench", colour=colour, background=(0.0, 0.0, 0.0), cameras=(),
        sources=sources, query_cfg=QueryConfig(), features_cfg=features_cfg,
    )  # fmt: skip
    return session, f"phrase {commonest}"


def orbit(k: int, n: int):
    """Camera k of n, turning ±10 degrees about the scene's vertical axis through z = 4."""
    import math

    import numpy as np

    from ccl.view import camera_from_view

    a = math.radians(10) * math.sin(2 * math.pi * k / max(n, 1))
    pivot = np.array([0.0, 0.0, 4.0])
    pos = pivot + 4.0 * np.array([-math.sin(a), 0.0, -math.cos(a)])
    wxyz = np.array([math.cos(-a / 2), 0.0, math.sin(-a / 2), 0.0])  # rotation about y by -a
    fov_y = 2 * math.atan(0.5 * HEIGHT / HEIGHT)  # bench.rasterizer's focal: f = image height
    return camera_from_view(pos, wxyz, fov_y, WIDTH, HEIGHT, max_size=WIDTH)


def _median_s(fn, repeats: int, cpu: list | None = None) -> float:
    """Median wall seconds of `repeats` calls; their median process CPU seconds appended to `cpu`."""
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    if cpu is not None:
        cpu.append(round(statistics.median(cpus), 4))
    return statistics.median(walls)


def measure(session, query: str, repeats: int) -> dict:
    import torch

    cams = [orbit(k, repeats) for k in range(repeats)]
    session.render(cams[0])  # warm-up: the kernel's first call
    it = iter(range(10**9))
    cpu: list = []  # process CPU seconds, steadier than wall time on a shared machine
    colour_s = _median_s(lambda: session.render(cams[next(it) % repeats]), repeats, cpu)
    answer = session.ask(query)
    session.render(cams[0], answer)
    with_query_s = _median_s(lambda: session.render(cams[next(it) % repeats], answer), repeats, cpu)
    moving_s = _median_s(
        lambda: session.render(cams[next(it) % repeats], answer, class_stride=2), repeats, cpu
    )
    ask_s = _median_s(lambda: session.ask(query), repeats, cpu)
    answered_s = _median_s(lambda: session.render(cams[0], session.ask(query)), repeats, cpu)
    frame = session.render(cams[0], answer)
    return {
        "torch_threads": torch.get_num_threads(),
        "frame_colour_s": round(colour_s, 4),
        "fps_colour": round(1 / colour_s, 2),
        "frame_with_query_s": round(with_query_s, 4),
        "fps_with_query": round(1 / with_query_s, 2),
        "frame_with_query_moving_s": round(moving_s, 4),
        "fps_with_query_moving": round(1 / moving_s, 2),
        "ask_s": round(ask_s, 4),
        "ask_and_first_frame_s": round(answered_s, 4),
        "cpu_s": dict(
            zip(
                ["frame_colour", "frame_with_query", "frame_with_query_moving", "ask", "ask_and_first_frame"],
                cpu,
                strict=True,
            )
        ),  # fmt: skip
        "selected": answer.chosen.n_chosen,
        "lit_pixel_fraction": round(float((frame.heat > answer.threshold).mean()), 4),
        "message": answer.message,
    }


def main(argv: list[str] | None = None) -> dict:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 repeats instead of 15")
    args = ap.parse_args(argv if argv is not None else [])
    repeats = 5 if args.quick else 15
    load0 = os.getloadavg()
    default_threads = torch.get_num_threads()
    runs = []
    with tempfile.TemporaryDirectory(prefix="ccl_bench_viewer_") as tmp:
        session, query = build_session(Path(tmp))
        for threads in sorted({default_threads, 1}, reverse=True):
            torch.set_num_threads(threads)
            runs.append(measure(session, query, repeats))
            print(json.dumps(runs[-1]), flush=True)
    torch.set_num_threads(default_threads)
    out = {
        "n_gaussians": N_GAUSSIANS,
        "image_wh": [WIDTH, HEIGHT],
        "sh_degree": 3,
        "scales": ["sp", "wp"],
        "n_classes": N_CLASSES,
        "repeats": repeats,
        "targets": {"fps_colour_min": 5.0, "ask_and_first_frame_s_max": 1.0},
        "runs": runs,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": load0,
            "loadavg_after": os.getloadavg(),
        },  # fmt: skip
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {OUT}")
    return out


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
