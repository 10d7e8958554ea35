"""The codebook ablation (the paper's Tables 2 and 5) on the synthetic default scene, over three seeds.

The workflow runs once in a scratch folder with the default config plus `variants: [base, pull, push,
full]`, `scales: [sp, wp, all]` and `seeds: [0, 1, 2]` (preprocessing shared, a codebook, language
field and evaluation per seed), through Snakemake, as a user runs it. From its queries.csv files and
codebook diagnostics it reports, per scale set (sp+wp, all) and variant: mIoU and localization as mean
± std over the seeds, the paired difference to `base` seed by seed (mean ± std, and how many seeds it
is positive on), and the codebook's own view of the tracks (share of tracks on one prototype, track
majority share, prototype purity, after training). Writes bench/out/ablation.json and ablation.md.

Run: python -m bench.ablation [WORKDIR] [--reuse]   (a rerun in the same WORKDIR reuses what is up to
date; --reuse also what code or setting defaults changed since would rerun)

`--case NAME` runs the same ablation on a hard case of the synthetic scene instead, configs/hard_NAME.yaml
added after config.yaml (occluders, blur, highlights, all: crop-driven simulated features,
docs/features_sim.md), without the probes, and writes bench/out/ablation_NAME.json and .md.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "out" / "ablation.json"
CASES = ("occluders", "blur", "highlights", "all")  # configs/hard_{case}.yaml
SEEDS = (0, 1, 2)
VARIANTS = ("base", "pull", "push", "full")
SCALES = ("sp", "wp", "all")
CODEBOOK_STATS = ("single_prototype_track_fraction", "track_majority_share", "prototype_purity")
# Probes of why pull does or does not beat base: `pull` retrained, on the same scene, masks and features
# and colour fields (a copy of the main run's folder), with one thing changed, paired with the main run's
# `base` (which uses no track labels and no pull weight, so the change leaves it as it is).
# Each probe: its settings and the rule they change, rerun by force with only files' times deciding the
# rest (`--rerun-triggers mtime`), so that a setting default added since the main run (a new schema key)
# does not rerun every stage of the copy.
PROBES = {
    "tracks without drift or identity swaps": (
        ["tracks={sim_drift_rate: 0.0, sim_swap_rate: 0.0}"],
        "track_masks",
    ),
    "lambda_pull 1.0 (default 0.25)": (["codebook={n_prototypes: 16, lambda_pull: 1.0}"], "train_codebook"),
}


def run_workflow(
    work: Path,
    *,
    variants=VARIANTS,
    scales=SCALES,
    extra: tuple[str, ...] = (),
    options: tuple[str, ...] = (),
    case: str | None = None,
) -> float:
    """The ablation's whole DAG in `work` (default config.yaml, then configs/hard_{case}.yaml if a
    `case`, + the ablation's keys + `extra` settings, Snakemake `options`); wall seconds."""
    shutil.copy(ROOT / "config.yaml", work / "config.yaml")
    configs = [str(work / "config.yaml")]
    if case is not None:
        shutil.copy(ROOT / "configs" / f"hard_{case}.yaml", work / f"hard_{case}.yaml")
        configs.append(str(work / f"hard_{case}.yaml"))
    settings = [f"variants=[{','.join(variants)}]", f"scales=[{','.join(scales)}]",
                f"seeds=[{','.join(map(str, SEEDS))}]", *extra]  # fmt: skip
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
           "--configfile", *configs, "--cores", str(os.cpu_count() or 1), *options,
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


def codebook_figures(work: Path, scene: str, variant: str, scales: list[str], seeds=SEEDS) -> dict:
    """Per scale, over the seeds: each CODEBOOK_STATS figure after training (%), the prototypes in use,
    tracks per prototype in use, and `nearest_prototype_cosine`, the mean over prototypes in use of the
    cosine to the nearest other one (how far the prototypes have been drawn together)."""
    import numpy as np

    from ccl.io.codebook_h5 import read_codebook

    names = (*CODEBOOK_STATS, "prototypes_in_use", "tracks_per_prototype", "nearest_prototype_cosine")
    out = {}
    for scale in scales:
        stats: dict[str, list[float]] = {k: [] for k in names}
        for seed in seeds:
            folder = work / "results" / scene / f"seed{seed}" / "codebook" / variant
            diag = json.loads((folder / f"{scale}.diagnostics.json").read_text())
            after = diag["after"]
            for k in CODEBOOK_STATS:
                if after.get(k) is not None:
                    stats[k].append(100.0 * after[k])
            stats["prototypes_in_use"].append(float(after["prototypes_in_use"]))
            stats["tracks_per_prototype"].append(diag["supervision"]["tracks"] / after["prototypes_in_use"])
            book = read_codebook(folder / f"{scale}.h5")
            used = np.unique(np.concatenate([np.asarray(v) for v in book.prototype_index.values()]))
            t = book.prototypes[used[used >= 0]]
            if len(t) < 2:  # one prototype left: the codebook has collapsed, no nearest other one
                continue
            cos = t @ t.T
            np.fill_diagonal(cos, -np.inf)
            stats["nearest_prototype_cosine"].append(float(cos.max(axis=1).mean()))
        out[scale] = {k: _cell(v) for k, v in stats.items() if v}
    return out


