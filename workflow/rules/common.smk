# Helpers shared by every stage: scene lookup, path helpers, the wildcard patterns, and the list of
# terminal outputs that `rule all` asks for (each stage file appends what it finishes with).
import re

from ccl.scene.entries import resolve_entry

SCENES = list(config["scenes"])
SYNTHETIC_SCENES = [
    s for s, e in config["scenes"].items() if e["source"] == "synthetic"
]
SCALES = list(config["scales"])
VARIANTS = list(config["variants"])
ALL_TARGETS = []


def _alternatives(names):
    # An empty alternation would match the empty string: use a pattern that matches nothing.
    return "|".join(re.escape(n) for n in names) or "(?!x)x"


SCENE_PATTERN = _alternatives(SCENES)


def scene_entry(wildcards):
    """The scene's config entry, with `path` and `labels` resolved against `data_root`."""
    return resolve_entry(config, wildcards.scene)


def scene_source_dir(wildcards):
    """The folder `ccl.scene.load_scene` reads: built for synthetic scenes, the user's for real ones."""
    entry = scene_entry(wildcards)
    if entry["source"] == "synthetic":
        return f"results/{wildcards.scene}/scene"
    return entry["path"]


def synthetic_scene_input(wildcards):
    """Synthetic scenes depend on the rule that builds them; real scenes on nothing Snakemake makes."""
    if scene_entry(wildcards)["source"] == "synthetic":
        return rules.synthetic_scene.output.scene_dir
    return []


def log_path(stage, *parts):
    return f"logs/{stage}/" + "_".join(parts) + ".log"


def bench_path(stage, *parts):
    return f"benchmarks/{stage}/" + "_".join(parts) + ".tsv"


# Resources. Rules that can use CUDA ask Slurm for a GPU only when config sets the device to cuda
# (with `auto` a job uses a GPU if its node has one, but does not request one). Memory and time grow
# with each retry (`--retries` in profiles/slurm), so a job killed for either gets more next time.
GPU_JOB = 1 if config["device"] == "cuda" else 0


def per_attempt(base):
    """A resource callable: `base` on the first attempt, `base * n` on the n-th."""
    return lambda wildcards, attempt: base * attempt
