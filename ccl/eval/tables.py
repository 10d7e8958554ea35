"""Result tables, rebuilt from the per-query CSVs and Snakemake's benchmark files, nothing else.

Every number is a mean over (frame, query) pairs of one scene, run (seed), variant, relevance mode and
scale set; across seeds a cell is mean ± sample standard deviation (ddof = 1) of the per-seed numbers,
and the `mean` column is the mean over scenes taken per seed first (a seed missing a scene has none).
Values are percentages. Each value column `<c>` has `<c>_std` (empty with one seed) and `<c>_n`, the
number of seeds behind the cell; `seeds` lists a row's seeds and `seeds_missing` the cells that lack some
of them ("teatime: 1, 2"), which the Markdown marks `(n=k)` and the log warns of, so a rebuild over CSVs
of different seed sets says where. Rows of a variant (table2, localization) have `vs_base`: the paired
difference to `base` (same seed, same mode), mean ± std over the seeds both have (`vs_base_n`).

Tables (each `<name>.csv`, numeric, and `<name>.md`):
- table1        LERF-OVS mIoU per scene and mean, variant `full` (every variant if there is no `full`)
- table1_3dovs  3D-OVS mIoU per scene and mean; the `room` scene is reported apart from the mean
- table2        ablation: mIoU per variant (base, pull, push, full) per scene and mean
- table5        the single merged scale `all` against the two scales, variant `full` (if `all` was run)
- localization  LERF-OVS localization accuracy per variant per scene and mean
- efficiency    per scene: preprocessing, training and evaluation time (s) and peak memory (MB) from
                benchmarks/<rule>/<scene>….tsv (Snakemake's `s` and `max_rss` columns); training and
                evaluation are one seed's run (per-seed sums, averaged over `n_seeds`)
and `efficiency_rules.csv`, one row per benchmark file. Which of them exist is decided in one place,
`protocol_table_names`: rule tables lists `table_names(protocols, scales)` of its config as outputs,
and `build_tables` writes exactly the tables of the protocols and scales in its CSVs.

Degenerate supervision (a codebook whose variant's pair terms had no pairs to act on and were off,
ccl.codebook.supervision) reaches the tables through queries.csv's `supervision_degenerate_scales`, so
they stay rebuildable from the CSVs alone. Every table with a `variant` row says it: the CSV in the
column `supervision_degenerate` beside the row's keys ("ramen: sp; teatime: sp+wp", the scenes and
scales; empty when none), the Markdown with `full†` and a footnote naming them, so that a variant
equal to another there is not read as a finding.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ccl.io import atomic_write_text

log = logging.getLogger(__name__)

VARIANT_ORDER = ("base", "pull", "push", "full")
ROOM_SCENE = "room"  # 3D-OVS: reported apart (the paper's convention)
KEYS = ["scene", "protocol", "variant", "mode", "scales", "seed"]
# Evaluated protocols (a scene's `protocol` other than `none`) → the suffix of their tables' names.
PROTOCOL_SUFFIX = {"lerf_ovs": "", "3dovs": "_3dovs"}
MERGED_SCALE = "all"  # the single merged scale: Table 5 compares it with the separate scales
EFFICIENCY_RULES = "efficiency_rules"  # a CSV without a Markdown twin: one row per benchmark file
DEGENERATE_SCALES = "supervision_degenerate_scales"  # queries.csv's column (ccl.eval.run.QueryRow)
DEGENERATE_COLUMN = "supervision_degenerate"  # the tables' column: "scene: scales; …" of a table row
DEGENERATE_MARK = "†"  # after the variant in the Markdown, with a footnote
BASE_VARIANT = "base"  # the variant the ablation's paired differences are taken to
SEEDS_MISSING_COLUMN = "seeds_missing"  # "scene: seeds; …": seeds the row has that a cell lacks


def protocol_table_names(protocol: str, scales: Iterable[str]) -> list[str]:
    """The tables of the scenes evaluated with `protocol` on `scales`: table1, table2, table5 when `all`
    is a scale, and localization for LERF-OVS (3D-OVS has no boxes); each with its protocol's suffix."""
    if protocol not in PROTOCOL_SUFFIX:
        raise ValueError(
            f"evaluation protocol {protocol!r} has no tables: expected one of {sorted(PROTOCOL_SUFFIX)} "
            "(a scene with `protocol: none` is not evaluated)"
        )
    suffix = PROTOCOL_SUFFIX[protocol]
    names = [f"table1{suffix}", f"table2{suffix}"]
    names += [f"table5{suffix}"] if MERGED_SCALE in set(scales) else []
    return names + (["localization"] if protocol == "lerf_ovs" else [])


