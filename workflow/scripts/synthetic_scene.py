# Build the embedded synthetic scene (ccl.synthetic.make_scene) into the rule's output folder.
from ccl.runlog import script_logging

with script_logging(snakemake):  # the job's log, threads and progress
    from ccl.config import config_where, section
    from ccl.synthetic import SyntheticConfig, make_scene

    cfg = section(SyntheticConfig, snakemake.params.synthetic, where=config_where("synthetic"))
    make_scene(snakemake.output.scene_dir, cfg=cfg, seed=snakemake.params.seed)
