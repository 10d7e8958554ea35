"""`ccl view` on the CPU at 640 x 480 with 100k Gaussians: frames per second, and the time from a typed
query to its overlay, in-process and through the real page in chromium.

The field: bench.rasterizer's "surfaces" scene (100k Gaussians flattened on a wall, a floor and five
spheres, mostly opaque, like a trained scene) with SH degree 3 colours, and two language fields (sp, wp)
on the same geometry, as the frozen language stage writes them: 8-dim features, the default decoder
(8 -> 64 -> 128 classes, untrained), a codebook whose prototypes are `sim` text embeddings of 128
phrases. The session is ccl.view's own (ViewSession).

In-process (`runs`, torch's default thread count and one thread; median of `repeats`, wall clock and
process CPU seconds):
- frames from cameras not seen before (none kept, as while the camera moves): colour alone; a still
  frame (the language features drawn with the colour for the next query) and the decoding of its class
  maps ahead (`prepare_classes`, after the frame is sent); with a query's relevance drawn over it, every
  pixel's class decoded and every 2nd pixel's (as the page does while the camera moves);
- `ask` (text embedding, each scale's Gaussians thresholded on their kept classes);
- a query typed on a still view: `ask` and the frame drawing it on the kept view, against the reference
  session that renders every frame anew and decodes per query (`keep_views=False`, the path before);
- `stages_s`: each step of a query's first frame alone (text embedding, a scale's Gaussians decoded, the
  rasterizer with colour alone and with both scales' features, a scale's pixels decoded, the relevance
  painted, the overlay drawn, the JPEG the page sends).

Through the page (`page`): the bench's field served by `ccl view`'s server in a process of its own,
Debian's chromium headless (playwright) with a 640 x 480 canvas; the time in the browser from the query
box's input event to the overlay line naming the query (sent after its image), median over the queries,
typed with the view at rest and half a second after a drag turned the camera; with `--baseline REV`, the
same page served by ccl as of REV, queried in turn with this one. The machine's load average before and
after each part is written beside the figures.

Writes bench/out/viewer.json. Run: python -m bench.viewer [--quick] [--baseline REV] [--page-only]
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


def build_session(folder: Path, n: int = N_GAUSSIANS, size: int = HEIGHT):
    """(ViewSession on an `n`-Gaussian colour field (100k; laid out for `size`-pixel-high images) and two
    language fields written under `folder`, a query: the phrase of the class the decoder gives most
    Gaussians, so that it selects some). tests/view builds a small one."""
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

    means, quats, scales, opacities, colors, *_ = make_scene("surfaces", n, size)
    g = torch.Generator().manual_seed(1)
    colour = Gaussians(
        means=means, quats=quats, log_scales=scales.log(), opacity_logits=torch.logit(opacities),
        sh0=torch.from_numpy(rgb_to_sh0(colors[:, :3].numpy())),
        shN=torch.randn(n, 15, 3, generator=g) * 0.05,
    )  # fmt: skip
    features = torch.nn.functional.normalize(torch.randn(n, 8, generator=g), dim=1)
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
    for source in sources.values():  # read now, as ccl view's open_language does: a field read lazily by
        for s in source.scales:  # two of the page's threads at once would be two objects
            source.language_field(s)
    with torch.no_grad():
        commonest = int(torch.bincount(decoder(features).argmax(dim=-1), minlength=N_CLASSES).argmax())
    session = ViewSession(
        run_dir=folder, scene="bench", colour=colour, background=(0.0, 0.0, 0.0), cameras=(),
        sources=sources, query_cfg=QueryConfig(), features_cfg=features_cfg,
    )  # fmt: skip
    return session, f"phrase {commonest}"


def orbit_pose(k: int, n: int) -> tuple:
    """(position, wxyz, vertical fov) of camera k of n, as a browser reports its camera (viser's axes):
    turning ±10 degrees about the scene's vertical axis through z = 4."""
    import math

    import numpy as np

    a = math.radians(10) * math.sin(2 * math.pi * k / max(n, 1))
    pivot = np.array([0.0, 0.0, 4.0])
    pos = pivot + 4.0 * np.array([-math.sin(a), 0.0, -math.cos(a)])
    wxyz = np.array([math.cos(-a / 2), 0.0, math.sin(-a / 2), 0.0])  # rotation about y by -a
    return pos, wxyz, 2 * math.atan(0.5)  # bench.rasterizer's focal: f = image height


def orbit(k: int, n: int, width: int = WIDTH, height: int = HEIGHT):
    """Camera k of n (orbit_pose) with a `width` x `height` image."""
    from ccl.view import camera_from_view

    return camera_from_view(*orbit_pose(k, n), width, height, max_size=max(width, height))


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


def commonest_phrases(session, k: int) -> list[str]:
    """The phrases of the `k` classes the sp field's decoder gives most Gaussians (each selects some)."""
    import torch

    lf = session.sources["sp"].language_field("sp")
    with torch.no_grad():
        counts = torch.bincount(lf.decoder(lf.features).argmax(dim=-1), minlength=N_CLASSES)
    return [f"phrase {int(c)}" for c in counts.argsort(descending=True)[:k]]


def reference_of(session):
    """The same session rendering every frame anew and decoding per query (`keep_views=False`): the path
    before views were kept, and what tests/view compares the kept one with."""
    import dataclasses
    import threading

    return dataclasses.replace(session, keep_views=False, _views=[], _gaussian_classes={}, _embeddings={},
                               _lock=threading.Lock())  # fmt: skip


def stages(session, query: str, repeats: int) -> dict:
    """Where a query's first frame goes, each step alone on one camera (median wall seconds)."""
    import numpy as np
    import torch

    from ccl.query.figures import overlay
    from ccl.query.relevance import text_embeddings
    from ccl.query.view import decode_gaussian_classes, view_relevance
    from ccl.splat.render import render_channels
    from ccl.view.session import _ViewClassMaps, _ViewPixels

    src, cam, cfg = session.sources["auto"], orbit(0, 1), session.query_cfg
    sp = src.language_field("sp")
    feats = torch.cat([src.language_field(s).features for s in src.scales], 1)
    answer = session.ask(query)
    out = {}

    def timed(name, fn):
        out[name] = round(_median_s(fn, repeats), 4)
        return fn()

    with torch.no_grad():
        timed("text_embeddings", lambda: text_embeddings([query], cfg=cfg, features_cfg=session.features_cfg))
        timed("decode_gaussians_one_scale", lambda: decode_gaussian_classes(sp))
        timed("raster_colour", lambda: render_channels(session.colour, cam, background=session.background))
        px = timed(
            "raster_colour_and_16_features",
            lambda: render_channels(session.colour, cam, features=feats, background=session.background),
        ).colors[0]
        drawn = np.zeros((*px.shape[:2], 3), np.uint8)  # (the image: not read by the decoding)
        kept = lambda: _ViewPixels(b"", None, drawn, [sp], [px[..., 3:11]])  # noqa: E731
        cls = timed("decode_pixels_one_scale", lambda: kept().decode(sp))  # the page's (kept anew each time)
    maps = _ViewClassMaps(src, {s: cls for s in src.scales})
    rel = timed("relevance_paint", lambda: view_relevance(maps, cam, answer.queries, query_cfg=cfg,
                                                          features_cfg=session.features_cfg, emb=answer.emb))  # fmt: skip
    image = np.rint(px[..., :3].clamp(0, 1).numpy() * 255).astype(np.uint8)
    shown = timed("overlay", lambda: overlay(image, rel.heat(0), mask=rel.heat(0) > answer.threshold))
    try:
        from viser._scene_api import _encode_image_binary  # what set_background_image encodes with

        timed("jpeg_90", lambda: _encode_image_binary(shown, "jpeg", 90))
    except ImportError:
        pass
    return out


def measure(session, queries: list[str], repeats: int) -> dict:
    import torch

    reference = reference_of(session)
    k = iter(range(1, 10**6))  # every frame from a camera not seen before (none kept: the moving page)
    fresh = lambda: orbit(next(k), 1000)  # noqa: E731
    session.render(fresh())  # warm-up: the kernel's first call
    session.warm()
    query = queries[0]
    cpu: list = []  # process CPU seconds, steadier than wall time on a shared machine
    colour_s = _median_s(lambda: session.render(fresh()), repeats, cpu)
    still_s = _median_s(lambda: session.render(fresh(), prepare="auto"), repeats, cpu)
    cams = [fresh() for _ in range(repeats)]
    for cam in cams:
        session.render(cam, prepare="auto")
    it = iter(cams)
    prepare_s = _median_s(lambda: session.prepare_classes(next(it), "auto"), repeats, cpu)
    answer = session.ask(query)
    with_query_s = _median_s(lambda: session.render(fresh(), answer), repeats, cpu)
    moving_s = _median_s(lambda: session.render(fresh(), answer, class_stride=2), repeats, cpu)
    ask_s = _median_s(lambda: session.ask(query), repeats, cpu)

    # a query typed on a still view: its answer and the frame drawing it, the view kept and decoded
    # ahead (as the page does once its frame is sent) against the reference
    cam = fresh()
    session.render(cam, prepare="auto")
    session.prepare_classes(cam, "auto")
    q = iter(range(10**6))
    typed = lambda s: s.render(cam, s.ask(queries[next(q) % len(queries)]))  # noqa: E731
    typed_s = _median_s(lambda: typed(session), repeats, cpu)
    typed_ref_s = _median_s(lambda: typed(reference), repeats, cpu)
    frame = session.render(cam, answer)
    return {
        "torch_threads": torch.get_num_threads(),
        "frame_colour_s": round(colour_s, 4),
        "fps_colour": round(1 / colour_s, 2),
        "frame_colour_still_s": round(still_s, 4),  # with the features drawn for the next query
        "prepare_classes_s": round(prepare_s, 4),  # both scales' class maps decoded after it is sent
        "frame_with_query_s": round(with_query_s, 4),
        "fps_with_query": round(1 / with_query_s, 2),
        "frame_with_query_moving_s": round(moving_s, 4),
        "fps_with_query_moving": round(1 / moving_s, 2),
        "ask_s": round(ask_s, 4),
        "query_on_still_view_s": round(typed_s, 4),
        "query_on_still_view_reference_s": round(typed_ref_s, 4),
        "cpu_s": dict(
            zip(
                [
                    "frame_colour",
                    "frame_colour_still",
                    "prepare_classes",
                    "frame_with_query",
                    "frame_with_query_moving",
                    "ask",
                    "query_on_still_view",
                    "query_on_still_view_reference",
                ],
                cpu,
                strict=True,
            )
        ),  # fmt: skip
        "stages_s": stages(session, query, repeats),
        "selected": answer.chosen.n_chosen,
        "lit_pixel_fraction": round(float((frame.heat > answer.threshold).mean()), 4),
        "message": answer.message,
    }


# --- the page in a browser ---------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
PANEL_PX = 324  # viser's docked panel ("medium" controls) beside the canvas: a 640 x 480 canvas
# what the page does in the browser from the query box's input event to the overlay line naming the query
# (set after its image is sent, on the same websocket): the status line's time too
_WATCH_JS = """(q) => {
  const t = (window.__t = {});
  document.addEventListener("input", () => { if (!t.input) t.input = performance.now(); },
                            { capture: true, once: true });
  const look = () => {
    const text = document.body.textContent;
    if (!t.status && text.includes("selected for '" + q + "'")) t.status = performance.now();
    if (!t.overlay && text.includes("Overlay: '" + q + "'")) { t.overlay = performance.now(); obs.disconnect(); }
  };
  const obs = new MutationObserver(look);
  obs.observe(document.body, { subtree: true, childList: true, characterData: true });
}"""


def serve(port: int) -> None:
    """The page on the bench's field (what `--serve PORT` runs in a process of its own): a ccl view server
    on bench.viewer's session, its camera starting at the bench's first view."""
    from ccl.view.server import ViewServer

    with tempfile.TemporaryDirectory(prefix="ccl_bench_viewer_page_") as tmp:
        session, _ = build_session(Path(tmp))
        session.cameras = (orbit(0, 1),)
        page = ViewServer(session, port=port, max_size=WIDTH)
        print(f"serving {page.url}", flush=True)
        page.serve_forever()


def _typed(tab, field, q: str) -> dict:
    """Type `q` into the page's query box: seconds from its input event to the status and overlay lines."""
    tab.evaluate(_WATCH_JS, q)
    field.fill(q)
    tab.wait_for_function("() => window.__t.overlay", timeout=60_000, polling=50)
    t = tab.evaluate("() => window.__t")
    return {"query": q, "status_s": round((t["status"] - t["input"]) / 1000, 3),
            "overlay_s": round((t["overlay"] - t["input"]) / 1000, 3)}  # fmt: skip


def _drag(tab, box, dx: float) -> None:
    """Turn the page's camera: a left drag of `dx` pixels across the canvas."""
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    tab.mouse.move(x, y)
    tab.mouse.down()
    tab.mouse.move(x + dx, y, steps=6)
    tab.mouse.up()


def _start_page(root: Path):
    """The bench's page served from the checkout at `root` (its ccl/ and bench/): (process, URL)."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "bench.viewer", "--serve", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=root)
    line = ""
    while "serving http" not in line:
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise RuntimeError(f"the bench's page from {root} did not start")
    return proc, line.split()[-1]


def _checkout(rev: str, into: Path) -> Path:
    """ccl/ as of `rev` with this bench/ beside it (the page's code then, the same field and page)."""
    import shutil
    import subprocess

    here = Path(__file__).resolve().parent
    repo = here.parent
    archive = subprocess.run(["git", "archive", rev, "ccl"], cwd=repo, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    shutil.copytree(here, into / "bench", ignore=shutil.ignore_patterns("out", "__pycache__"))
    return into


def page(
    queries: list[str], *, settle_s: float = 3.0, rest_s: float = 0.5, baseline: str | None = None
) -> dict:
    """Typed query -> its overlay through the real page: `ccl view`'s server on the bench's field in a
    process of its own (torch's default threads), Debian's chromium headless (playwright) with a canvas
    of 640 x 480; the time in the browser from the query box's input event (playwright's fill) to the
    overlay line naming the query (set after its image is sent, on the same websocket), and to the status
    line. Two cases, median over the queries: `still`, each query typed `settle_s` after the previous
    overlay (a person reading it); `after_move`, typed `rest_s` after a drag turned the camera. With
    `baseline` (a git revision) its ccl serves a second page, queried in turn with this one."""
    from playwright.sync_api import sync_playwright

    roots = {"current": Path(__file__).resolve().parent.parent}
    with tempfile.TemporaryDirectory(prefix="ccl_bench_viewer_base_") as tmp:
        if baseline:
            roots[f"baseline {baseline}"] = _checkout(baseline, Path(tmp))
        procs, load0 = {}, os.getloadavg()
        try:
            for name, root in roots.items():
                procs[name] = _start_page(root)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                tabs, runs = {}, {name: {"still": [], "after_move": []} for name in roots}
                for name, (_proc, url) in procs.items():
                    tab = browser.new_page(viewport={"width": WIDTH + PANEL_PX, "height": HEIGHT})
                    tab.goto(url)
                    tab.get_by_text("Type a query.").wait_for(timeout=120_000)
                    row = "//label[text()='Query']/ancestor::div[contains(@class,'mantine-Flex-root')][1]"
                    tabs[name] = (tab, tab.locator(f"xpath={row}//input[not(@type='hidden')]"))
                    box = tab.locator("canvas").first.bounding_box()
                tabs[next(iter(tabs))][0].wait_for_timeout(settle_s * 1000)
                moved = queries[1:] + queries[:1]  # (each differs from the text in the box before it)
                for case, texts in (("still", queries), ("after_move", moved)):
                    for k, q in enumerate(texts):
                        for name, (tab, field) in tabs.items():
                            if case == "after_move":
                                _drag(tab, box, 40 if k % 2 else -40)
                                tab.wait_for_timeout(rest_s * 1000)
                            runs[name][case].append(_typed(tab, field, q))
                            print(name, case, json.dumps(runs[name][case][-1]), flush=True)
                            tab.wait_for_timeout(settle_s * 1000)
                browser.close()
        finally:
            for proc, _url in procs.values():
                proc.terminate()
                proc.wait(30)

    def summary(got: list[dict]) -> dict:
        return {"query_to_overlay_median_s": round(statistics.median(r["overlay_s"] for r in got), 3),
                "query_to_overlay_max_s": max(r["overlay_s"] for r in got),
                "query_to_status_median_s": round(statistics.median(r["status_s"] for r in got), 3),
                "queries": got}  # fmt: skip

    return {
        "canvas_wh": [round(box["width"]), round(box["height"])],
        "settle_s": settle_s,
        "rest_s": rest_s,
        "pages": {name: {case: summary(got) for case, got in r.items()} for name, r in runs.items()},
        "loadavg_before": load0,
        "loadavg_after": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> dict:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 repeats instead of 15, 5 queries on the page")
    ap.add_argument(
        "--page-only", action="store_true", help="only the page in chromium (printed, not written)"
    )
    ap.add_argument("--baseline", metavar="REV", help="also the page of ccl as of this git revision, in turn")
    ap.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)  # page()'s server
    args = ap.parse_args(argv if argv is not None else [])
    if args.serve:
        serve(args.serve)
        return {}
    repeats = 5 if args.quick else 15
    load0 = os.getloadavg()
    default_threads = torch.get_num_threads()
    runs = []
    with tempfile.TemporaryDirectory(prefix="ccl_bench_viewer_") as tmp:
        session, query = build_session(Path(tmp))
        queries = commonest_phrases(session, 9)
        if not args.page_only:
            for threads in sorted({default_threads, 1}, reverse=True):
                torch.set_num_threads(threads)
                runs.append(measure(session, queries, repeats))
                print(json.dumps(runs[-1]), flush=True)
    torch.set_num_threads(default_threads)
    browser = page(queries[1 : 6 if args.quick else 10], baseline=args.baseline)
    print(json.dumps(browser), flush=True)
    if args.page_only:
        return browser
    out = {
        "n_gaussians": N_GAUSSIANS,
        "image_wh": [WIDTH, HEIGHT],
        "sh_degree": 3,
        "scales": ["sp", "wp"],
        "n_classes": N_CLASSES,
        "repeats": repeats,
        "targets": {"fps_colour_min": 5.0, "query_to_overlay_s_max": 1.0},
        "runs": runs,
        "page": browser,
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
