# Helpers shared by every stage: scene lookup, the scene's folders, the wildcard patterns, job resources,
# and the list of terminal outputs that `rule all` asks for (each stage file appends what it finishes with).
import re

from ccl.eval.labels import label_files
from ccl.scene.entries import resolve_entry
from ccl.scene.manifest import scene_input_files as scene_input_files_of
from ccl.sfm import list_photo_files
from ccl.sfm.ops import scene_pose_files as scene_pose_files_of
from ccl.sfm.plan import photo_scenes, pointless_scenes

SCENES = list(config["scenes"])
SYNTHETIC_SCENES = [
    s for s, e in config["scenes"].items() if e["source"] == "synthetic"
]
SCALES = list(config["scales"])
VARIANTS = list(config["variants"])
# Seeds (ccl.config turns `seed` into `seeds`): the codebook, the fields and their evaluation run once
# per seed, in results/{scene}/seed{seed}/ (ccl.results_tree reads that tree); the stages before them
# once per scene, seeded by the first, since only the synthetic scene and the simulators draw there (the
# simulated models' noise is part of the synthetic data, which a repeat of the training does not redraw)
# and one seed's run then equals a one-seed run's. The real models (SAM, SAM2, OpenCLIP) draw nothing:
# their stages get no seed (shared_seed), so a new seed reruns only the per-seed stages.
SEEDS = list(config["seeds"])
SHARED_SEED = SEEDS[0]


def shared_seed(backend):
    """A shared stage's `seed` param: the first seed for a simulator, None for a real model (no draw)."""
    return SHARED_SEED if backend == "sim" else None


def run_seed(wildcards):
    """The seed of a per-seed job (its `{seed}` wildcard, a folder name's digits), as the number it is."""
    return int(wildcards.seed)

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
    if wildcards.scene in PHOTO_SCENES:  # poses.smk: the COLMAP model made of the scene's photos
        return rules.poses.output.model.format(scene=wildcards.scene)
    return entry["path"]


def synthetic_scene_input(wildcards):
    """Synthetic scenes depend on the rule that builds them; real scenes on nothing Snakemake makes."""
    if scene_entry(wildcards)["source"] == "synthetic":
        return rules.synthetic_scene.output.scene_dir
    return []


# Structure from motion (poses.smk): photo folders to pose, scenes with poses but no points to triangulate.
PHOTO_SCENES = photo_scenes(config)
POINTLESS_SCENES = pointless_scenes(config)


def sfm_inputs(wildcards):
    """What the scene's manifest reads that SfM makes: the photos' model, or triangulated points."""
    if wildcards.scene in PHOTO_SCENES:
        return rules.poses.output.model
    if wildcards.scene in POINTLESS_SCENES:
        return rules.triangulate_points.output.points
    return []


def scene_input_files(wildcards):
    """A real scene's image and pose files, inputs of its manifest: replacing, adding or removing one
    reruns scene_manifest and everything made of the scene (ccl.scene.manifest.scene_input_files)."""
    if wildcards.scene in PHOTO_SCENES:  # rule poses depends on the photos
        return []
    colmap_model = config["scene_load"]["colmap_model"]
    return [str(p) for p in scene_input_files_of(scene_entry(wildcards), colmap_model=colmap_model)]


def scene_points_file(wildcards):
    """The points file the scene starts from instead of its own (a `params:` value), or None."""
    if wildcards.scene in POINTLESS_SCENES:
        return rules.triangulate_points.output.points.format(scene=wildcards.scene)
    return None


def scene_photo_files(wildcards):
    """A photo folder's photos, the poses job's inputs: adding, editing or removing one reruns it."""
    return [str(p) for p in list_photo_files(scene_entry(wildcards)["path"])]


def scene_pose_files(wildcards):
    """The files holding a scene's poses (transforms.json, or the model's cameras and images)."""
    colmap_model = config["scene_load"]["colmap_model"]
    return [str(p) for p in scene_pose_files_of(scene_entry(wildcards), colmap_model=colmap_model)]


def scene_label_files(wildcards):
    """A real scene's label files, inputs of the evaluate rule: editing, adding or removing one reruns
    the evaluation and the tables. A synthetic scene's come with its folder, which its manifest follows."""
    entry = scene_entry(wildcards)
    if entry["source"] == "synthetic" or not entry.get("labels"):
        return []
    return label_files(entry["labels"], entry.get("protocol", "lerf_ovs"))


def scene_cache_dir(wildcards):
    """The scene's image cache (a `params:` value): undistorted, downscaled images, safe to delete.

    ccl.scene.load_image keeps each working-resolution image here once, so the five rules that read the
    scene's images (sam_masks, track_masks, clip_features, train_rgb, train_language) undistort it once
    between them. A param, not an output, since Snakemake gives a path one producing rule and deletes a
    job's outputs before the job runs: as one rule's output the folder would be wiped under the others,
    and an output per rule would redo the undistortion in each. Nor does it need tracking, since an
    entry is keyed by its source file (path, size, mtime) and the transformation and written atomically,
    so a stale or half-written one is never read, and a deleted one is rebuilt on use.
    """
    return f"results/{wildcards.scene}/cache"


# Resources. Rules that can use CUDA ask Slurm for a GPU only when config sets the device to cuda
# (with `auto` a job uses a GPU if its node has one, but does not request one). Memory and time grow
# with each retry (`--retries` in profiles/slurm), so a job killed for either gets more next time.
GPU_JOB = 1 if config["device"] == "cuda" else 0


def per_attempt(base):
    """A resource callable: `base` on the first attempt, `base * n` on the n-th."""
    return lambda wildcards, attempt: base * attempt


# A stage with a real model and a simulator (masks, tracks, features) asks for the model's memory and
# time only when config picks the model; the simulator runs numpy on a small synthetic scene.
SIMULATOR_MEM_MB = 2000
SIMULATOR_RUNTIME_MIN = 30


def model_resources(mem_mb, runtime, *, backend_is_real=True):
    """A model-running job's `resources:` (`**model_resources(...)`).

    mem_mb (MB) and runtime (minutes) are the real backend's on the first attempt, both growing with the
    attempt, and a GPU is asked for when config sets cuda (GPU_JOB). With the simulator
    (`backend_is_real=False`): the simulator's small needs and no GPU, whatever the model's numbers.
    """
    if not backend_is_real:
        mem_mb, runtime = SIMULATOR_MEM_MB, SIMULATOR_RUNTIME_MIN
    return {
        "mem_mb": per_attempt(mem_mb),
        "runtime": per_attempt(runtime),
        "gpu": GPU_JOB if backend_is_real else 0,
    }


def first_attempt_mem_mb(rule_name):
    """The rule's mem_mb on a first attempt, as --set-resources leaves it (None if unset or not a number)."""
    mem = workflow.get_rule(rule_name).resources.get("mem_mb")  # a snakemake Resource, or None
    if mem is None:
        return None
    value = mem.evaluate(None, attempt=1).value if mem.is_evaluable() else mem.value
    return float(value) if isinstance(value, int | float) else None
