"""The `ccl` command line: thin argparse over the same functions the workflow's scripts call.

    ccl query    RESULTS/SCENE "text" [...] --frame N -o out.png   relevance overlay of one view
    ccl query3d  RESULTS/SCENE "text" [...] -o selected.ply [--format points|3dgs]
                                                                    Gaussians chosen by text (appendix D)
    ccl render   RESULTS/SCENE --frame N --what rgb|classes|relevance [--text "..."] -o view.png
                                                                    one view of a field, at the frame's size
    ccl view     RESULTS/SCENE [--port 8080]                        a browser page: the colour field from any
                                                                    camera, text queries, selections exported
    ccl evaluate RESULTS/SCENE --variant full                       rule evaluate on one scene
    ccl tables   RESULTS                                            rule tables: rebuild results/tables/

RESULTS/SCENE is a scene's results folder, with one run, or `--seed N` naming one of its runs, or a run's
own folder, RESULTS/SCENE/seedN (ccl.results_tree). Settings come from a config file (`--config`, default ./config.yaml when present, else the repository's),
validated against the workflow's schema; `--mode` and `--threshold` override its `query` section. Text
is embedded with the scene's own features model (the settings its features files were made with), never
the config's; an explicit `--config` whose features settings differ is refused.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("ccl.cli")


def _config(args: argparse.Namespace) -> dict[str, Any]:
    from ccl.config import load_config

    path = args.config
    if path is None and Path("config.yaml").is_file():
        path = "config.yaml"
    return load_config(path)


def _stage_cfgs(config: dict[str, Any], args: argparse.Namespace | None = None) -> dict[str, Any]:
    from ccl.config import section, section_dataclass
    from ccl.eval import EvalConfig
    from ccl.query import QueryConfig

    q = dict(config["query"])
    if args is not None and getattr(args, "mode", None):
        q["mode"] = args.mode
    if args is not None and getattr(args, "threshold", None) is not None:
        q["threshold"] = args.threshold
    return {
        "query_cfg": section(QueryConfig, q, where="config: query"),
        "eval_cfg": section(EvalConfig, config["eval"], where="config: eval"),
        "scene_cfg": section(
            section_dataclass("scene_load"), config["scene_load"], where="config: scene_load"
        ),
    }


def _text_encoder(args: argparse.Namespace, scene_dir: Path) -> Any:
    """The text encoder of the results/{scene} folder `scene_dir` (the features settings its mask
    features were made with); an explicit --config whose features settings differ is refused."""
    import yaml

    from ccl.query.fields import check_text_encoder_agrees, scene_text_encoder

    made_with = scene_text_encoder(scene_dir)
    if args.config is not None:
        given = (yaml.safe_load(Path(args.config).read_text()) or {}).get("features") or {}
        check_text_encoder_agrees(made_with, given, scene_dir=scene_dir, config=args.config)
    return made_with


def _run(args: argparse.Namespace) -> Any:
    """The run the command's folder and `--seed` name (ccl.results_tree.run_folders)."""
    from ccl.results_tree import run_folders

    return run_folders(args.scene_dir, seed=args.seed)


def _device(config: dict[str, Any]) -> str:
    from ccl.device import resolve_device

    return resolve_device(config["device"])


def cmd_query(args: argparse.Namespace) -> int:
    from ccl.query import query_image

    config = _config(args)
    cfgs = _stage_cfgs(config, args)
    run = _run(args)
    res = query_image(
        run, args.text, frame=args.frame, out=args.out, variant=args.variant, scale=args.scale,
        query_cfg=cfgs["query_cfg"], features_cfg=_text_encoder(args, run.scene_dir), scene_cfg=cfgs["scene_cfg"],
        device=_device(config),
    )  # fmt: skip
    for q, s in res.scales.items():
        print(f"{q!r}: scale {s}, {100 * res.selected_fraction[q]:.1f}% of pixels selected")
    print(f"wrote {res.path}")
    return 0


