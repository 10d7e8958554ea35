"""`ccl render RESULTS/SCENE --frame N --what rgb|classes|relevance [--text "..."] -o view.png`: one view
of a field at the frame's camera and size, rendered as evaluation renders it."""

from __future__ import annotations

import argparse
from typing import Any

from ccl.cli import common
from ccl.render.images import IMAGE_SUFFIXES, class_colours, colour_to_uint8, write_view_image


def add_parser(sub) -> None:
    r = sub.add_parser(
        "render", help="one view of the colour field, the decoded classes or a text's relevance, as an image"
    )
    r.add_argument("scene_dir", help=common.SCENE_DIR_HELP)
    r.add_argument("--frame", required=True, help=common.FRAME_HELP)
    r.add_argument(
        "--what",
        required=True,
        choices=["rgb", "classes", "relevance"],
        help="rgb: the colour field; classes: the language field's decoded class (prototype index) in a "
        "fixed palette (--scale auto: the finest scale); relevance: the relevance of --text over the image",
    )
    r.add_argument("--text", help="the query of --what relevance")
    r.add_argument("-o", "--out", required=True, help="output image: " + ", ".join(IMAGE_SUFFIXES))
    common.add_common(r)
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """One view of a trained field at the frame's camera, rendered as evaluation renders it."""
    from ccl.query import pick_camera, validate_queries
    from ccl.query.view import check_out_suffix
    from ccl.scene import load_scene_from_manifest, read_manifest

    out = check_out_suffix(args.out, tuple(IMAGE_SUFFIXES))
    if args.what == "relevance" and args.text is None:
        raise ValueError('--what relevance needs --text "..." (the query whose relevance is drawn)')
    if args.what != "relevance" and args.text is not None:
        raise ValueError(f"--text is the query of --what relevance; --what {args.what} takes none")
    config = common.config(args)
    cfgs = common.stage_cfgs(config, args)
    device = common.device(config)
    run = common.run_of(args)
    manifest = run.scene_dir / "scene.json"
    m = read_manifest(manifest)
    cam = pick_camera(load_scene_from_manifest(manifest, cfg=cfgs["scene_cfg"]).cameras, args.frame)
    made_by = {"command": "ccl render", "scene": m.name, "frame": cam.name, "what": args.what}
    if args.what == "rgb":
        from ccl.splat.checkpoint import load_rgb_field
        from ccl.splat.render import render_rgb

        path = common.need_file(
            run.run_dir / "gaussians" / "rgb.safetensors", "train_rgb", "the colour field"
        )
        gaussians, header = load_rgb_field(path, scene=m.name)
        # the background the field was trained and evaluated against (its header's config)
        background = header.get("config", {}).get("background", config["rgb"]["background"])
        image = colour_to_uint8(render_rgb(gaussians.to(device), cam, background=tuple(background)))
        made_by.update(field=str(path), background=list(background))
        detail = "colour field"
    else:
        text = validate_queries([args.text], where="--text")[0] if args.what == "relevance" else None
        source = common.language_source(run, args.variant, args.scale, scene=m.name, device=device)
        made_by.update(variant=args.variant, fields={s: str(source.fields[s]) for s in source.scales})
        if text is None:
            scale = source.scales[0]
            image = class_colours(source.class_map(scale, cam))
            detail = f"{args.variant} {scale}, {source.prototypes(scale).shape[0]} classes"
        else:
            cfgs["features_cfg"] = common.text_encoder(args, run.scene_dir)
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
