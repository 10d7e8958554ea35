"""The `ccl` command line: thin argparse over the same functions the workflow's scripts call.

    ccl query    RESULTS/SCENE "text" [...] --frame N -o out.png   relevance overlay of one view
    ccl query3d  RESULTS/SCENE "text" [...] -o selected.ply         Gaussians chosen by text (appendix D)
    ccl evaluate RESULTS/SCENE --variant full                       rule evaluate on one scene
    ccl tables   RESULTS                                            rule tables: rebuild results/tables/

Settings come from a config file (`--config`, default ./config.yaml when present, else the repository's),
validated against the workflow's schema; `--mode` and `--threshold` override its `query` section.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

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
        "features_cfg": section(section_dataclass("features"), config["features"], where="config: features"),
        "scene_cfg": section(
            section_dataclass("scene_load"), config["scene_load"], where="config: scene_load"
        ),
    }


def _device(config: dict[str, Any]) -> str:
    from ccl.device import resolve_device

    return resolve_device(config["device"])


def cmd_query(args: argparse.Namespace) -> int:
    from ccl.query import query_image

    config = _config(args)
    cfgs = _stage_cfgs(config, args)
    res = query_image(
        args.scene_dir, args.text, frame=args.frame, out=args.out, variant=args.variant, scale=args.scale,
        query_cfg=cfgs["query_cfg"], features_cfg=cfgs["features_cfg"], scene_cfg=cfgs["scene_cfg"],
        device=_device(config),
    )  # fmt: skip
    for q, s in res.scales.items():
        print(f"{q!r}: scale {s}, {100 * res.selected_fraction[q]:.1f}% of pixels selected")
    print(f"wrote {res.path}")
    return 0


def cmd_query3d(args: argparse.Namespace) -> int:
    from ccl.query import query_gaussians

    config = _config(args)
    cfgs = _stage_cfgs(config, args)
    res = query_gaussians(
        args.scene_dir, args.text, out=args.out, variant=args.variant, scale=args.scale,
        query_cfg=cfgs["query_cfg"], features_cfg=cfgs["features_cfg"], min_opacity=args.min_opacity,
        context=args.context, device=_device(config),
    )  # fmt: skip
    print(f"{res.n_selected} of {res.n_gaussians} Gaussians selected (scale {res.scale}, "
          f"highest relevance {res.max_relevance:.3f}); wrote {res.path}")  # fmt: skip
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ccl.eval import evaluate_scene
    from ccl.query import scene_fields

    config = _config(args)
    cfgs = _stage_cfgs(config, args)
    scene_dir = Path(args.scene_dir)
    fields, codebooks = scene_fields(scene_dir, args.variant)
    out = Path(args.out) if args.out else scene_dir / "eval" / args.variant
    summary = evaluate_scene(
        out, manifest=scene_dir / "scene.json", fields=fields, codebooks=codebooks, variant=args.variant,
        seed=config["seed"], query_cfg=cfgs["query_cfg"], eval_cfg=cfgs["eval_cfg"],
        features_cfg=cfgs["features_cfg"], scene_cfg=cfgs["scene_cfg"], device=_device(config),
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
        raise FileNotFoundError(f"{results}: no */eval/*/queries.csv; run the workflow (rule evaluate) first")
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
        if query:
            sp.add_argument("--scale", default="auto", help="sp, wp, all, or auto (highest smoothed peak)")
            sp.add_argument(
                "--mode", choices=["paper", "langsplat"], help="relevance mode (config: query.mode)"
            )
            sp.add_argument("--threshold", type=float, help="selection threshold (config: query.threshold)")

    q = sub.add_parser("query", help="relevance of text queries in one view, drawn over the image")
    q.add_argument("scene_dir", help="results/<scene> folder written by the workflow")
    q.add_argument("text", nargs="+", help="one or more text queries")
    q.add_argument("--frame", required=True, help="view: its name (frame_00060) or the number in it (60)")
    q.add_argument("-o", "--out", required=True, help="output PNG")
    common(q)
    q.set_defaults(func=cmd_query)

    q3 = sub.add_parser("query3d", help="Gaussians chosen by text from their decoded features, as a PLY")
    q3.add_argument("scene_dir", help="results/<scene> folder written by the workflow")
    q3.add_argument(
        "text", nargs="+", help="one or more text queries (a Gaussian relevant to any is selected)"
    )
    q3.add_argument("-o", "--out", required=True, help="output PLY (x y z, red green blue)")
    q3.add_argument("--min-opacity", type=float, default=0.0, help="drop Gaussians below this opacity")
    q3.add_argument("--context", action="store_true", help="also write the other Gaussians, in dark grey")
    common(q3)
    q3.set_defaults(func=cmd_query3d)

    ev = sub.add_parser("evaluate", help="evaluate one scene's variant (what rule evaluate runs)")
    ev.add_argument("scene_dir", help="results/<scene> folder written by the workflow")
    ev.add_argument("-o", "--out", help="output folder (default: <scene_dir>/eval/<variant>)")
    common(ev, query=False)
    ev.add_argument("--mode", choices=["paper", "langsplat"], help="relevance mode (config: query.mode)")
    ev.set_defaults(func=cmd_evaluate)

    t = sub.add_parser("tables", help="rebuild the result tables from every queries.csv and benchmark file")
    t.add_argument("results", help="results folder (holds <scene>/eval/<variant>/queries.csv)")
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
