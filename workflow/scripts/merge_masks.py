# Merge raw.h5's levels into one non-overlapping scale (ccl.masks.merge_masks) → {scale}.h5.
from ccl.runlog import script_logging

with script_logging(snakemake):  # the job's log, threads and progress
    from ccl.config import config_where, section
    from ccl.masks import MasksConfig, merge_masks

    cfg = section(MasksConfig, snakemake.params.masks, where=config_where("masks"))
    merge_masks(
        snakemake.input.raw,
        scale=snakemake.wildcards.scale,
        cfg=cfg,
        out_path=snakemake.output.masks,
        manifest=snakemake.input.manifest,
    )
