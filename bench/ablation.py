"""The codebook ablation (the paper's Tables 2 and 5) on the synthetic default scene, over three seeds.

The workflow runs once in a scratch folder with the default config plus `variants: [base, pull, push,
full]`, `scales: [sp, wp, all]` and `seeds: [0, 1, 2]` (preprocessing shared, a codebook, language
field and evaluation per seed), through Snakemake, as a user runs it. From its queries.csv files and
codebook diagnostics it reports, per scale set (sp+wp, all) and variant: mIoU and localization as mean
± std over the seeds, the paired difference to `base` seed by seed (mean ± std, and how many seeds it
is positive on), and the codebook's own view of the tracks (share of tracks on one prototype, track
majority share, prototype purity, after training). Writes bench/out/ablation.json and ablation.md.

Run: python -m bench.ablation [WORKDIR]   (a rerun in the same WORKDIR reuses what is up to date)
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "out" / "ablation.json"
SEEDS = (0, 1, 2)
VARIANTS = ("base", "pull", "push", "full")
SCALES = ("sp", "wp", "all")
CODEBOOK_STATS = ("single_prototype_track_fraction", "track_majority_share", "prototype_purity")


def run_workflow(work: Path) -> float:
    """The ablation's whole DAG in `work` (default config.yaml + the ablation's keys); wall seconds."""
    shutil.copy(ROOT / "config.yaml", work / "config.yaml")
    settings = [f"variants=[{','.join(VARIANTS)}]", f"scales=[{','.join(SCALES)}]",
                f"seeds=[{','.join(map(str, SEEDS))}]"]  # fmt: skip
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
           "--configfile", str(work / "config.yaml"), "--cores", str(os.cpu_count() or 1),
           "--config", *settings]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=work)
    return time.perf_counter() - start


def _cell(values: list[float]) -> dict:
    """mean, sample std (None with one value), n and the values themselves."""
    import numpy as np

    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"mean": round(float(np.mean(values)), 2), "std": None if std is None else round(std, 2),
            "n": len(values), "per_seed": [round(v, 2) for v in values]}  # fmt: skip


def summarise(work: Path, scene: str) -> list[dict]:
    """One row per (scale set, variant): the figures above, from the run's files only."""
    from ccl.eval.tables import find_query_csvs, per_run, read_query_csvs

    runs = per_run(read_query_csvs(find_query_csvs(work / "results")))
    runs = runs[runs["scene"] == scene]
    rows = []
    for scales, sub in runs.groupby("scales", sort=False):
        by_variant = {v: g.set_index("seed").sort_index() for v, g in sub.groupby("variant")}
        base = by_variant.get("base")
        for variant in VARIANTS:
            g = by_variant.get(variant)
            if g is None:
                continue
            row = {"scales": scales, "variant": variant, "miou": _cell(g["miou"].tolist()),
                   "localization": _cell(g["loc"].tolist())}  # fmt: skip
            if base is not None and variant != "base":
                paired = [float(g.loc[s, "miou"] - base.loc[s, "miou"]) for s in g.index if s in base.index]
                row["miou_vs_base"] = {**_cell(paired), "seeds_ahead": sum(d > 0 for d in paired)}
            row["codebook"] = codebook_figures(work, scene, variant, scales.split("+"))
            rows.append(row)
    return rows


def codebook_figures(work: Path, scene: str, variant: str, scales: list[str]) -> dict:
    """Per scale: each CODEBOOK_STATS figure after training, mean over the seeds (and per seed)."""
    out = {}
    for scale in scales:
        per_seed = []
        for seed in SEEDS:
            path = (
                work / "results" / scene / f"seed{seed}" / "codebook" / variant / f"{scale}.diagnostics.json"
            )
            per_seed.append(json.loads(path.read_text())["after"])
        out[scale] = {
            k: _cell([100.0 * d[k] for d in per_seed if d.get(k) is not None]) for k in CODEBOOK_STATS
        }
    return out


def markdown(rows: list[dict]) -> str:
    def fmt(c, signed=False):
        s = f"{c['mean']:+.1f}" if signed else f"{c['mean']:.1f}"
        return s + (f" ± {c['std']:.1f}" if c["std"] is not None else "")

    lines = ["| scales | variant | mIoU | Δ base (paired) | seeds ahead | localization |",
             "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        d = r.get("miou_vs_base")
        paired, ahead = (fmt(d, True), f"{d['seeds_ahead']}/{d['n']}") if d else ("–", "–")
        lines.append(f"| {r['scales']} | {r['variant']} | {fmt(r['miou'])} | {paired} | {ahead} | "
                     f"{fmt(r['localization'])} |")  # fmt: skip
    lines += ["", f"Seeds {', '.join(map(str, SEEDS))}; mean ± sample std over them (%).", ""]
    lines += ["| scales | variant | scale | tracks on one prototype | track majority share | prototype purity |",
              "|---|---|---|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        for scale, stats in r["codebook"].items():
            cells = " | ".join(fmt(stats[k]) for k in CODEBOOK_STATS)
            lines.append(f"| {r['scales']} | {r['variant']} | {scale} | {cells} |")
    return "\n".join(lines) + "\n"


def main(workdir: str | None = None) -> dict:
    from ccl.config import load_config

    work = Path(workdir or tempfile.mkdtemp(prefix="ccl_bench_ablation_"))
    work.mkdir(parents=True, exist_ok=True)
    scene = next(iter(load_config(ROOT / "config.yaml")["scenes"]))
    load_before = os.getloadavg()
    wall = run_workflow(work)
    rows = summarise(work, scene)
    out = {
        "scene": scene, "seeds": list(SEEDS), "variants": list(VARIANTS), "scales": list(SCALES),
        "workdir": str(work), "workflow_wall_s": round(wall, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "rows": rows,
    }  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    md = markdown(rows)
    OUT.with_suffix(".md").write_text(md)
    print(md)
    return out


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
