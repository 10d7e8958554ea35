"""`ccl view RESULTS/SCENE [--port 8080]`: a browser page on one results folder: the colour field from
any camera, text queries, selections exported; fields still training shown from their latest partial
checkpoint (said so) and followed as training goes on."""

from __future__ import annotations

import argparse

from ccl.cli import common


def add_parser(sub) -> None:
    v = sub.add_parser("view", help="a browser page: the colour field, text queries, the selection exported")
    v.add_argument("scene_dir", help=common.SCENE_DIR_HELP)
    v.add_argument("--port", type=port_number, default=8080, help="port of the page, 1-65535 (default: 8080)")
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
    common.add_common(v)
    v.set_defaults(func=run)


def port_number(text: str) -> int:
    """--port's type: a TCP port, 1..65535 (argparse names the flag: `argument --port: …`); a value
    outside reached the socket as a raw OverflowError."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port number; give one of 1-65535, e.g. 8080"
        ) from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is no TCP port; give one of 1-65535, e.g. 8080")
    return port


def run(args: argparse.Namespace) -> int:
    """A browser page on one results folder: the colour field from the browser's camera, text queries."""
    from ccl.query import pick_camera
    from ccl.view.server import ViewServer, check_port_free

    check_port_free(args.host, args.port)  # before the fields load
    run, session = common.view_session(args)
    start = pick_camera(session.cameras, args.frame) if args.frame is not None else None
    page = ViewServer(
        session, host=args.host, port=args.port, max_size=args.max_size, export_dir=args.export_dir,
        start_frame=start, scale=args.scale,
    )  # fmt: skip
    what = "colour field and text queries" if session.can_query else "colour field only (no language field)"
    for name, field in session.fields_read():
        if field.partial:
            print(f"note: {name} {field.describe()}; the page follows its training", flush=True)
    print(f"ccl view: {session.scene} ({what}) at {page.url}  (Ctrl-C stops)", flush=True)
    page.serve_forever()
    return 0
