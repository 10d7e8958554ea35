"""`ccl render RESULTS/SCENE --frame N --what rgb|classes|relevance [--text "..."] -o view.png`: one view
of a field at the frame's camera and size, rendered as evaluation renders it.

`ccl render RESULTS/SCENE --path orbit|spiral|interpolate|<camera_path.json> --what rgb|relevance|both
[--text "..."] -o out.mp4` (or .gif, or a folder of PNG frames): a camera path (ccl.render.paths) rendered
to a video (ccl.render.video)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ccl.cli import common
from ccl.render.images import IMAGE_SUFFIXES, class_colours, colour_to_uint8, write_view_image

log = logging.getLogger(__name__)


def add_parser(sub) -> None:
    r = sub.add_parser(
        "render", help="one view of the colour field, the decoded classes or a text's relevance, as an image"
    )
    r.add_argument("scene_dir", help=common.SCENE_DIR_HELP)
    where = r.add_mutually_exclusive_group(required=True)
    where.add_argument("--frame", help=common.FRAME_HELP)
    where.add_argument(
        "--path",
        help="a camera path rendered to a video: orbit (around the training cameras' look-at centre), "
        "spiral (the orbit rising and falling), interpolate (through the training views), or a nerfstudio "
        "camera-path JSON (its viewer's Render panel)",
    )
    r.add_argument(
        "--what",
        required=True,
        choices=["rgb", "classes", "relevance", "both"],
        help="rgb: the colour field; classes (--frame): the language field's decoded class (prototype "
        "index) in a fixed palette (--scale auto: the finest scale); relevance: the relevance of --text "
        "over the image; both (--path): rgb and relevance side by side",
    )
    r.add_argument("--text", help="the query of --what relevance and both")
    r.add_argument(
        "-o",
        "--out",
        required=True,
        help="output: with --frame an image (" + ", ".join(IMAGE_SUFFIXES) + "); with --path a video "
        "(.mp4, .gif) or a folder of PNG frames",
    )
    r.add_argument("--frames", type=int, default=120, help="frames of a generated --path (default: 120)")
    r.add_argument("--fps", type=float, help="frames per second (default: the JSON's fps, else 30)")
    r.add_argument(
        "--max-size",
        type=int,
        default=None,
        help="--path: longest side of a frame, pixels (default: the path's)",
    )
    common.add_common(r)
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """One view of a trained field at the frame's camera, rendered as evaluation renders it."""
    from ccl.query import pick_camera, validate_queries
    from ccl.query.view import check_out_suffix
    from ccl.scene import load_scene_cameras, read_manifest

    if args.what in ("relevance", "both") and args.text is None:
        raise ValueError(f'--what {args.what} needs --text "..." (the query whose relevance is drawn)')
    if args.what not in ("relevance", "both") and args.text is not None:
        raise ValueError(f"--text is the query of --what relevance and both; --what {args.what} takes none")
    if args.path is not None:
        return _render_path(args)
    if args.what == "both":
        raise ValueError("--what both is for --path (rgb and relevance side by side in a video)")
    out = check_out_suffix(args.out, tuple(IMAGE_SUFFIXES))
    config = common.config(args)
    cfgs = common.stage_cfgs(config, args)
    device = common.device(config)
    run = common.run_of(args)
    manifest = run.scene_dir / "scene.json"
    m = read_manifest(manifest)
    cam = pick_camera(load_scene_cameras(manifest, cfg=cfgs["scene_cfg"]).cameras, args.frame)
    made_by = {"command": "ccl render", "scene": m.name, "frame": cam.name, "what": args.what}
    if args.what == "rgb":
        from ccl.io.provenance import check_scene_of
        from ccl.splat.checkpoint import load_rgb_field
        from ccl.splat.render import render_rgb

        path = common.need_file(
            run.run_dir / "gaussians" / "rgb.safetensors", "train_rgb", "the colour field"
        )
        gaussians, header = load_rgb_field(path, scene=m.name)
        check_scene_of(path, header.get("inputs"), manifest)  # drawn from this manifest's cameras
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


def _render_path(args: argparse.Namespace) -> int:
    """A camera path rendered through `ccl view`'s session (the relevance drawn as the page draws it)."""
    from ccl.render.paths import camera_path, outside_bounds
    from ccl.render.video import render_path

    if args.what == "classes":
        raise ValueError("--what classes is for --frame; a --path renders rgb, relevance or both")
    if Path(args.out).suffix.lower() in IMAGE_SUFFIXES:
        raise ValueError(f"-o {args.out}: --path writes a video (.mp4, .gif) or a folder of PNG frames")
    run, session = common.view_session(args)
    for name, field in session.fields_read():
        if field.partial:  # as ccl view and ccl export say: the frames show the field as it stands now
            print(f"note: {name} {field.describe()}; the frames show it as it stands now", flush=True)
    answer = None
    if args.text is not None:
        if not session.can_query:
            raise FileNotFoundError(
                f"{run.run_dir / 'gaussians' / args.variant}: no language field of variant {args.variant!r} "
                f"for --what {args.what}; the workflow's rule train_language makes them"
            )
        answer = session.ask(args.text, scale=args.scale)
        if answer.chosen is None:
            raise ValueError(f"--text {args.text!r}: {answer.message}")
        print(answer.message)
    cams, fps = camera_path(args.path, session.cameras, n_frames=args.frames)
    if args.max_size:
        cams = [_scaled(c, args.max_size) for c in cams]
    outside = outside_bounds(cams, session.cameras, session.colour.means.detach().cpu().numpy())
    if outside:
        log.warning(
            "--path %s: %d of %d cameras are outside the scene's bounds (the box of its training cameras and "
            "Gaussians, padded by 10%%), frames %s; rendered anyway (expect empty or blurred frames there)",
            args.path, len(outside), len(cams), _ranges(outside),
        )  # fmt: skip
    res = render_path(
        session, cams, args.out, what=args.what, answer=answer, fps=args.fps or fps or 30.0, outside=outside
    )
    print(f"{session.scene} --path {args.path} {args.what}: {res.n_frames} frames {res.width}x{res.height} at "
          f"{res.fps:g} fps, wrote {res.path}")  # fmt: skip
    return 0


def _scaled(cam: Any, max_size: int) -> Any:
    import dataclasses

    s = min(1.0, max_size / max(cam.width, cam.height))
    if s == 1.0:
        return cam
    K = cam.K.copy()
    K[:2] *= s
    return dataclasses.replace(
        cam, width=round(cam.width * s), height=round(cam.height * s), K=K, file_size_wh=(0, 0)
    )


def _ranges(idx: list[int]) -> str:
    out, start = [], idx[0]
    for a, b in zip(idx, [*idx[1:], None], strict=True):
        if b != a + 1:
            out.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return ", ".join(out)
