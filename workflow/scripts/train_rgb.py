# The colour field of one scene (ccl.splat.train_rgb) → gaussians/rgb.safetensors + rgb.metrics.json.
from ccl.runlog import script_logging

with script_logging(snakemake):  # the job's log, threads and progress
    from ccl.config import config_where, section
    from ccl.scene import SceneLoadConfig
    from ccl.splat import RgbConfig, train_rgb

    params = snakemake.params
    train_rgb(
        snakemake.output.field,
        manifest=snakemake.input.manifest,
        scene_load=section(SceneLoadConfig, params.scene_load, where=config_where("scene_load")),
        cfg=section(RgbConfig, params.rgb, where=config_where("rgb")),
        seed=params.seed,
        device=params.device,
        metrics_path=snakemake.output.metrics,
        cache_dir=params.cache_dir,
    )