def probe(work: Path, scene: str, name: str, settings: list[str], rule: str, *, reuse: bool = False) -> dict:
    """PROBES[name]: pull on sp+wp retrained in a copy of the main run with `settings`, against base."""
    from ccl.eval.tables import find_query_csvs, per_run, read_query_csvs

    slug = "_".join(re.findall(r"[a-z0-9]+", name.lower()))
    folder = work.parent / f"{work.name}_probe_{slug}"
    if not folder.exists():
        shutil.copytree(work, folder, symlinks=True)  # mtimes and Snakemake's records kept: only pull reruns
    wall = 0.0
    if not reuse:
        wall = run_workflow(folder, variants=("pull",), scales=("sp", "wp"), extra=tuple(settings),
                            options=("--rerun-triggers", "mtime", "--forcerun", rule))  # fmt: skip
    main = per_run(read_query_csvs(find_query_csvs(work / "results")))
    probed = per_run(read_query_csvs(find_query_csvs(folder / "results")))

    def pick(runs, variant):
        return runs[(runs["scene"] == scene) & (runs["variant"] == variant) & (runs["scales"] == "sp+wp")]

    base, pull = pick(main, "base").set_index("seed"), pick(probed, "pull").set_index("seed")
    paired = [float(pull.loc[s, "miou"] - base.loc[s, "miou"]) for s in SEEDS]
    return {
        "probe": name, "settings": settings, "workdir": str(folder), "workflow_wall_s": round(wall, 1),
        "pull_miou": _cell([float(pull.loc[s, "miou"]) for s in SEEDS]),
        "pull_vs_base": {**_cell(paired), "seeds_ahead": sum(d > 0 for d in paired)},
        "codebook": codebook_figures(folder, scene, "pull", ["sp", "wp"]),
    }  # fmt: skip


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
    lines += ["| scales | variant | scale | tracks on one prototype | track majority share | prototype purity "
              "| prototypes in use | tracks per prototype | nearest-prototype cosine |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        for scale, stats in r["codebook"].items():
            cells = " | ".join(fmt(stats[k]) for k in CODEBOOK_STATS)
            cells += f" | {fmt(stats['prototypes_in_use'])} | {fmt(stats['tracks_per_prototype'])}"
            c = stats["nearest_prototype_cosine"]
            cells += f" | {c['mean']:.3f}" + (f" ± {c['std']:.3f}" if c["std"] is not None else "")
            lines.append(f"| {r['scales']} | {r['variant']} | {scale} | {cells} |")
    return "\n".join(lines) + "\n"


def probes_markdown(probes: list[dict]) -> str:
    lines = ["", "| probe (pull, sp+wp) | mIoU | Δ base (paired) | seeds ahead | tracks on one prototype (sp / wp) "
             "| nearest-prototype cosine (sp / wp) |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for p in probes:
        m, d, cb = p["pull_miou"], p["pull_vs_base"], p["codebook"]
        one = " / ".join(f"{cb[s]['single_prototype_track_fraction']['mean']:.1f}" for s in ("sp", "wp"))
        near = " / ".join(
            f"{cb[s]['nearest_prototype_cosine']['mean']:.3f}" if "nearest_prototype_cosine" in cb[s] else "–"
            for s in ("sp", "wp")
        )
        lines.append(f"| {p['probe']} | {m['mean']:.1f} ± {m['std']:.1f} | {d['mean']:+.1f} ± {d['std']:.1f} | "
                     f"{d['seeds_ahead']}/{d['n']} | {one} | {near} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(workdir: str | None = None, *, reuse: bool = False, case: str | None = None) -> dict:
    """`reuse`: take the main run in `workdir` as it is, making only missing files (Snakemake's
    `--rerun-triggers mtime`), so that code or schema defaults changed since do not rerun it, and the
    probes' folders as they are. `case`: a hard case (CASES), run without the probes."""
    import yaml

    from ccl.config import load_config

    if case is not None and case not in CASES:
        raise SystemExit(f"--case {case!r}: expected one of {CASES} (configs/hard_<case>.yaml)")
    work = Path(workdir or tempfile.mkdtemp(prefix=f"ccl_bench_ablation_{case or 'default'}_"))
    work.mkdir(parents=True, exist_ok=True)
    scene = next(iter(load_config(ROOT / "config.yaml")["scenes"]))
    load_before = os.getloadavg()
    wall = run_workflow(work, options=("--rerun-triggers", "mtime") if reuse else (), case=case)
    rows = summarise(work, scene)
    probes = [] if case is not None else [
        probe(work, scene, name, settings, rule, reuse=reuse) for name, (settings, rule) in PROBES.items()
    ]  # fmt: skip
    out = {
        "scene": scene, "case": case,
        "case_config": None if case is None else yaml.safe_load((ROOT / "configs" / f"hard_{case}.yaml").read_text()),
        "seeds": list(SEEDS), "variants": list(VARIANTS), "scales": list(SCALES),
        "workdir": str(work), "workflow_wall_s": round(wall, 1), "main_run_reused": reuse,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "rows": rows,
        "probes": probes,
    }  # fmt: skip
    path = OUT if case is None else OUT.with_name(f"ablation_{case}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    md = markdown(rows) + (probes_markdown(probes) if probes else "")
    path.with_suffix(".md").write_text(md)
    print(md)
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.ablation", description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", default=None)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--case", choices=CASES, default=None)
    a = parser.parse_args()
    main(a.workdir, reuse=a.reuse, case=a.case)
