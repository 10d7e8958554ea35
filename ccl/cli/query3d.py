"""`ccl query3d RESULTS/SCENE "text" [...] -o selected.ply [--format points|3dgs]`: the Gaussians chosen
by text (appendix D), as a PLY."""

from __future__ import annotations

import argparse

from ccl.cli import common


def add_parser(sub) -> None:
    from ccl.query.relevance import LABEL_SUPPORT_MIN

    q3 = sub.add_parser("query3d", help="Gaussians chosen by text from their decoded features, as a PLY")
    q3.add_argument("scene_dir", help=common.SCENE_DIR_HELP)
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
    q3.add_argument(
        "--select",
        default="views",
        help="how a Gaussian's class is read: views (default): the classes it is drawn as in the "
        "scene's training views, voted where it lies on the surface a view draws (fewer stray Gaussians "
        "on trained fields: bench/selection_quality.py); own: the decoder on its own feature (appendix D "
        "as written; no views rendered)",
    )
    q3.add_argument(
        "--clean",
        default="labels+components",
        help="labels+components (default): labels, then components; labels: drop the Gaussians the field "
        f"draws as the query where its training maps seldom had it (in under {100 * LABEL_SUPPORT_MIN:.0f}%% of the "
        "views that see them; reads results/SCENE/masks); components: drop the pieces of the selection that lie "
        "apart from its main body and are read more weakly than it, averaged over the scales (another "
        "object drawn with the query's class at one scale); none: keep every Gaussian above the threshold",
    )
    q3.add_argument("--min-opacity", type=float, default=0.0, help="drop Gaussians below this opacity")
    q3.add_argument("--context", action="store_true", help="also write the other Gaussians, in dark grey")
    common.add_common(q3)
    q3.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ccl.query import query_gaussians
    from ccl.query.view import (
        PLY_SUFFIXES,
        check_clean,
        check_out_suffix,
        check_ply_format,
        check_selection_rule,
    )

    check_out_suffix(args.out, PLY_SUFFIXES)
    check_ply_format(args.format)
    check_selection_rule(args.select)  # before the config, the fields and the text encoder are read
    check_clean(args.clean)
    config = common.config(args)
    cfgs = common.stage_cfgs(config, args)
    run = common.run_of(args)
    res = query_gaussians(
        run, args.text, out=args.out, variant=args.variant, scale=args.scale,
        query_cfg=cfgs["query_cfg"], features_cfg=common.text_encoder(args, run.scene_dir),
        min_opacity=args.min_opacity, context=args.context, format=args.format, rule=args.select,
        clean=args.clean,
        scene_cfg=cfgs["scene_cfg"], device=common.device(config),
    )  # fmt: skip
    print(f"{res.n_selected} of {res.n_gaussians} Gaussians selected (scale {res.scale}, "
          f"highest relevance {res.max_relevance:.3f}); wrote {res.path} ({res.format})")  # fmt: skip
    return 0
