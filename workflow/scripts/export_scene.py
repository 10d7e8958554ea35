# Export a synthetic scene in a benchmark's release layout (ccl.synthetic.export_layout).
from ccl.runlog import script_logging

with script_logging(snakemake):  # the job's log, threads and progress
    from ccl.synthetic import export_layout

    export_layout(
        snakemake.input.scene_dir,
        snakemake.output.export_root,
        layout=snakemake.params.layout,
        name=snakemake.params.name,
    )