def table_names(protocols: Iterable[str], scales: Iterable[str]) -> list[str]:
    """The tables (each `<name>.csv` and `<name>.md`) of a run evaluating scenes of `protocols` (lerf_ovs,
    3dovs; repeats allowed) on the config's `scales`: rule tables's outputs."""
    scales = list(scales)
    return tables_of_protocols({p: scales for p in protocols})


def tables_of_protocols(scales_by_protocol: Mapping[str, Iterable[str]]) -> list[str]:
    """Every evaluated protocol's tables on its scales (in PROTOCOL_SUFFIX order), then efficiency."""
    for protocol in sorted(set(scales_by_protocol) - set(PROTOCOL_SUFFIX)):
        protocol_table_names(protocol, ())  # refused, naming it
    by_protocol = [
        protocol_table_names(p, scales_by_protocol[p]) for p in PROTOCOL_SUFFIX if p in scales_by_protocol
    ]
    return [name for names in by_protocol for name in names] + ["efficiency"]


def table_files(names: Iterable[str]) -> list[str]:
    """The files under results/tables/ of the tables `names`: `<name>.csv` and `<name>.md` each, and
    `efficiency_rules.csv`."""
    return [f"{n}.{ext}" for n in names for ext in ("csv", "md")] + [f"{EFFICIENCY_RULES}.csv"]


# Benchmark folders (= rule names) → the efficiency table's columns.
STAGE_OF_RULE = {
    "preprocessing": ("masks", "track", "features", "codebook"),  # sam_masks, merge_masks, clip_features, …
    "training": ("train",),  # train_rgb, train_language
    "evaluation": ("evaluate",),
}  # the scene's own files (synthetic_scene, scene_manifest) count in none of them


def _stage(rule: str) -> str | None:
    for stage, prefixes in STAGE_OF_RULE.items():
        if any(p in rule for p in prefixes):
            return stage
    return None


