# Rebuild results/tables/ from every queries.csv and the benchmark files (ccl.eval.build_tables).
from pathlib import Path

from ccl.runlog import script_logging

with script_logging(snakemake):  # the job's log, threads and progress
    from ccl.eval import build_tables

    build_tables(
        snakemake.input.queries,
        Path(snakemake.output.efficiency).parent,
        benchmarks=snakemake.params.benchmarks,
    )
