"""`ccl tables RESULTS`: what the workflow's rule tables runs: rebuild results/tables/."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    t = sub.add_parser("tables", help="rebuild the result tables from every queries.csv and benchmark file")
    t.add_argument("results", help="results folder (holds <scene>/seed<N>/eval/<variant>/queries.csv)")
    t.add_argument("-o", "--out", help="output folder (default: RESULTS/tables)")
    t.add_argument("--benchmarks", help="Snakemake benchmark folder (default: RESULTS/../benchmarks)")
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ccl.eval import build_tables, find_query_csvs

    results = Path(args.results)
    csvs = find_query_csvs(results)
    if not csvs:
        raise FileNotFoundError(
            f"{results}: no <scene>/seed<N>/eval/<variant>/queries.csv; run the workflow (rule evaluate) first"
        )
    out = Path(args.out) if args.out else results / "tables"
    bench = Path(args.benchmarks) if args.benchmarks else results.absolute().parent / "benchmarks"
    written = build_tables(csvs, out, benchmarks=bench)
    print(f"{len(csvs)} queries.csv -> {len(written)} files in {out}")
    for p in written:
        if p.suffix == ".md":
            print()
            print(p.read_text().rstrip())
    return 0