def read_query_csvs(paths: Iterable[str | os.PathLike]):
    """Concatenate queries.csv files into one DataFrame (refusing files without the contract's columns,
    or with a protocol that has no tables)."""
    import pandas as pd

    from ccl.eval.run import CSV_COLUMNS

    frames = []
    for p in paths:
        df = pd.read_csv(
            p, keep_default_na=True, dtype={"frame": str, "query": str, "scene": str, DEGENERATE_SCALES: str}
        )
        missing = [c for c in CSV_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(
                f"{p}: not a queries.csv of this ccl (missing columns {missing}); rerun rule evaluate"
            )
        unknown = sorted(set(df["protocol"].dropna().astype(str)) - set(PROTOCOL_SUFFIX))
        if unknown or df["protocol"].isna().any():
            raise ValueError(
                f"{p}: rows with protocol {unknown or ['(empty)']}, which no table reports: expected one of "
                f"{sorted(PROTOCOL_SUFFIX)}; rerun rule evaluate for that scene"
            )
        df[DEGENERATE_SCALES] = df[DEGENERATE_SCALES].fillna("")  # an empty cell: no degenerate scale
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=list(CSV_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def _joined_scales(values: Iterable[str]) -> str:
    """The scales named in "+"-joined `values`, each once, in order of appearance, "+"-joined."""
    return "+".join(dict.fromkeys(s for v in values for s in str(v).split("+") if s))


def per_run(df):
    """One row per (scene, protocol, variant, mode, scales, seed): mIoU and localization accuracy (%),
    and the scales of the set whose codebook had degenerate supervision (`degenerate_scales`)."""
    g = df.groupby(KEYS, sort=False, dropna=False)
    out = g.agg(
        miou=("iou", "mean"), loc=("loc_hit", "mean"), pairs=("iou", "size"),
        degenerate_scales=(DEGENERATE_SCALES, _joined_scales),
    ).reset_index()  # fmt: skip
    out["miou"] *= 100.0
    out["loc"] *= 100.0
    return out


def main_scale_set(runs):
    """Per scene the multi-scale set if there is one, else `all` (Tables 1, 2, localization)."""
    sets = runs.groupby("scene")["scales"].agg(lambda s: sorted(set(s), key=lambda x: (x == "all", x))[0])
    return runs[runs["scales"] == runs["scene"].map(sets)]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = [x for x in values if not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return float("nan"), float("nan")
    return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"))


def degenerate_note(runs, scenes: Sequence[str]) -> str:
    """Where the `runs` of one table row had degenerate supervision: "ramen: sp; teatime: sp+wp" (the
    scenes in `scenes` order, each with its scales over every seed); "" when nowhere."""
    parts = []
    for s in scenes:
        scales = _joined_scales(runs.loc[runs["scene"] == s, "degenerate_scales"])
        if scales:
            parts.append(f"{s}: {scales}")
    return "; ".join(parts)


def _seed_values(runs, metric: str) -> dict[int, float]:
    """seed -> `metric` of the one run each seed has among `runs` (NaNs dropped)."""
    return {int(k): float(v) for k, v in zip(runs["seed"], runs[metric], strict=True) if not math.isnan(v)}


def _seed_means(runs, metric: str, scenes: Sequence[str]) -> dict[int, float]:
    """seed -> mean of `metric` over `scenes`, for the seeds that have a value on every one of them."""
    sel = runs[runs["scene"].isin(scenes)]
    out = {}
    for seed, g in sel.groupby("seed"):
        vals = g[metric].dropna()
        if g.loc[vals.index, "scene"].nunique() == len(scenes):
            out[int(seed)] = float(vals.mean())
    return out


def _paired_differences(row_means: Mapping[int, float], base_means: Mapping[int, float]) -> list[float]:
    return [row_means[s] - base_means[s] for s in sorted(set(row_means) & set(base_means))]


def scene_table(
    runs, *, row_keys: Sequence[str], metric: str, scenes: Sequence[str], apart: Sequence[str] = ()
):
    """Wide table: rows by `row_keys`, DEGENERATE_COLUMN when `variant` is a key, a column per scene,
    `mean` over scenes not in `apart`, then `apart`, then `vs_base` when `base` is among the variants; each value
    column with its `_std` and `_n` (seeds), and the row's `seeds` and SEEDS_MISSING_COLUMN."""
    import pandas as pd

    rows = []
    mean_scenes = [s for s in scenes if s not in apart]
    by_variant = "variant" in row_keys
    # the paired difference to base where base is among the rows (table1's `full` alone has no base)
    paired_to_base = by_variant and bool((runs["variant"] == BASE_VARIANT).any()) if len(runs) else False
    # by the row's key tuple (groupby gives a bare value for a single key): per-seed means over scenes
    groups = [
        (key if isinstance(key, tuple) else (key,), sub) for key, sub in runs.groupby(row_keys, sort=False)
    ]
    seed_means = {key: _seed_means(sub, metric, mean_scenes) for key, sub in groups}
    variant_at = row_keys.index("variant") if paired_to_base else None
    for key, sub in groups:
        row = dict(zip(row_keys, key, strict=True))
        if by_variant:
            row[DEGENERATE_COLUMN] = degenerate_note(sub, scenes)
        row_seeds = sorted(int(x) for x in sub["seed"].unique())
        missing = []
        for s in scenes:
            per_seed = _seed_values(sub[sub["scene"] == s], metric)
            row[s], row[f"{s}_std"] = _mean_std(list(per_seed.values()))
            row[f"{s}_n"] = len(per_seed)
            lacking = [x for x in row_seeds if x not in per_seed]
            if lacking:
                missing.append(f"{s}: {', '.join(map(str, lacking))}")
        means = seed_means[key]
        row["mean"], row["mean_std"] = _mean_std(list(means.values()))
        row["mean_n"] = len(means)
        if paired_to_base:
            # the `base` row with the same other keys (mode, scales), if it was run
            base_key = key[:variant_at] + (BASE_VARIANT,) + key[variant_at + 1 :]
            paired = row["variant"] != BASE_VARIANT and base_key in seed_means
            diffs = _paired_differences(means, seed_means[base_key]) if paired else []
            row["vs_base"], row["vs_base_std"] = _mean_std(diffs)
            row["vs_base_n"] = len(diffs)
        row["seeds"] = " ".join(map(str, row_seeds))
        row[SEEDS_MISSING_COLUMN] = "; ".join(missing)
        rows.append(row)
    marked = [DEGENERATE_COLUMN] if by_variant else []
    value_cols = (
        list(mean_scenes)
        + ["mean"]
        + [s for s in scenes if s in apart]
        + (["vs_base"] if paired_to_base else [])
    )
    cols = list(row_keys) + marked + value_cols
    tail = [f"{c}_std" for c in value_cols] + [f"{c}_n" for c in value_cols] + ["seeds", SEEDS_MISSING_COLUMN]
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=cols + tail)
    for r in table.itertuples():
        note = getattr(r, SEEDS_MISSING_COLUMN)
        if note:
            log.warning(
                "%s row %s: cells with fewer seeds than the row's (%s): %s", metric,
                ", ".join(str(getattr(r, k)) for k in row_keys), r.seeds, note,
            )  # fmt: skip
    return table[cols + tail]


PAIRED_COLUMN_TITLE = {"vs_base": "Δ base"}  # a Markdown header of a paired-difference column


def to_markdown(table, *, key_cols: Sequence[str], title: str = "", digits: int = 1) -> str:
    """Markdown of a wide table: `mean ± std` cells where a `<col>_std` is set, `(n=k)` after a cell with
    fewer seeds than the table's most, `Δ base` signed; a row with a DEGENERATE_COLUMN note has
    DEGENERATE_MARK after its variant and a footnote naming where; a last line names the seeds."""
    skip = {"seeds", SEEDS_MISSING_COLUMN, DEGENERATE_COLUMN}
    value_cols = [
        c for c in table.columns
        if c not in key_cols and c not in skip and not c.endswith(("_std", "_n"))
    ]  # fmt: skip
    # seeds behind each cell of the value columns (a paired column counts pairs, not seeds: left out)
    counts = [int(n) for c in value_cols if c not in PAIRED_COLUMN_TITLE and f"{c}_n" in table.columns
              for n in table[f"{c}_n"].dropna()]  # fmt: skip
    most = max(counts, default=0)
    head = list(key_cols) + [PAIRED_COLUMN_TITLE.get(c, c) for c in value_cols]
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * len(key_cols) + ["---:"] * len(value_cols)) + "|")
    footnotes = []
    for _, r in table.iterrows():
        cells = [str(r[c]) for c in key_cols]
        note = r.get(DEGENERATE_COLUMN)
        if isinstance(note, str) and note:
            cells[list(key_cols).index("variant")] += DEGENERATE_MARK
            row = ", ".join(f"{c} {r[c]}" for c in key_cols)
            footnotes.append(
                f"{DEGENERATE_MARK} {row}: degenerate track supervision in {note} (scene: scales). The pair "
                f"terms this variant asks for had no pairs to act on there and were off, so its numbers there "
                f"are those of a variant without them, not an effect of the terms; why: `supervision` in "
                f"results/{{scene}}/seed{{N}}/codebook/{r['variant']}/{{scale}}.diagnostics.json."
            )
        for c in value_cols:
            v = r[c]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                cells.append("–")
                continue
            signed = "+" if c in PAIRED_COLUMN_TITLE else ""
            cell = f"{v:{signed}.{digits}f}" if isinstance(v, float | np.floating) else str(v)
            sd = r.get(f"{c}_std")
            if sd is not None and isinstance(sd, float | np.floating) and not math.isnan(sd):
                cell += f" ± {sd:.{digits}f}"
            n = r.get(f"{c}_n")
            if (
                c not in PAIRED_COLUMN_TITLE
                and n is not None
                and not (isinstance(n, float) and math.isnan(n))
                and int(n) < most
            ):
                cell += f" (n={int(n)})"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    for footnote in footnotes:  # a paragraph each
        lines += ["", footnote]
    if "seeds" in table.columns and len(table):
        seeds = sorted({int(x) for joined in table["seeds"].astype(str) for x in joined.split()})
        line = f"Seeds: {', '.join(map(str, seeds))}"
        line += " (mean ± sample std over them)." if len(seeds) > 1 else "."
        if "vs_base" in value_cols:
            line += " Δ base: the paired difference to `base`, seed by seed, mean ± std."
        if any(n < most for n in counts):
            line += f" A cell with fewer than {most} seeds shows (n=k); `{SEEDS_MISSING_COLUMN}` in the CSV names them."
        lines += ["", line]
    return "\n".join(lines) + "\n"


