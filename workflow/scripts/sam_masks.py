# SAM's three mask levels for every image of a scene (ccl.masks.generate_masks) → raw.h5.
from ccl.runlog import script_logging

with script_logging(snakemake) as log:  # the job's log, threads and progress
    import functools

    from ccl.config import config_where, section
    from ccl.io.provenance import file_record
    from ccl.masks import MasksConfig, generate_masks
    from ccl.scene import SceneLoadConfig, load_image, load_scene_from_manifest

    cfg = section(MasksConfig, snakemake.params.masks, where=config_where("masks"))
    scene_cfg = section(SceneLoadConfig, snakemake.params.scene_load, where=config_where("scene_load"))
    scene = load_scene_from_manifest(snakemake.input.manifest, cfg=scene_cfg)
    if cfg.backend != "sim":  # the model's estimated peak, in the log before any of it is built (ccl.memory)
        from ccl.memory import job_memory_line

        log.info(job_memory_line("masks", snakemake.params.masks, snakemake.params.device, scene.cameras))
    generate_masks(
        scene,
        cfg=cfg,
        out_path=snakemake.output.raw,
        device=snakemake.params.device,
        seed=snakemake.params.seed,
        load_image=functools.partial(load_image, cfg=scene_cfg, cache_dir=snakemake.params.cache_dir),
        inputs={"manifest": file_record(snakemake.input.manifest)},
    )
