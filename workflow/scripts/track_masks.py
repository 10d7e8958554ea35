# Track labels for every mask of one scale (ccl.tracks.track_masks) → tracks/{scale}.h5.
from ccl.runlog import script_logging

with script_logging(snakemake):  # noqa: F821 (snakemake is injected): log, threads, progress
    import functools

    from ccl.config import section
    from ccl.scene import SceneLoadConfig, load_image, load_scene_from_manifest
    from ccl.tracks import TracksConfig, track_masks

    cfg = section(TracksConfig, snakemake.params.tracks, where="config.yaml: tracks")  # noqa: F821
    scene_cfg = section(SceneLoadConfig, snakemake.params.scene_load, where="config.yaml: scene_load")  # noqa: F821
    scene = load_scene_from_manifest(snakemake.input.manifest, cfg=scene_cfg)  # noqa: F821
    track_masks(
        scene,
        snakemake.input.masks,  # noqa: F821
        cfg=cfg,
        out_path=snakemake.output.tracks,  # noqa: F821
        device=snakemake.params.device,  # noqa: F821
        seed=snakemake.params.seed,  # noqa: F821
        load_image=functools.partial(load_image, cfg=scene_cfg, cache_dir=snakemake.params.cache_dir),  # noqa: F821
    )
