"""`ccl query RESULTS/SCENE "text" [...] --frame N -o out.png`: relevance overlay of one view."""

from __future__ import annotations

import argparse

from ccl.cli import common


def add_parser(sub) -> None:
    q = sub.add_parser("query", help="relevance of text queries in one view, drawn over the image")
    q.add_argument("scene_dir", help=common.SCENE_DIR_HELP)
    q.add_argument("text", nargs="+", help="one or more text queries")
    q.add_argument("--frame", required=True, help=common.FRAME_HELP)
    q.add_argument("-o", "--out", required=True, help="output PNG")
    common.add_common(q)
    q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ccl.query import query_image

    config = common.config(args)
    cfgs = common.stage_cfgs(config, args)
    run = common.run_of(args)
    res = query_image(
        run, args.text, frame=args.frame, out=args.out, variant=args.variant, scale=args.scale,
        query_cfg=cfgs["query_cfg"], features_cfg=common.text_encoder(args, run.scene_dir),
        scene_cfg=cfgs["scene_cfg"], device=common.device(config),
    )  # fmt: skip
    for q, s in res.scales.items():
        print(f"{q!r}: scale {s}, {100 * res.selected_fraction[q]:.1f}% of pixels selected")
    print(f"wrote {res.path}")
    return 0
