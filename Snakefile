# CCL-LGS workflow: a table of contents. Each stage is one file under workflow/rules/;
# all logic lives in the `ccl` package. See README.md and docs/contracts.md.
import os
import sys
import time

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from ccl.config import CONFIG_SOURCE_ENV, validate_config
from ccl.preflight import PreflightError, check_device, check_run
from ccl.run_summary import closing_message
from ccl.targets import (
    command_line_configfile_flags,
    command_line_targets,
    repeated_configfile_message,
)

min_version("9.0")

RUN_STARTED = time.time()  # the closing message names what this run wrote after it


# Config composition: a config named on the command line (--configfile, several compose left to right,
# or a profile's configfile) describes the run; config.yaml, the embedded synthetic default, applies
# only when none is named. `--config key=value` adds to whichever it is.
# Two --configfile flags are refused, not run: Snakemake keeps only the last flag's files (argparse's
# store; its header alone shows it), so the first config would drop silently; one flag with several
# files composes them, which is what the user meant (ccl.targets reads the line with Snakemake's parser).
if workflow.is_main_process:
    _repeated = repeated_configfile_message(command_line_configfile_flags(sys.argv))
    if _repeated:
        raise WorkflowError(_repeated)

if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


# ccl's validate fills every default, the stage schemas' (stages/*.yaml) included, so each rule's params
# carry the values its job runs with and a changed schema default reruns what it affects (Snakemake's
# fills only the top level's); it also reads nested `--config` values, which Snakemake leaves as
# strings, as YAML. Snakemake's validate then checks the result.
CONFIG_SOURCE = " ".join(map(str, workflow.overwrite_configfiles)) or "config.yaml"
os.environ[CONFIG_SOURCE_ENV] = CONFIG_SOURCE  # the jobs' messages name it too (ccl.config.config_where)
try:
    _validated = validate_config(config, source=CONFIG_SOURCE)
except ValueError as e:
    raise WorkflowError(str(e)) from None  # names the file, the key and the fix: no traceback
config.clear()  # in place (workflow.config is this dict); `seed` becomes `seeds`, so none is left over
config.update(_validated)
validate(config, "workflow/schemas/config.schema.yaml")

# Every check the config and the scene folders allow, over every scene and stage the command line's
# targets need (ccl.targets: poses or a colour field need no model weights), all reported at once
# before any job (a dry run too). Jobs re-parse this file on their node: the main process has checked.
if workflow.is_main_process:
    try:
        check_run(config, source=CONFIG_SOURCE, targets=command_line_targets(sys.argv))
    except PreflightError as e:
        raise WorkflowError(str(e)) from None  # the message is the whole story: no traceback


# CUDA is checked once the jobs start, not at parse time: only then is it known whether they run on this
# machine (a cluster's submit host has no GPU, its nodes do); a dry run needs none.
onstart:
    if workflow.local_exec:
        try:
            check_device(config, source=CONFIG_SOURCE)
        except PreflightError as e:
            raise WorkflowError(str(e)) from None


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    scene=SCENE_PATTERN,
    scale="sp|wp|all",
    variant="full|base|pull|push",
    seed=r"\d+",


include: "workflow/rules/poses.smk"
include: "workflow/rules/scene.smk"
include: "workflow/rules/masks.smk"
include: "workflow/rules/tracks.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/codebook.smk"
include: "workflow/rules/splat.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/export.smk"


# Memory (ccl.memory): each model stage's estimated peak at the scenes' working image size, against its
# rule's mem_mb (as --set-resources leaves it) and, with device cuda, the GPU's; a warning, not a refusal
# (the estimate is an estimate), naming the keys that lower it. Jobs re-parse this file: the main
# process has warned.
if workflow.is_main_process:
    from ccl.memory import RULES as _MEMORY_RULES
    from ccl.preflight import memory_warnings

    _mem_mb = {s: first_attempt_mem_mb(r) for s, r in _MEMORY_RULES.items()}
    for _line in memory_warnings(
        config,
        targets=command_line_targets(sys.argv),
        mem_mb={s: mb for s, mb in _mem_mb.items() if mb},
        source=CONFIG_SOURCE,
    ):
        print(_line, file=sys.stderr)


# Cheap aggregation: on a cluster these run on the submit host, not as jobs (and `tables`, in
# eval.smk, when the run has one: naming an absent rule here made Snakemake warn on every run).
localrules:
    all,
    scene_manifest,


rule all:
    default_target: True
    input:
        ALL_TARGETS,


onsuccess:
    # the commands it gives run as written: this run's snakemake (as typed, e.g. .venv/bin/snakemake)
    # and its config files
    print(
        "\n"
        + closing_message(
            "results",
            RUN_STARTED,
            snakemake=sys.argv[0] if sys.argv[0].endswith("snakemake") else "python -m snakemake",
            configfiles=" ".join(map(str, workflow.overwrite_configfiles)),
        )
    )
