# Prototypes and each mask's prototype index for one scene, scale and loss variant
# (ccl.codebook.fit_codebook) → codebook/{variant}/{scale}.h5 + diagnostics JSON + loss PNG.
from ccl.runlog import script_logging

with script_logging(snakemake):  # noqa: F821 (snakemake is injected): log, threads, progress
    from ccl.codebook import CodebookConfig, fit_codebook
    from ccl.config import section

    cfg = section(CodebookConfig, snakemake.params.codebook, where="config.yaml: codebook")  # noqa: F821
    fit_codebook(
        snakemake.input.features,  # noqa: F821
        snakemake.input.tracks,  # noqa: F821
        variant=snakemake.wildcards.variant,  # noqa: F821
        cfg=cfg,
        out_path=snakemake.output.codebook,  # noqa: F821
        diagnostics_out=snakemake.output.diagnostics,  # noqa: F821
        loss_plot_out=snakemake.output.loss_plot,  # noqa: F821
        manifest_path=snakemake.input.manifest,  # noqa: F821
        seed=snakemake.params.seed,  # noqa: F821
        device=snakemake.params.device,  # noqa: F821
    )
