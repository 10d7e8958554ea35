"""The `ccl` command line: thin argparse over the same functions the workflow's scripts call, one module
per command (`python -m ccl` or the `ccl` script).

    ccl query    RESULTS/SCENE "text" [...] --frame N -o out.png   relevance overlay of one view
    ccl query3d  RESULTS/SCENE "text" [...] -o selected.ply [--format points|3dgs]
                                                                    Gaussians chosen by text (appendix D)
    ccl render   RESULTS/SCENE --frame N --what rgb|classes|relevance [--text "..."] -o view.png
                                                                    one view of a field, at the frame's size
    ccl view     RESULTS/SCENE [--port 8080]                        a browser page: the colour field from any
                                                                    camera, text queries, selections exported
    ccl export   RESULTS/SCENE -o field.ply [--format 3dgs|points] [--with-language]
                                                                    the whole field, for other tools
    ccl evaluate RESULTS/SCENE --variant full                       rule evaluate on one scene
    ccl tables   RESULTS                                            rule tables: rebuild results/tables/

RESULTS/SCENE is a scene's results folder, with one run, or `--seed N` naming one of its runs, or a run's
own folder, RESULTS/SCENE/seedN (ccl.results_tree). Settings come from a config file (`--config`, default
./config.yaml when present, else the repository's), validated against the workflow's schema; `--mode` and
`--threshold` override its `query` section. Text is embedded with the scene's own features model (the
settings its features files were made with), never the config's; an explicit `--config` whose features
settings differ is refused.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ccl.cli import evaluate, export, query, query3d, render, tables, view

log = logging.getLogger("ccl.cli")

COMMANDS = (query, query3d, render, view, export, evaluate, tables)  # each: add_parser(sub), run(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ccl", description="CCL-LGS: text queries, evaluation and tables")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
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
