# Load and check a scene (ccl.scene.write_manifest): bad input stops here, before any expensive stage.
from ccl.runlog import script_logging

with script_logging(snakemake):  # noqa: F821 (snakemake is injected): log, threads, progress
    from ccl.config import section
    from ccl.scene import SceneLoadConfig, write_manifest

    cfg = section(SceneLoadConfig, snakemake.params.scene_load, where="config.yaml: scene_load")  # noqa: F821
    write_manifest(
        snakemake.output.manifest,  # noqa: F821
        name=snakemake.wildcards.scene,  # noqa: F821
        entry=snakemake.params.entry,  # noqa: F821
        source_dir=snakemake.params.source_dir,  # noqa: F821
        cfg=cfg,
    )
