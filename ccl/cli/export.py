"""`ccl export RESULTS/SCENE -o field.ply [--format 3dgs|points] [--with-language]`: the whole field
(ccl.export), for other tools."""

from __future__ import annotations

import argparse

from ccl.cli import common


def add_parser(sub) -> None:
    e = sub.add_parser(
        "export",
        help="the whole field as a PLY (3DGS layout or points), optionally with its language features",
    )
    e.add_argument("scene_dir", help=common.SCENE_DIR_HELP)
    e.add_argument("-o", "--out", required=True, help="output PLY")
    e.add_argument(
        "--format",
        default="3dgs",
        help="3dgs (default): the Gaussians in the reference 3DGS PLY layout (SuperSplat, any 3DGS viewer); "
        "points: x y z, red green blue, a point per Gaussian (MeshLab, CloudCompare, Open3D)",
    )
    e.add_argument(
        "--with-language",
        action="store_true",
        help="add each scale's 8 language features (lang_<scale>_0..7) and decoded class (class_<scale>) "
        "as vertex properties",
    )
    e.add_argument(
        "--scale", default="auto", help="language scale(s) written: sp, wp, all, or auto (every one)"
    )
    e.add_argument("--variant", default="full", help="codebook variant of the language field (default: full)")
    e.add_argument(
        "--seed", type=int, help="the run of this seed, when the scene's folder has several (seed<N>/)"
    )
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ccl.export import check_export_format, export_field
    from ccl.query.view import PLY_SUFFIXES, check_out_suffix
    from ccl.scene import read_manifest

    check_out_suffix(args.out, PLY_SUFFIXES)
    check_export_format(args.format)
    run = common.run_of(args)
    scene = read_manifest(run.scene_dir / "scene.json").name
    res = export_field(
        run, args.out, format=args.format, with_language=args.with_language, variant=args.variant,
        scale=args.scale, scene=scene,
    )  # fmt: skip
    for f in res.read:
        if f.partial:
            print(f"note: {f.describe()}")
    extra = f", language of {', '.join(res.scales)}" if res.scales else ""
    print(
        f"{res.n_gaussians} Gaussians ({res.format}{extra}, {len(res.properties)} properties); wrote {res.path}"
    )
    return 0
