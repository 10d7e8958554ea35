# Rebuild results/tables/ from every queries.csv and the benchmark files (ccl.eval.build_tables).
from pathlib import Path

from ccl.runlog import script_logging

with script_logging(snakemake):  # noqa: F821 (snakemake is injected): log, threads, progress
    from ccl.eval import build_tables

    build_tables(
        snakemake.input.queries,  # noqa: F821
        Path(snakemake.output.efficiency).parent,  # noqa: F821
        benchmarks=snakemake.params.benchmarks,  # noqa: F821
    )