def cmd_query3d(args: argparse.Namespace) -> int:
    from ccl.query import query_gaussians
    from ccl.query.view import PLY_SUFFIXES, check_out_suffix, check_ply_format

    check_out_suffix(args.out, PLY_SUFFIXES)
    check_ply_format(args.format)  # before the config, the fields and the text encoder are read
    config = _config(args)
    cfgs = _stage_cfgs(config, args)
    run = _run(args)
    res = query_gaussians(
        run, args.text, out=args.out, variant=args.variant, scale=args.scale,
        query_cfg=cfgs["query_cfg"], features_cfg=_text_encoder(args, run.scene_dir), min_opacity=args.min_opacity,
        context=args.context, format=args.format, device=_device(config),
    )  # fmt: skip
    print(f"{res.n_selected} of {res.n_gaussians} Gaussians selected (scale {res.scale}, "
          f"highest relevance {res.max_relevance:.3f}); wrote {res.path} ({res.format})")  # fmt: skip
    return 0


SCENE_DIR_HELP = "results/<scene> folder written by the workflow (or its seed<N>/ folder: one run)"
RENDER_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}  # -o suffix -> PIL format


def _need_file(path: Path, rule: str, what: str) -> Path:
    """`path` if it is a file, else FileNotFoundError naming it and the workflow rule that makes it."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: not found; {what} is made by the workflow's rule {rule}: run the workflow up to it"
        )
    return path


def _language_source(run: Any, variant: str, scale: str, *, scene: str, device: str):
    """The variant's language fields of the `--scale` choice, each with its codebook, checked first."""
    from ccl.query.view import language_source

    gdir, cdir = run.run_dir / "gaussians" / variant, run.run_dir / "codebook" / variant
    if scale != "auto":
        _need_file(
            gdir / f"{scale}.safetensors", "train_language", f"the {scale} language field of {variant}"
        )
    elif not any(not p.name.endswith(".partial.safetensors") for p in gdir.glob("*.safetensors")):
        raise FileNotFoundError(
            f"{gdir}: no language field (<scale>.safetensors) of variant {variant!r}; the workflow's rule "
            "train_language makes them: run the workflow up to it"
        )
    for p in gdir.glob("*.safetensors"):
        if not p.name.endswith(".partial.safetensors"):
            s = p.name.removesuffix(".safetensors")
            _need_file(cdir / f"{s}.h5", "train_codebook", f"the {s} codebook of {variant}")
    return language_source(run, variant, scale=scale, scene=scene, device=device)


def class_colours(class_map: np.ndarray) -> np.ndarray:
    """Class (prototype index) map [H, W] -> [H, W, 3] uint8 in a fixed palette, so a class has the same
    colour in every view and run: tab20's colours for 0-19, then hues a golden-ratio turn apart; -1 black."""
    import colorsys

    from matplotlib import colormaps

    idx = np.asarray(class_map, dtype=np.int64)
    n = max(int(idx.max(initial=0)) + 1, 20)
    palette = np.array(
        [
            *colormaps["tab20"].colors,
            *(colorsys.hsv_to_rgb((k * 0.6180339887) % 1.0, 0.7, 0.9) for k in range(20, n)),
        ]
    )  # [n, 3] in [0, 1]
    rgb = np.rint(palette[np.maximum(idx, 0)] * 255).astype(np.uint8)
    rgb[idx < 0] = 0
    return rgb


