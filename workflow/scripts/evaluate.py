# Evaluate one variant of one scene with its protocol (ccl.eval.evaluate_scene) → eval/{variant}/.
from pathlib import Path

from ccl.runlog import script_logging

with script_logging(snakemake):  # the job's log, threads and progress
    from ccl.config import config_where, section, section_dataclass
    from ccl.device import resolve_device
    from ccl.eval import EvalConfig, evaluate_scene
    from ccl.query import QueryConfig

    p = snakemake.params
    evaluate_scene(
        Path(snakemake.output.queries).parent,
        manifest=snakemake.input.manifest,
        fields=dict(zip(p.scales, snakemake.input.fields, strict=True)),
        codebooks=dict(zip(p.scales, snakemake.input.codebooks, strict=True)),
        variant=snakemake.wildcards.variant,
        seed=p.seed,
        query_cfg=section(QueryConfig, p.query, where=config_where("query")),
        eval_cfg=section(EvalConfig, p.eval, where=config_where("eval")),
        features_cfg=section(section_dataclass("features"), p.features, where=config_where("features")),
        scene_cfg=section(section_dataclass("scene_load"), p.scene_load, where=config_where("scene_load")),
        device=resolve_device(p.device),
    )
