# CCL-LGS workflow: a table of contents. Each stage is one file under workflow/rules/;
# all logic lives in the `ccl` package. See README.md and docs/contracts.md.
from snakemake.utils import min_version, validate

from ccl.config import validate_config

min_version("9.0")


configfile: "config.yaml"


# ccl's validate fills every default, the stage schemas' (stages/*.yaml) included, so each rule's params
# carry the values its job runs with and a changed schema default reruns what it affects (Snakemake's
# fills only the top level's); it also reads nested `--config` values, which Snakemake leaves as
# strings, as YAML. Snakemake's validate then checks the result.
config.update(validate_config(config, source="config"))
validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    scene=SCENE_PATTERN,
    scale="sp|wp|all",
    variant="full|base|pull|push",


include: "workflow/rules/scene.smk"
include: "workflow/rules/masks.smk"
include: "workflow/rules/tracks.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/codebook.smk"
include: "workflow/rules/splat.smk"
include: "workflow/rules/eval.smk"


# Cheap aggregation: on a cluster these run on the submit host, not as jobs.
localrules:
    all,
    scene_manifest,
    tables,


rule all:
    default_target: True
    input:
        ALL_TARGETS,


onsuccess:
    print(
        "\nccl-lgs: done. Tables: results/tables/ (table1.md: mIoU per scene); "
        "per-query IoUs: results/<scene>/eval/<variant>/queries.csv.\n"
        "HTML report with tables and relevance maps: "
        "snakemake --report results/report.html"
    )