def colour_to_uint8(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] float colour in [0, 1] -> uint8 (rounded)."""
    return np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def write_view_image(out: Path, image: np.ndarray, *, made_by: dict[str, Any]) -> Path:
    """PNG (with `made_by` as a text chunk) or JPEG (as its comment), written atomically."""
    import json

    from PIL import Image, PngImagePlugin

    from ccl.io import atomic_path

    fmt = RENDER_SUFFIXES[out.suffix.lower()]
    note = json.dumps(made_by, sort_keys=True)
    with atomic_path(out) as tmp:
        img = Image.fromarray(image)
        if fmt == "PNG":
            info = PngImagePlugin.PngInfo()
            info.add_text("ccl", note)
            img.save(tmp, format=fmt, pnginfo=info)
        else:
            img.save(tmp, format=fmt, quality=95, comment=note)
    return out


def cmd_render(args: argparse.Namespace) -> int:
    """One view of a trained field at the frame's camera, rendered as evaluation renders it."""
    from ccl.query import pick_camera, validate_queries
    from ccl.query.view import check_out_suffix
    from ccl.scene import load_scene_from_manifest, read_manifest

    out = check_out_suffix(args.out, tuple(RENDER_SUFFIXES))
    if args.what == "relevance" and args.text is None:
        raise ValueError('--what relevance needs --text "..." (the query whose relevance is drawn)')
    if args.what != "relevance" and args.text is not None:
        raise ValueError(f"--text is the query of --what relevance; --what {args.what} takes none")
    config = _config(args)
    cfgs = _stage_cfgs(config, args)
    device = _device(config)
    run = _run(args)
    manifest = run.scene_dir / "scene.json"
    m = read_manifest(manifest)
    cam = pick_camera(load_scene_from_manifest(manifest, cfg=cfgs["scene_cfg"]).cameras, args.frame)
    made_by = {"command": "ccl render", "scene": m.name, "frame": cam.name, "what": args.what}
    if args.what == "rgb":
        from ccl.splat.checkpoint import load_rgb_field
        from ccl.splat.render import render_rgb

        path = _need_file(run.run_dir / "gaussians" / "rgb.safetensors", "train_rgb", "the colour field")
        gaussians, header = load_rgb_field(path, scene=m.name)
        # the background the field was trained and evaluated against (its header's config)
        background = header.get("config", {}).get("background", config["rgb"]["background"])
        image = colour_to_uint8(render_rgb(gaussians.to(device), cam, background=tuple(background)))
        made_by.update(field=str(path), background=list(background))
        detail = "colour field"
    else:
        text = validate_queries([args.text], where="--text")[0] if args.what == "relevance" else None
        source = _language_source(run, args.variant, args.scale, scene=m.name, device=device)
        made_by.update(variant=args.variant, fields={s: str(source.fields[s]) for s in source.scales})
        if text is None:
            scale = source.scales[0]
            image = class_colours(source.class_map(scale, cam))
            detail = f"{args.variant} {scale}, {source.prototypes(scale).shape[0]} classes"
        else:
            cfgs["features_cfg"] = _text_encoder(args, run.scene_dir)
            image, scale, frac = _relevance_image(source, cam, text, cfgs=cfgs, device=device)
            made_by.update(text=text, mode=cfgs["query_cfg"].mode)
            threshold = cfgs["query_cfg"].threshold
            detail = f"{text!r}, {args.variant} {scale}, {100 * frac:.1f}% of pixels above {threshold:g}"
        made_by["scale"] = scale
    write_view_image(out, image, made_by=made_by)
    print(f"{m.name} {cam.name} {args.what} ({detail}): {image.shape[1]}x{image.shape[0]}, wrote {out}")
    return 0


def _relevance_image(source: Any, cam: Any, text: str, *, cfgs: dict[str, Any], device: str):
    """(overlay [H, W, 3] uint8, scale, share of pixels above the threshold): `ccl query`'s relevance of
    one text (ccl.query.view.view_relevance) drawn over the frame's image as its figure panels draw it."""
    from ccl.query.figures import overlay
    from ccl.query.view import view_relevance
    from ccl.scene import load_image

    query_cfg = cfgs["query_cfg"]
    rel = view_relevance(
        source, cam, [text], query_cfg=query_cfg, features_cfg=cfgs["features_cfg"], device=device
    )
    heat = rel.heat(0)
    image = overlay(load_image(cam, cfg=cfgs["scene_cfg"]), heat)
    return image, rel.scales[rel.chosen[0]], float((heat > query_cfg.threshold).mean())


