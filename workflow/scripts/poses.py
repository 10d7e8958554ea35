# Cameras of a folder of photos (ccl.sfm.recover_poses) → results/{scene}/sfm/model + poses.json.
from ccl.runlog import script_logging

with script_logging(snakemake):  # the job's log, threads and progress
    from ccl.config import config_where, section
    from ccl.sfm import SfmConfig, recover_poses

    recover_poses(
        snakemake.params.photo_dir,
        snakemake.output.model,
        cfg=section(SfmConfig, snakemake.params.sfm, where=config_where("sfm")),
        report_path=snakemake.output.report,
        colmap_model=snakemake.params.colmap_model,
        threads=snakemake.threads,
    )
