"""The workflow's closing message: what this run built, and where, read from the results tree."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from ccl.results_tree import seed_of_dir

SHOWN_PER_SCENE = 4  # files named one by one; beyond, a count per stage folder
STAGE_ORDER = ("scene", "export", "masks", "tracks", "features", "codebook", "gaussians", "eval")  # the DAG's


def built_since(results: str | os.PathLike, started: float) -> list[Path]:
    """Files under `results` written at or after `started` (a time.time()), hidden ones aside."""
    root = Path(results)
    if not root.is_dir():
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = Path(dirpath) / name
            if not name.startswith(".") and path.stat().st_mtime >= started:
                out.append(path.relative_to(root))
    return sorted(out)


def closing_message(
    results: str | os.PathLike, started: float, *, snakemake: str = "snakemake", configfiles: str = ""
) -> str:
    """What the run built, grouped by scene (a few files by name, else a count per stage), the tables
    when they were rebuilt (each Markdown table printed whole), and how to see the report: a command
    that runs as written (`snakemake`: the program this run was started as, e.g. .venv/bin/snakemake;
    `configfiles`: the --configfile names of the run, empty for the default config.yaml)."""
    files = built_since(results, started)
    if not files:
        return "ccl-lgs: done; nothing new was built (every requested output was up to date)."
    by_scene: dict[str, list[Path]] = defaultdict(list)
    for f in files:
        by_scene[f.parts[0] if len(f.parts) > 1 else "."].append(f)
    lines = ["ccl-lgs: done. Built in this run:"]
    tables = by_scene.pop("tables", [])
    for scene, scene_files in by_scene.items():
        if len(scene_files) <= SHOWN_PER_SCENE:
            lines.append(f"  {scene}: " + ", ".join(f"results/{f}" for f in scene_files))
            continue
        stages: dict[str, int] = defaultdict(int)
        seeds = set()
        for f in scene_files:
            parts = f.parts[1:]
            seed = seed_of_dir(parts[0]) if len(parts) > 1 else None
            if seed is not None:  # a seed's run (ccl.results_tree): counted with its stage over every seed
                seeds.add(seed)
                parts = parts[1:]
            stages[parts[0]] += 1
        order = sorted(
            stages, key=lambda s: (STAGE_ORDER.index(s) if s in STAGE_ORDER else len(STAGE_ORDER), s)
        )
        counts = ", ".join(f"{stage} ({stages[stage]})" for stage in order)
        runs = f"; runs of seed {', '.join(map(str, sorted(seeds)))}" if seeds else ""
        lines.append(f"  {scene}: {len(scene_files)} files in results/{scene}/: {counts}{runs}")
    if tables:
        md = [f"results/{f}" for f in tables if f.suffix == ".md"]
        lines.append(f"  tables: {', '.join(md)} (and .csv beside each)")
        lines.append(
            "Per-query IoUs: results/<scene>/seed<N>/eval/<variant>/queries.csv. HTML report with tables"
        )
        config = f" --configfile {configfiles}" if configfiles else ""
        lines.append(f"and relevance maps: {snakemake} --report results/report.html{config}")
        for f in md:  # the rebuilt tables themselves, as they read
            table = Path(results).parent / f
            if table.is_file():
                lines += ["", f"{f}:", table.read_text(encoding="utf-8").rstrip()]
    return "\n".join(lines)
