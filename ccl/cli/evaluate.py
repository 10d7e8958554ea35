"""`ccl evaluate RESULTS/SCENE --variant full`: what the workflow's rule evaluate runs, on one scene."""

from __future__ import annotations

import argparse
from pathlib import Path

from ccl.cli import common


def add_parser(sub) -> None:
    ev = sub.add_parser("evaluate", help="evaluate one scene's variant (what rule evaluate runs)")
    ev.add_argument("scene_dir", help=common.SCENE_DIR_HELP)
    ev.add_argument("-o", "--out", help="output folder (default: <scene_dir>/seed<N>/eval/<variant>)")
    common.add_common(ev, query=False)
    ev.add_argument("--mode", choices=["paper", "langsplat"], help="relevance mode (config: query.mode)")
    ev.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ccl.eval import evaluate_scene
    from ccl.query import scene_fields

    config = common.config(args)
    cfgs = common.stage_cfgs(config, args)
    run = common.run_of(args)
    fields, codebooks = scene_fields(run, args.variant)
    out = Path(args.out) if args.out else run.run_dir / "eval" / args.variant
    summary = evaluate_scene(
        out, manifest=run.scene_dir / "scene.json", fields=fields, codebooks=codebooks, variant=args.variant,
        seed=run.seed, query_cfg=cfgs["query_cfg"], eval_cfg=cfgs["eval_cfg"],
        features_cfg=common.text_encoder(args, run.scene_dir), scene_cfg=cfgs["scene_cfg"],
        device=common.device(config),
    )  # fmt: skip
    for s, r in summary["results"].items():
        loc = "n/a" if r["loc_acc"] is None else f"{100 * r['loc_acc']:.1f}"
        print(f"{summary['scene']} {args.variant} [{s}]: mIoU {100 * r['miou']:.1f}, localization {loc} "
              f"({r['n_pairs']} pairs)")  # fmt: skip
    print(f"wrote {out / 'queries.csv'}")
    return 0
