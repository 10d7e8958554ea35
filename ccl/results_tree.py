"""Where a scene's results lie: the shared stages under results/{scene}/, each seed's run below it.

    results/{scene}/scene.json, masks/, tracks/, features/   made once per scene (the first seed's)
    results/{scene}/seed{N}/codebook/, gaussians/, eval/     made once per seed of config `seeds`

The rules' outputs (workflow/rules/*.smk, written out in full, as Snakemake's linter asks) are the paths,
and tests/test_benchmark_configs.py holds them to this tree; this module is
how code outside the workflow (the `ccl` commands, the viewer, the closing message) finds them from a
folder a user names, which may be either level.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

SEED_DIR = "seed{seed}"  # a run's folder below its scene's, as the rules name it
_SEED_DIR_RE = re.compile(r"seed(\d+)")
RUN_STAGES = ("codebook", "gaussians", "eval")  # the stages made once per seed


def seed_dir_name(seed: int) -> str:
    return SEED_DIR.format(seed=seed)


def seed_of_dir(name: str) -> int | None:
    """The seed of a run folder's name ("seed3" → 3), None for any other name."""
    m = _SEED_DIR_RE.fullmatch(name)
    return int(m.group(1)) if m else None


def seed_dirs(scene_dir: str | os.PathLike) -> dict[int, Path]:
    """The run folders under a results/{scene} folder, by seed, in seed order."""
    scene_dir = Path(scene_dir)
    found = {}
    for p in scene_dir.iterdir() if scene_dir.is_dir() else ():
        seed = seed_of_dir(p.name)
        if seed is not None and p.is_dir():
            found[seed] = p
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class RunFolders:
    """One seed's run of one scene: `scene_dir` holds the shared stages, `run_dir` the seed's."""

    scene_dir: Path  # results/{scene}
    run_dir: Path  # results/{scene}/seed{N}
    seed: int


def run_folders(path: str | os.PathLike, *, seed: int | None = None) -> RunFolders:
    """The run a user means by `path`: a results/{scene}/seed{N} folder, or a results/{scene} folder with
    one run (or with `seed` naming one of its runs).

    Raises FileNotFoundError naming the folder and what to give instead: no scene.json (not a results
    folder), no run, the seed asked for absent, or several runs and no `seed`.
    """
    path = Path(path)
    own_seed = seed_of_dir(path.name)
    if own_seed is not None and (path.parent / "scene.json").is_file():
        if seed is not None and seed != own_seed:
            raise FileNotFoundError(
                f"{path} is the run of seed {own_seed}, and --seed {seed} asks for another: give "
                f"{path.parent / seed_dir_name(seed)}, or drop --seed"
            )
        return RunFolders(path.parent, path, own_seed)
    if not (path / "scene.json").is_file():
        raise FileNotFoundError(
            f"{path}: not a results folder (no scene.json); give a results/<scene> folder the workflow has "
            "written, or one of its seed<N> folders"
        )
    runs = seed_dirs(path)
    if seed is not None:
        if seed not in runs:
            raise FileNotFoundError(
                f"{path}: no run of seed {seed} (no {seed_dir_name(seed)}/); runs here: "
                f"{_named(runs)}; run the workflow with that seed in config `seeds`"
            )
        return RunFolders(path, runs[seed], seed)
    if not runs:
        raise FileNotFoundError(f"{path}: no trained run here (no seed<N>/ folder); run the workflow first")
    if len(runs) > 1:
        raise FileNotFoundError(
            f"{path} has runs of seeds {list(runs)}: name one with --seed N, or give its folder "
            f"({path / seed_dir_name(next(iter(runs)))})"
        )
    ((only, run_dir),) = runs.items()
    return RunFolders(path, run_dir, only)


def _named(runs: dict[int, Path]) -> str:
    return ", ".join(p.name for p in runs.values()) or "none"


def as_run(where: RunFolders | str | os.PathLike) -> RunFolders:
    """`where` itself if it is a RunFolders, else the run a folder names (`run_folders`, no seed)."""
    return where if isinstance(where, RunFolders) else run_folders(where)
