# CCL-LGS workflow: a table of contents. Each stage is one file under workflow/rules/;
# all logic lives in the `ccl` package. See README.md and docs/contracts.md.
from snakemake.utils import min_version, validate

from ccl.config import validate_config

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")
# Snakemake's validate fills only the top level's defaults, not the stage schemas' (stages/*.yaml);
# ccl's fills them all, so every rule's params carry the values its job runs with and a changed
# schema default reruns what it affects.
config.update(validate_config(config, source="config"))


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
