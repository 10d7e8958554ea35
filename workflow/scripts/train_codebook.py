# Prototypes and each mask's prototype index for one scene, scale and loss variant
# (ccl.codebook.fit_codebook) → codebook/{variant}/{scale}.h5 + diagnostics JSON + loss PNG.
from ccl.runlog import script_logging

with script_logging(snakemake):  # the job's log, threads and progress
    from ccl.codebook import CodebookConfig, fit_codebook
    from ccl.config import config_where, section

    cfg = section(CodebookConfig, snakemake.params.codebook, where=config_where("codebook"))
    fit_codebook(
        snakemake.input.features,
        snakemake.input.tracks,
        variant=snakemake.wildcards.variant,
        cfg=cfg,
        out_path=snakemake.output.codebook,
        diagnostics_out=snakemake.output.diagnostics,
        loss_plot_out=snakemake.output.loss_plot,
        manifest_path=snakemake.input.manifest,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
    )
