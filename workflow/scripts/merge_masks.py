# Merge raw.h5's levels into one non-overlapping scale (ccl.masks.merge_masks) → {scale}.h5.
from ccl.runlog import script_logging

with script_logging(snakemake):  # noqa: F821 (snakemake is injected): log, threads, progress
    from ccl.config import section
    from ccl.masks import MasksConfig, merge_masks

    cfg = section(MasksConfig, snakemake.params.masks, where="config.yaml: masks")  # noqa: F821
    merge_masks(
        snakemake.input.raw,  # noqa: F821
        scale=snakemake.wildcards.scale,  # noqa: F821
        cfg=cfg,
        out_path=snakemake.output.masks,  # noqa: F821
    )
