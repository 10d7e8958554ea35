# Track labels for every mask of one scale (ccl.tracks.track_masks) → tracks/{scale}.h5.
from ccl.runlog import script_logging

with script_logging(snakemake) as log:  # the job's log, threads and progress
    import functools

    from ccl.config import config_where, section
    from ccl.scene import SceneLoadConfig, load_image, load_scene_from_manifest
    from ccl.tracks import TracksConfig, track_masks

    cfg = section(TracksConfig, snakemake.params.tracks, where=config_where("tracks"))
    scene_cfg = section(SceneLoadConfig, snakemake.params.scene_load, where=config_where("scene_load"))
    scene = load_scene_from_manifest(snakemake.input.manifest, cfg=scene_cfg)
    if cfg.backend != "sim":  # the model's estimated peak, in the log before any of it is built (ccl.memory)
        from ccl.memory import job_memory_line

        log.info(job_memory_line("tracks", snakemake.params.tracks, snakemake.params.device, scene.cameras))
    track_masks(
        scene,
        snakemake.input.masks,
        cfg=cfg,
        out_path=snakemake.output.tracks,
        device=snakemake.params.device,
        seed=snakemake.params.seed,
        load_image=functools.partial(load_image, cfg=scene_cfg, cache_dir=snakemake.params.cache_dir),
        manifest=snakemake.input.manifest,
    )