def cmd_view(args: argparse.Namespace) -> int:
    """A browser page on one results folder: the colour field from the browser's camera, text queries."""
    from ccl.query import pick_camera
    from ccl.view.server import ViewServer, check_port_free
    from ccl.view.session import open_session

    check_port_free(args.host, args.port)  # before the fields load
    config = _config(args)
    cfgs = _stage_cfgs(config, args)
    run = _run(args)
    session = open_session(
        run, variant=args.variant, query_cfg=cfgs["query_cfg"], scene_cfg=cfgs["scene_cfg"],
        text_encoder=lambda: _text_encoder(args, run.scene_dir), device=_device(config),
    )  # fmt: skip
    start = pick_camera(session.cameras, args.frame) if args.frame is not None else None
    page = ViewServer(
        session, host=args.host, port=args.port, max_size=args.max_size, export_dir=args.export_dir,
        start_frame=start, scale=args.scale,
    )  # fmt: skip
    what = "colour field and text queries" if session.can_query else "colour field only (no language field)"
    print(f"ccl view: {session.scene} ({what}) at {page.url}  (Ctrl-C stops)", flush=True)
    page.serve_forever()
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ccl.eval import evaluate_scene
    from ccl.query import scene_fields

    config = _config(args)
    cfgs = _stage_cfgs(config, args)
    run = _run(args)
    fields, codebooks = scene_fields(run, args.variant)
    out = Path(args.out) if args.out else run.run_dir / "eval" / args.variant
    summary = evaluate_scene(
        out, manifest=run.scene_dir / "scene.json", fields=fields, codebooks=codebooks, variant=args.variant,
        seed=run.seed, query_cfg=cfgs["query_cfg"], eval_cfg=cfgs["eval_cfg"],
        features_cfg=_text_encoder(args, run.scene_dir), scene_cfg=cfgs["scene_cfg"], device=_device(config),
    )  # fmt: skip
    for s, r in summary["results"].items():
        loc = "n/a" if r["loc_acc"] is None else f"{100 * r['loc_acc']:.1f}"
        print(f"{summary['scene']} {args.variant} [{s}]: mIoU {100 * r['miou']:.1f}, localization {loc} "
              f"({r['n_pairs']} pairs)")  # fmt: skip
    print(f"wrote {out / 'queries.csv'}")
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    from ccl.eval import build_tables, find_query_csvs

    results = Path(args.results)
    csvs = find_query_csvs(results)
    if not csvs:
        raise FileNotFoundError(
            f"{results}: no <scene>/seed<N>/eval/<variant>/queries.csv; run the workflow (rule evaluate) first"
        )
    out = Path(args.out) if args.out else results / "tables"
    bench = Path(args.benchmarks) if args.benchmarks else results.absolute().parent / "benchmarks"
    written = build_tables(csvs, out, benchmarks=bench)
    print(f"{len(csvs)} queries.csv -> {len(written)} files in {out}")
    for p in written:
        if p.suffix == ".md":
            print()
            print(p.read_text().rstrip())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ccl", description="CCL-LGS: text queries, evaluation and tables")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, *, query: bool = True):
        sp.add_argument(
            "--config", help="config YAML (default: ./config.yaml if present, else the repository's)"
        )
        sp.add_argument(
            "--variant", default="full", help="codebook variant of the language field (default: full)"
        )
        sp.add_argument(
            "--seed", type=int, help="the run of this seed, when the scene's folder has several (seed<N>/)"
        )
        if query:
            sp.add_argument("--scale", default="auto", help="sp, wp, all, or auto (highest smoothed peak)")
            sp.add_argument(
                "--mode", choices=["paper", "langsplat"], help="relevance mode (config: query.mode)"
            )
            sp.add_argument("--threshold", type=float, help="selection threshold (config: query.threshold)")

    q = sub.add_parser("query", help="relevance of text queries in one view, drawn over the image")
    q.add_argument("scene_dir", help=SCENE_DIR_HELP)
    q.add_argument("text", nargs="+", help="one or more text queries")
    q.add_argument("--frame", required=True, help="view: its name (frame_00060) or the number in it (60)")
    q.add_argument("-o", "--out", required=True, help="output PNG")
    common(q)
    q.set_defaults(func=cmd_query)

    q3 = sub.add_parser("query3d", help="Gaussians chosen by text from their decoded features, as a PLY")
    q3.add_argument("scene_dir", help=SCENE_DIR_HELP)
    q3.add_argument(
        "text", nargs="+", help="one or more text queries (a Gaussian relevant to any is selected)"
    )
    q3.add_argument("-o", "--out", required=True, help="output PLY (its layout: --format)")
    q3.add_argument(
        "--format",
        default="points",
        help="points (default): x y z, red green blue, a point per Gaussian (MeshLab, CloudCompare, "
        "Open3D); 3dgs: the Gaussians in 3DGS's PLY layout (SuperSplat, any 3DGS viewer)",
    )
    q3.add_argument("--min-opacity", type=float, default=0.0, help="drop Gaussians below this opacity")
    q3.add_argument("--context", action="store_true", help="also write the other Gaussians, in dark grey")
    common(q3)
    q3.set_defaults(func=cmd_query3d)

    r = sub.add_parser(
        "render", help="one view of the colour field, the decoded classes or a text's relevance, as an image"
    )
    r.add_argument("scene_dir", help=SCENE_DIR_HELP)
    r.add_argument("--frame", required=True, help="view: its name (frame_00060) or the number in it (60)")
    r.add_argument(
        "--what",
        required=True,
        choices=["rgb", "classes", "relevance"],
        help="rgb: the colour field; classes: the language field's decoded class (prototype index) in a "
        "fixed palette (--scale auto: the finest scale); relevance: the relevance of --text over the image",
    )
    r.add_argument("--text", help="the query of --what relevance")
    r.add_argument("-o", "--out", required=True, help="output image: " + ", ".join(RENDER_SUFFIXES))
    common(r)
    r.set_defaults(func=cmd_render)

    v = sub.add_parser("view", help="a browser page: the colour field, text queries, the selection exported")
    v.add_argument("scene_dir", help=SCENE_DIR_HELP)
    v.add_argument("--port", type=int, default=8080, help="port of the page (default: 8080)")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    v.add_argument("--frame", help="training view the browser starts at (default: the first)")
    v.add_argument(
        "--max-size", type=int, default=640, help="longest side of the rendered image, pixels (default: 640)"
    )
    v.add_argument(
        "--export-dir",
        default=".",
        help="folder the export button writes <scene>_<query>.ply to (default: .)",
    )
    common(v)
    v.set_defaults(func=cmd_view)

    ev = sub.add_parser("evaluate", help="evaluate one scene's variant (what rule evaluate runs)")
    ev.add_argument("scene_dir", help=SCENE_DIR_HELP)
    ev.add_argument("-o", "--out", help="output folder (default: <scene_dir>/seed<N>/eval/<variant>)")
    common(ev, query=False)
    ev.add_argument("--mode", choices=["paper", "langsplat"], help="relevance mode (config: query.mode)")
    ev.set_defaults(func=cmd_evaluate)

    t = sub.add_parser("tables", help="rebuild the result tables from every queries.csv and benchmark file")
    t.add_argument("results", help="results folder (holds <scene>/seed<N>/eval/<variant>/queries.csv)")
    t.add_argument("-o", "--out", help="output folder (default: RESULTS/tables)")
    t.add_argument("--benchmarks", help="Snakemake benchmark folder (default: RESULTS/../benchmarks)")
    t.set_defaults(func=cmd_tables)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ccl.runlog import FORMAT

    logging.basicConfig(level=logging.INFO, format=FORMAT, stream=sys.stderr)
    logging.captureWarnings(True)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"ccl {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
