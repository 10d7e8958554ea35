# Points of a scene with poses but no points (ccl.sfm.triangulate_points) → sfm/points3D.ply + points.json.
from ccl.runlog import script_logging

with script_logging(snakemake):  # the job's log, threads and progress
    from ccl.config import config_where, section
    from ccl.scene import SceneLoadConfig
    from ccl.sfm import SfmConfig, triangulate_points

    params = snakemake.params
    triangulate_points(
        snakemake.output.points,
        scene_dir=params.source_dir,
        source=params.entry["source"],
        images=params.entry.get("images", "images"),
        scene_load=section(SceneLoadConfig, params.scene_load, where=config_where("scene_load")),
        cfg=section(SfmConfig, params.sfm, where=config_where("sfm")),
        report_path=snakemake.output.report,
        cache_dir=params.cache_dir,
        threads=snakemake.threads,
    )