def _write(out_dir: Path, name: str, table, *, key_cols: Sequence[str], title: str) -> list[Path]:
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    atomic_write_text(csv_path, table.to_csv(index=False, float_format="%.4f"))
    atomic_write_text(md_path, to_markdown(table, key_cols=key_cols, title=title))
    return [csv_path, md_path]


def _variant_sorted(runs):
    order = {v: i for i, v in enumerate(VARIANT_ORDER)}
    return runs.sort_values("variant", key=lambda s: s.map(lambda v: order.get(v, len(order))), kind="stable")


def read_benchmarks(bench_dir: str | os.PathLike, scenes: Sequence[str]):
    """Every benchmarks/<rule>/<file>.tsv whose name starts with a known scene: rule, scene, seed (of a
    per-seed job's `<scene>_seed<N>…` file; empty for a shared stage's), s, max_rss."""
    import pandas as pd

    rows = []
    bench_dir = Path(bench_dir)
    by_length = sorted(scenes, key=len, reverse=True)  # "waldo_kitchen" before "waldo"
    for tsv in sorted(bench_dir.glob("*/*.tsv")):
        stem = tsv.stem
        scene = next((s for s in by_length if stem == s or stem.startswith(s + "_")), None)
        if scene is None:
            continue
        try:
            b = pd.read_csv(tsv, sep="\t")
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            log.warning("%s: unreadable benchmark file (%s); skipped", tsv, e)
            continue
        if "s" not in b.columns:
            log.warning("%s: no 's' column (not a Snakemake benchmark file); skipped", tsv)
            continue
        rss = pd.to_numeric(b.get("max_rss", pd.Series([np.nan])), errors="coerce")
        seed = _BENCHMARK_SEED.match(stem[len(scene) :])
        rows.append(
            {
                "rule": tsv.parent.name, "scene": scene, "seed": int(seed.group(1)) if seed else np.nan,
                "file": str(tsv), "s": float(pd.to_numeric(b["s"], errors="coerce").mean()),
                "max_rss_mb": float(rss.max()),
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=["rule", "scene", "seed", "file", "s", "max_rss_mb"])


_BENCHMARK_SEED = re.compile(r"_seed(\d+)(?:_|$)")  # after the scene: the rules' `{scene}_seed{seed}…` names


def efficiency_table(bench, scenes: Sequence[str]):
    import pandas as pd

    rows = []
    for s in scenes:
        sub = bench[bench["scene"] == s]
        if sub.empty:
            continue
        stages = sub["rule"].map(_stage)
        row = {"scene": s}
        for stage in STAGE_OF_RULE:
            sel = sub[stages == stage]
            shared, per_seed = sel[sel["seed"].isna()], sel[sel["seed"].notna()]
            # a per-seed stage's time is one run's: its jobs summed per seed, then averaged over seeds
            seed_sums = per_seed.groupby("seed")["s"].sum()
            total = float(shared["s"].sum()) + (float(seed_sums.mean()) if len(seed_sums) else 0.0)
            row[f"{stage}_s"] = total if len(sel) else float("nan")
        row["peak_rss_mb"] = float(sub["max_rss_mb"].max())
        row["n_seeds"] = int(sub["seed"].nunique())
        rows.append(row)
    cols = ["scene"] + [f"{st}_s" for st in STAGE_OF_RULE] + ["peak_rss_mb", "n_seeds"]
    return pd.DataFrame(rows, columns=cols)


def build_tables(
    query_csvs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    benchmarks: str | os.PathLike | None = None,
) -> list[Path]:
    """Write every table to `out_dir` from the given queries.csv files and the benchmark folder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in query_csvs]
    df = read_query_csvs(paths)
    if df.empty:
        raise ValueError(f"no evaluation rows in {len(paths)} queries.csv file(s); run rule evaluate first")
    runs = per_run(df)
    # The tables of the protocols and scales the CSVs were evaluated with: for the CSVs of one config,
    # `table_names` of it, which rule tables lists (every scene of a run is evaluated on its scales).
    scales_by_protocol = {
        protocol: {s for joined in sub["scales"].astype(str) for s in joined.split("+")}
        for protocol, sub in runs.groupby("protocol", sort=False)
    }
    names = tables_of_protocols(scales_by_protocol)
    written: list[Path] = []
    main = _variant_sorted(main_scale_set(runs))
    keys = ["variant", "mode"]

    def full_only(r):
        return r[r["variant"] == "full"] if (r["variant"] == "full").any() else r

    for protocol, suffix in PROTOCOL_SUFFIX.items():
        if f"table1{suffix}" not in names:
            continue
        scenes = list(dict.fromkeys(runs.loc[runs["protocol"] == protocol, "scene"]))
        apart = [ROOM_SCENE] if protocol == "3dovs" else []
        sel = main[main["protocol"] == protocol]
        t1 = scene_table(full_only(sel), row_keys=keys, metric="miou", scenes=scenes, apart=apart)
        written += _write(out_dir, f"table1{suffix}", t1, key_cols=keys, title=f"mIoU (%), {protocol}")
        t2 = scene_table(sel, row_keys=keys, metric="miou", scenes=scenes, apart=apart)
        written += _write(
            out_dir,
            f"table2{suffix}",
            t2,
            key_cols=keys,
            title=f"Ablation: mIoU (%) per codebook variant, {protocol}",
        )
        if f"table5{suffix}" in names:
            allp = runs[runs["protocol"] == protocol]
            t5 = scene_table(
                full_only(allp).sort_values("scales", key=lambda s: s == MERGED_SCALE, kind="stable"),
                row_keys=["scales", "variant", "mode"], metric="miou", scenes=scenes, apart=apart,
            )  # fmt: skip
            written += _write(out_dir, f"table5{suffix}", t5, key_cols=["scales", "variant", "mode"],
                              title=f"Single merged scale vs two scales: mIoU (%), {protocol}")  # fmt: skip
        if protocol == "lerf_ovs" and "localization" in names:
            tl = scene_table(sel, row_keys=keys, metric="loc", scenes=scenes)
            written += _write(
                out_dir, "localization", tl, key_cols=keys, title="Localization accuracy (%), LERF-OVS"
            )

    scenes_all = list(dict.fromkeys(runs["scene"]))
    if benchmarks is not None and Path(benchmarks).is_dir():
        bench = read_benchmarks(benchmarks, scenes_all)
    else:
        log.warning("no benchmarks folder %s: the efficiency table is empty", benchmarks)
        bench = read_benchmarks(out_dir / "__none__", scenes_all)
    eff = efficiency_table(bench, scenes_all)
    atomic_write_text(out_dir / "efficiency.csv", eff.to_csv(index=False, float_format="%.2f"))
    atomic_write_text(out_dir / f"{EFFICIENCY_RULES}.csv", bench.to_csv(index=False, float_format="%.2f"))
    md = to_markdown(eff, key_cols=["scene"], title="Efficiency: wall time (s) and peak memory (MB)")
    atomic_write_text(out_dir / "efficiency.md", md)
    written += [out_dir / "efficiency.csv", out_dir / f"{EFFICIENCY_RULES}.csv", out_dir / "efficiency.md"]
    assert sorted(p.name for p in written) == sorted(table_files(names)), (names, written)
    log.info("tables: %s", ", ".join(p.name for p in written))
    return written


def find_query_csvs(results: str | os.PathLike) -> list[Path]:
    """results/*/seed*/eval/*/queries.csv (ccl.results_tree), sorted."""
    return sorted(Path(results).glob("*/seed*/eval/*/queries.csv"))
