# Export a synthetic scene in a benchmark's release layout (ccl.synthetic.export_layout).
from ccl.runlog import script_logging

with script_logging(snakemake):  # noqa: F821 (snakemake is injected): log, threads, progress
    from ccl.synthetic import export_layout

    export_layout(
        snakemake.input.scene_dir,  # noqa: F821
        snakemake.output.export_root,  # noqa: F821
        layout=snakemake.params.layout,  # noqa: F821
        name=snakemake.params.name,  # noqa: F821
    )
