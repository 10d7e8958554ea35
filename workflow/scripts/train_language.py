# The language field of one scene, codebook variant and scale (ccl.splat.train_language)
# → gaussians/{variant}/{scale}.safetensors + .metrics.json.
from ccl.runlog import script_logging

with script_logging(snakemake):  # the job's log, threads and progress
    from ccl.config import config_where, section
    from ccl.scene import SceneLoadConfig
    from ccl.splat import LanguageConfig, RgbConfig, train_language

    params = snakemake.params
    inputs = snakemake.input
    train_language(
        snakemake.output.field,
        manifest=inputs.manifest,
        scene_load=section(SceneLoadConfig, params.scene_load, where=config_where("scene_load")),
        masks_path=inputs.masks,
        codebook_path=inputs.codebook,
        rgb_path=inputs.rgb or None,
        cfg=section(LanguageConfig, params.language, where=config_where("language")),
        rgb_cfg=section(RgbConfig, params.rgb, where=config_where("rgb")),
        seed=params.seed,
        device=params.device,
        scale=snakemake.wildcards.scale,
        variant=snakemake.wildcards.variant,
        metrics_path=snakemake.output.metrics,
        cache_dir=params.cache_dir,
    )
