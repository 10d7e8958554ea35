# Load and check a scene (ccl.scene.write_manifest): bad input stops here, before any expensive stage.
from ccl.runlog import script_logging

with script_logging(snakemake):  # the job's log, threads and progress
    from ccl.config import config_where, section
    from ccl.scene import SceneLoadConfig, write_manifest

    cfg = section(SceneLoadConfig, snakemake.params.scene_load, where=config_where("scene_load"))
    write_manifest(
        snakemake.output.manifest,
        name=snakemake.wildcards.scene,
        entry=snakemake.params.entry,
        source_dir=snakemake.params.source_dir,
        cfg=cfg,
        workers=snakemake.threads,
        points_file=getattr(snakemake.params, "points_file", None),  # a scene with poses but no points
    )
