"""What the targets of a run need: which stages, for which scenes, so the preflight checks only those.

`snakemake results/garden/sfm/poses.json` runs structure from motion and nothing else: it needs no model
weights and no model backend, and the preflight must not refuse it for a missing SAM checkpoint. A
target is a path the workflow writes (or a rule's name); each maps to the stages that make it and
every stage upstream of it. A target that maps to nothing known (a rule `all`, `tables`, a path outside
results/{scene}/, or no target: the default `rule all`) needs every stage of every scene.

Stages: scene (folders, photos, SfM, the manifest), masks, tracks, features, codebook, rgb (the colour
field), language (the language fields), eval (labels, evaluation and tables).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

STAGES = ("scene", "masks", "tracks", "features", "codebook", "rgb", "language", "eval")
ALL_STAGES = frozenset(STAGES)

# A stage and every stage it reads from (the scene stage under all of them).
_UPSTREAM = {
    "scene": {"scene"},
    "masks": {"scene", "masks"},
    "tracks": {"scene", "masks", "tracks"},
    "features": {"scene", "masks", "features"},
    "codebook": {"scene", "masks", "tracks", "features", "codebook"},
    "rgb": {"scene", "rgb"},
    "language": {"scene", "masks", "tracks", "features", "codebook", "rgb", "language"},
    "eval": set(STAGES),
}
NEEDS = {stage: frozenset(up) for stage, up in _UPSTREAM.items()}

# results/{scene}/<what> -> the stage that writes it (first match wins)
_PATHS = (
    (r"scene\.json|scene(/.*)?|sfm(/.*)?|export(/.*)?", "scene"),
    (r"masks(/.*)?", "masks"),
    (r"tracks(/.*)?", "tracks"),
    (r"features(/.*)?", "features"),
    (r"seed\d+/codebook(/.*)?", "codebook"),
    (r"seed\d+/gaussians/rgb\.[^/]*", "rgb"),
    (r"seed\d+/gaussians(/.*)?", "language"),
    (r"seed\d+/eval(/.*)?", "eval"),
)
# rules named as targets -> the stage they belong to (others: everything)
_RULES = {
    "synthetic_scene": "scene",
    "scene_manifest": "scene",
    "poses": "scene",
    "triangulate_points": "scene",
    "export_scene": "scene",
    "sam_masks": "masks",
    "merge_masks": "masks",
    "track_masks": "tracks",
    "clip_features": "features",
    "train_codebook": "codebook",
    "train_rgb": "rgb",
    "train_language": "language",
}

# scene name -> the stages its targets need; the key None: every scene of the config
Needs = dict[str | None, frozenset[str]]
EVERYTHING: Needs = {None: ALL_STAGES}


def target_needs(targets: Iterable[str] | None) -> Needs:
    """The stages each scene's targets need (None: the default target, which needs everything)."""
    targets = list(targets or [])
    if not targets:
        return dict(EVERYTHING)
    needs: dict[str | None, set[str]] = {}
    for target in targets:
        scene, stage = _target_stage(target)
        needs.setdefault(scene, set()).update(NEEDS[stage])
    return {scene: frozenset(stages) for scene, stages in needs.items()}


def scene_needs(needs: Needs, scene: str) -> frozenset[str]:
    """The stages the run needs of `scene` (empty: no target of the run is of this scene)."""
    return needs.get(scene, frozenset()) | needs.get(None, frozenset())


def any_scene_needs(needs: Needs, stage: str) -> bool:
    return any(stage in stages for stages in needs.values())


def _target_stage(target: str) -> tuple[str | None, str]:
    if target in _RULES:
        return None, _RULES[target]
    path = os.path.normpath(target).replace(os.sep, "/")
    m = re.fullmatch(r"results/([^/]+)/(.+)", path)
    if m:
        for pattern, stage in _PATHS:
            if re.fullmatch(pattern, m[2]):
                return m[1], stage
    return None, "eval"  # a table, a rule like `all`, anything else: everything


def command_line_targets(argv: Sequence[str]) -> list[str] | None:
    """The targets of this process's `snakemake` command line (`sys.argv`), read with Snakemake's own
    parser; None where this is no snakemake command (the API called in-process) or its line cannot be
    read, so that the caller checks everything. --until and --omit-from only narrow a run: the targets'
    needs still cover it."""
    args = _parse_command_line(argv)
    return None if args is None else list(args.targets or [])


def command_line_configfile_flags(argv: Sequence[str]) -> list[list[str]] | None:
    """Each `--configfile` flag of this process's `snakemake` command line with the files it names, in
    order (its --configfiles spelling, abbreviations and `--configfile=a.yaml` included: Snakemake's own
    parser reads them); None where this is no snakemake command or its line cannot be read.

    Snakemake keeps only the last flag's files (argparse's store), so `--configfile a.yaml --configfile
    b.yaml` runs b.yaml alone; more than one flag here is a config silently dropped."""
    args = _parse_command_line(argv)
    return None if args is None else list(getattr(args, _EVERY_CONFIGFILE, []))


def repeated_configfile_message(flags: Sequence[Sequence[str]] | None) -> str | None:
    """The refusal for a command line with more than one --configfile flag (None for one, none, or a
    line that could not be read)."""
    if not flags or len(flags) < 2:
        return None
    named = ", then ".join(" ".join(map(str, files)) for files in flags)
    dropped = " ".join(str(f) for files in flags[:-1] for f in files)
    every = " ".join(str(f) for files in flags for f in files)
    return (
        f"--configfile is given {len(flags)} times ({named}): Snakemake keeps only the last flag's "
        f"files, so {dropped} would be silently ignored. Name every config after one flag, which "
        f"composes them left to right: `--configfile {every}` (targets go before it)."
    )


_EVERY_CONFIGFILE = "ccl_every_configfile"


def _parse_command_line(argv: Sequence[str]):
    program = str(argv[0]) if argv else ""
    if not (Path(program).name == "snakemake" or program.endswith(f"snakemake{os.sep}__main__.py")):
        return None
    from snakemake.cli import get_argument_parser

    parser = get_argument_parser()
    for action in parser._actions:  # record every --configfile flag, not only the last one's files
        if action.dest == "configfile" and type(action) is argparse._StoreAction:
            action.__class__ = _RecordEveryFlag
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # its usage lines are Snakemake's to print
            return parser.parse_args(list(argv[1:]))
    except (SystemExit, Exception):  # argparse exits on a line it cannot read; anything else: check all
        return None


class _RecordEveryFlag(argparse._StoreAction):
    def __call__(self, parser, namespace, values, option_string=None):
        every = [*getattr(namespace, _EVERY_CONFIGFILE, []), [str(v) for v in values]]
        setattr(namespace, _EVERY_CONFIGFILE, every)
        super().__call__(parser, namespace, values, option_string)
