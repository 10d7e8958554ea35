# SAM's three mask levels for every image of a scene (ccl.masks.generate_masks) → raw.h5.
from ccl.runlog import script_logging

with script_logging(snakemake):  # noqa: F821 (snakemake is injected): log, threads, progress
    import functools

    from ccl.config import section
    from ccl.masks import MasksConfig, generate_masks
    from ccl.scene import SceneLoadConfig, load_image, load_scene_from_manifest

    cfg = section(MasksConfig, snakemake.params.masks, where="config.yaml: masks")  # noqa: F821
    scene_cfg = section(SceneLoadConfig, snakemake.params.scene_load, where="config.yaml: scene_load")  # noqa: F821
    scene = load_scene_from_manifest(snakemake.input.manifest, cfg=scene_cfg)  # noqa: F821
    generate_masks(
        scene,
        cfg=cfg,
        out_path=snakemake.output.raw,  # noqa: F821
        device=snakemake.params.device,  # noqa: F821
        seed=snakemake.params.seed,  # noqa: F821
        load_image=functools.partial(load_image, cfg=scene_cfg, cache_dir=snakemake.params.cache_dir),  # noqa: F821
        inputs={"manifest": str(snakemake.input.manifest)},  # noqa: F821
    )
