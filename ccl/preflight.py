"""Preflight: every check that the config and the scene folders allow, over every scene, before any job.

The Snakefile runs `check_run` when the workflow is parsed (so `snakemake -n` shows it too); it reports
every problem at once, each naming the config key, the file and the fix, and nothing runs while one is
left. On a real scene a problem found by a job instead costs the stages upstream of it: hours of GPU.

What is checked, per scene of the run that its targets name (ccl.targets: the default target names every
stage of every scene; `results/garden/sfm/poses.json` the scene stage of garden only, so no checkpoint,
backend, label or codebook check applies to it):
- `data_root` exists; the scene's folder exists (with the nearest names in its parent for a typo) and
  loads (images, COLMAP model or transforms.json, every image's size: headers only); no two scenes
  share a folder;
- a `source: images` folder of photos (ccl.sfm.check_photo_folder, headers only): at least three
  photos, none to convert first (HEIC, RAW), none unreadable, no two of one frame name, one size when
  `sfm.camera_mode` is single; a folder that already holds a COLMAP model is loaded as that model;
- a `sim` backend (masks, tracks, features) only on synthetic scenes; the real backends' checkpoint
  files present and of the configured model: every tensor name and shape, read from the file's index
  without its data and compared with the architecture built on the meta device;
- labels present and of the scene's frames for a protocol that needs them (`protocol: none` named as
  the fix for an unlabelled scene);
- the held-out views (`rgb.holdout_every`, `language.holdout_every`) leave views to train on;
- `codebook.n_prototypes` within what the scene's views can fill (`MASKS_PER_VIEW_CEILING`).

Apart, `check_device`: `device: cuda` (or `cuda:N`) only where torch sees that device. The Snakefile runs
it when the jobs start on this machine, not at parse time: only then does Snakemake know whether they
run here (a cluster's submit host often has no GPU, its nodes do), and a dry run needs no GPU.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccl.scene.entries import resolve_entry
from ccl.targets import EVERYTHING, Needs, any_scene_needs, scene_needs, target_needs

# A view contributes at most this many masks per scale that a prototype can share with other views:
# LangSplat's SAM settings give 20-60 masks per view on LERF-OVS, of which about a third are things
# seen again in other views. More prototypes than views x this means some can only fit single-view
# masks, and an index map that changes from view to view is one no 3D field can fit.
MASKS_PER_VIEW_CEILING = 16

STAGE_BACKENDS = {  # config section -> (its sim backend, the real one)
    "masks": ("sim", "sam"),
    "tracks": ("sim", "sam2"),
    "features": ("sim", "open_clip"),
}


def _real_backend_modules() -> dict[str, str]:
    from ccl.features.backends import REGISTRY as FEATURES_BACKENDS
    from ccl.masks.backends import REGISTRY as MASKS_BACKENDS
    from ccl.tracks.backends import REGISTRY as TRACKS_BACKENDS

    registries = {"masks": MASKS_BACKENDS, "tracks": TRACKS_BACKENDS, "features": FEATURES_BACKENDS}
    return {stage: registries[stage][real] for stage, (_, real) in STAGE_BACKENDS.items()}


# config section -> the module whose `check_weights(cfg)` checks its checkpoint (from the stages' registries)
REAL_BACKEND_MODULES = _real_backend_modules()


@dataclass(frozen=True)
class Problem:
    key: str  # the config key at fault, e.g. "scenes.ramen.path"
    file: str | None  # the file or folder at fault, if any
    what: str  # what is wrong
    fix: str | None  # what the user changes (None: `what` says it, as the backends' messages do)

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        return f"[{self.key}] {where}{self.what}" + (f"\n    fix: {self.fix}" if self.fix else "")


class PreflightError(ValueError):
    """Raised with every problem of the run; nothing has run."""

    def __init__(self, problems: list[Problem], *, source: str):
        self.problems = problems
        lines = [f"ccl-lgs preflight: {len(problems)} problem(s) in {source}; nothing was run."]
        lines += [f"{i}. {p}" for i, p in enumerate(problems, 1)]
        super().__init__("\n".join(lines))


def check_run(
    config: Mapping[str, Any], *, source: str = "the config", targets: Iterable[str] | None = None
) -> None:
    """Raise PreflightError listing every problem of the run `config` (validated, defaults filled) that
    its `targets` meet (ccl.targets: none, the default target, needs every stage of every scene)."""
    problems = find_problems(config, needs=target_needs(targets))
    if problems:
        raise PreflightError(problems, source=source)


def find_problems(config: Mapping[str, Any], *, needs: Needs = EVERYTHING) -> list[Problem]:
    """The problems of the scenes and stages `needs` names: a run that asks for poses or a colour field
    is not refused for a model's checkpoint, labels or the codebook's size."""
    problems: list[Problem] = []
    entries = {name: resolve_entry(config, name) for name in config["scenes"] if scene_needs(needs, name)}
    data_root = config.get("data_root", "")
    if data_root and not Path(data_root).expanduser().is_dir():
        under = [n for n, e in config["scenes"].items() if e.get("path") and not os.path.isabs(e["path"])]
        problems.append(
            Problem(
                "data_root",
                str(Path(data_root).expanduser().absolute()),
                f"data_root is not a folder, so scene(s) {under} under it cannot be read",
                "set data_root to the folder holding the scenes (scene paths and labels are relative to it)",
            )
        )
        entries = {n: e for n, e in entries.items() if n not in under}  # one problem, not one per scene
    real = [name for name, e in entries.items() if e["source"] != "synthetic"]
    problems += _sfm_problems(config)
    problems += _backend_problems(config, real, needs)
    problems += _shared_folder_problems(entries)
    for name, entry in entries.items():
        problems += _scene_problems(config, name, entry, scene_needs(needs, name))
    return problems


# --- device -------------------------------------------------------------------------------------------


def check_device(config: Mapping[str, Any], *, source: str = "the config") -> None:
    """Raise PreflightError when `device` names a CUDA device this machine's torch does not see."""
    problems = device_problems(config)
    if problems:
        raise PreflightError(problems, source=source)


def device_problems(config: Mapping[str, Any]) -> list[Problem]:
    """`device: cuda` / `cuda:N` where torch sees no such device (torch is imported only then)."""
    device = str(config.get("device", "auto"))
    if not device.startswith("cuda"):
        return []
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device[5:]) if device[5:].isdigit() else 0
    if index < n:
        return []
    if n:
        seen = f"torch sees {n} CUDA device(s), cuda:0..cuda:{n - 1}"
    elif torch.version.cuda is None:
        seen = f"this torch ({torch.__version__}) is a CPU-only build"
    else:
        seen = f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device (driver, or CUDA_VISIBLE_DEVICES?)"
    return [
        Problem(
            "device",
            None,
            f"device is {device!r} but {seen}",
            "set `device: auto` (CUDA when there is one, else the CPU) or `device: cpu` "
            "(e.g. --config device=auto), or run on the machine with the GPU",
        )
    ]


# --- backends and checkpoints -------------------------------------------------------------------------


def _backend_problems(config: Mapping[str, Any], real_scenes: list[str], needs: Needs) -> list[Problem]:
    problems = []
    for stage, (sim, real) in STAGE_BACKENDS.items():
        if not any_scene_needs(needs, stage):
            continue  # no target of the run runs this stage's model
        backend = config[stage]["backend"]
        real_scenes = [name for name in real_scenes if stage in scene_needs(needs, name)]
        if backend == sim and real_scenes:
            problems.append(
                Problem(
                    f"{stage}.backend",
                    None,
                    f"{stage}.backend is 'sim', which simulates the model from a synthetic scene's ground "
                    f"truth, but scene(s) {real_scenes} are real",
                    f"set {stage}.backend: {real} (and its checkpoint keys, as configs/lerf_ovs.yaml does)",
                )
            )
        elif backend == real:
            problems += _checkpoint_problems(stage, config[stage])
    return problems


def _checkpoint_problems(stage: str, section: Mapping[str, Any]) -> list[Problem]:
    """The real backend's own check of its model and checkpoint: the file is there and holds the
    configured architecture's tensors, names and shapes (cheap: no tensor of the file is read)."""
    import importlib

    from ccl.config import section as build_section
    from ccl.config import section_dataclass
    from ccl.runlog import no_implicit_root_handler

    try:
        cfg = build_section(section_dataclass(stage), section, where=f"config: {stage}")
        with no_implicit_root_handler():  # Snakemake's lines would print twice (ccl.runlog)
            importlib.import_module(REAL_BACKEND_MODULES[stage]).check_weights(cfg)
    except (FileNotFoundError, ValueError, ImportError) as e:
        key = _checkpoint_key(stage, str(e))
        return [Problem(key, None, str(e), None)]  # the backends' messages name the file to get and the key
    return []


def _checkpoint_key(stage: str, message: str) -> str:
    """The key a backend's message names first (the checkpoint's key when it names none)."""
    keys = {
        "masks": ("sam_checkpoint", "sam_overrides", "sam_model_type"),
        "tracks": ("sam2_checkpoint", "sam2_overrides", "sam2_config"),
        "features": ("pretrained", "model_config_file", "model_name", "crop_size"),
    }[stage]
    return f"{stage}.{next((k for k in keys if f'{stage}.{k}' in message), keys[0])}"


# --- scenes -------------------------------------------------------------------------------------------


def _shared_folder_problems(entries: Mapping[str, Mapping[str, Any]]) -> list[Problem]:
    by_folder: dict[str, list[str]] = {}
    for name, e in entries.items():
        if e["source"] != "synthetic" and e.get("path") and Path(e["path"]).expanduser().exists():
            by_folder.setdefault(os.path.realpath(Path(e["path"]).expanduser()), []).append(name)
    return [
        Problem(
            f"scenes.{names[1]}.path",
            folder,
            f"scenes {names} point at one folder, so they would train the same scene twice under two names",
            "give each scene its own folder, or remove the repeated entry",
        )
        for folder, names in by_folder.items()
        if len(names) > 1
    ]


def _scene_problems(
    config: Mapping[str, Any], name: str, entry: Mapping[str, Any], stages: frozenset[str]
) -> list[Problem]:
    if entry["source"] == "synthetic":
        n_views = config["synthetic"]["n_views"]
        frames = None  # the labels are the scene's own
    elif entry["source"] == "images" and not _is_colmap_folder(config, entry):
        photos, problem = _check_photos(config, name, entry)
        if problem is not None:
            return [problem]
        n_views, frames = len(photos.photos), [p.frame for p in photos.photos]
        image_files = sorted(p.path.name for p in photos.photos)
    else:
        scene, problem = _load_real_scene(config, name, entry)
        if problem is not None:
            return [problem]
        n_views, frames = len(scene.cameras), [c.name for c in scene.cameras]
        image_files = sorted(Path(c.image_path).name for c in scene.cameras)
    problems = []
    if "eval" in stages and entry.get("protocol", "lerf_ovs") != "none" and frames is not None:
        problems += _label_problems(name, entry, frames, image_files)
    problems += _holdout_problems(config, name, n_views, [s for s in ("rgb", "language") if s in stages])
    if "codebook" in stages:
        problems += _prototype_problems(config, name, n_views)
    return problems


def _sfm_problems(config: Mapping[str, Any]) -> list[Problem]:
    """The sfm section's cross-key rule (a vocabulary tree for `vocab_tree`), when a scene needs SfM."""
    from ccl.config import section
    from ccl.sfm.config import SfmConfig, check_vocab_tree
    from ccl.sfm.plan import photo_scenes, pointless_scenes

    if not (photo_scenes(config) or pointless_scenes(config)):
        return []
    try:
        check_vocab_tree(section(SfmConfig, config["sfm"], where="config: sfm"))
    except (FileNotFoundError, ValueError) as e:
        return [Problem("sfm.vocab_tree_path", None, str(e), None)]
    return []


def _is_colmap_folder(config: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    """A `source: images` folder that is a COLMAP scene already (images/ + the model): used as it is."""
    from ccl.sfm import existing_colmap_model

    return existing_colmap_model(entry["path"], colmap_model=config["scene_load"]["colmap_model"])


def _check_photos(config: Mapping[str, Any], name: str, entry: Mapping[str, Any]):
    from ccl.sfm import check_photo_folder

    path = Path(entry["path"]).expanduser()
    if not path.exists():
        return None, _missing_folder(config, name, path)
    try:
        photos = check_photo_folder(path, camera_mode=config["sfm"]["camera_mode"])
    except (FileNotFoundError, ValueError) as e:
        return None, Problem(
            f"scenes.{name}.path", None, str(e).replace("scenes.<scene>", f"scenes.{name}"), None
        )
    return photos, None


def _missing_folder(config: Mapping[str, Any], name: str, path: Path) -> Problem:
    return Problem(
        f"scenes.{name}.path",
        str(path.absolute()),
        "scene folder not found" + _near_names(path),
        "fix the scene's `path` (relative paths are taken from data_root"
        + (f" = {config['data_root']}" if config.get("data_root") else ", or the folder snakemake runs in")
        + ")",
    )


def _load_real_scene(config: Mapping[str, Any], name: str, entry: Mapping[str, Any]):
    from ccl.config import section
    from ccl.scene import SceneLoadConfig, load_scene

    path = Path(entry["path"]).expanduser()
    if not path.exists():
        return None, Problem(
            f"scenes.{name}.path",
            str(path.absolute()),
            "scene folder not found" + _near_names(path),
            "fix the scene's `path` (relative paths are taken from data_root"
            + (
                f" = {config['data_root']}"
                if config.get("data_root")
                else ", or the folder snakemake runs in"
            )
            + ")",
        )
    try:
        cfg = section(SceneLoadConfig, config["scene_load"], where="config: scene_load")
        source = "colmap" if entry["source"] == "images" else entry["source"]  # images: a COLMAP folder
        scene = load_scene(path, source=source, cfg=cfg, name=name, images=entry.get("images", "images"))
    except (FileNotFoundError, ValueError) as e:
        return None, Problem(f"scenes.{name}", None, str(e), None)  # the loader's messages name file and fix
    return scene, None


def _near_names(path: Path) -> str:
    parent = path.parent
    if not parent.is_dir():
        return f" (nor its parent {parent.absolute()})"
    near = difflib.get_close_matches(path.name, [p.name for p in parent.iterdir() if p.is_dir()], n=3)
    return f"; folders with near names in {parent.absolute()}: {near}" if near else ""


def _label_problems(
    name: str, entry: Mapping[str, Any], frames: list[str], image_files: list[str]
) -> list[Problem]:
    protocol = entry.get("protocol", "lerf_ovs")
    key = f"scenes.{name}.labels"
    no_eval = f"or set `scenes: {{{name}: {{protocol: none}}}}` to train without evaluation"
    if not entry.get("labels"):
        where = "label/<scene> for LERF-OVS" if protocol == "lerf_ovs" else "<scene>/segmentations for 3D-OVS"
        return [Problem(key, None, f"protocol {protocol} needs labels, and the scene names none",
                        f"set `labels:` to its label folder ({where}), {no_eval}")]  # fmt: skip
    folder = Path(entry["labels"]).expanduser()
    try:
        if protocol == "lerf_ovs":
            from ccl.eval.labels import read_lerf_label_dir

            label_frames = [f.frame for f in read_lerf_label_dir(folder)]
            unknown = [f for f in label_frames if f not in frames]
        else:
            from ccl.eval.ovs3d import frame_of_index, read_classes, view_folders

            classes = read_classes(folder)
            unknown, no_mask = [], []
            for index, view in view_folders(folder):
                try:
                    frame_of_index(index, image_files, where=str(folder))
                except ValueError:
                    unknown.append(f"{index:02d}/")
                no_mask += [f"{view.name}/{c}.png" for c in classes if not (view / f"{c}.png").is_file()]
            if no_mask:
                return [
                    Problem(key, str(folder.absolute()),
                            f"{len(no_mask)} class mask(s) that classes.txt lists are missing: {no_mask[:6]}",
                            "give every view folder one <class>.png per line of classes.txt")
                ]  # fmt: skip
    except (FileNotFoundError, ValueError) as e:
        return [Problem(key, str(folder.absolute()), str(e), f"fix the scene's `labels` folder, {no_eval}")]
    if unknown:
        return [
            Problem(
                key,
                str(folder.absolute()),
                f"label frames {unknown[:6]}{'…' if len(unknown) > 6 else ''} ({len(unknown)}) are not images of "
                f"the scene (its frames: {frames[:3]}…, {len(frames)} in all)",
                "point `labels` at this scene's own label folder (labels are matched to images by name)",
            )
        ]
    return []


def _holdout_problems(
    config: Mapping[str, Any], name: str, n_views: int, stages: Iterable[str] = ("rgb", "language")
) -> list[Problem]:
    from ccl.splat.trainer import split_views

    problems = []
    for stage in stages:
        every = config[stage]["holdout_every"]
        try:
            split_views(n_views, every)
        except ValueError:  # the training's own split leaves no view to train on
            problems.append(
                Problem(
                    f"{stage}.holdout_every",
                    None,
                    f"{stage}.holdout_every = {every} holds out every view of scene {name!r} ({n_views} view(s): "
                    "view 0, k, 2k, … are held out), leaving none to train on",
                    f"set `{stage}: {{holdout_every: 0}}` (no held-out views) or give the scene more views",
                )
            )
    return problems


def _prototype_problems(config: Mapping[str, Any], name: str, n_views: int) -> list[Problem]:
    n = config["codebook"]["n_prototypes"]
    bound = n_views * MASKS_PER_VIEW_CEILING
    if n <= bound:
        return []
    return [
        Problem(
            "codebook.n_prototypes",
            None,
            f"{n} prototypes for scene {name!r}, whose {n_views} views give at most about {bound} masks that "
            f"recur across views ({MASKS_PER_VIEW_CEILING} a view): prototypes would fit single views",
            f"set `codebook: {{n_prototypes: {max(2, min(bound, n // 2))}}}` or fewer (at most {bound} for this scene)",
        )
    ]


# --- memory -------------------------------------------------------------------------------------------


def memory_warnings(
    config: Mapping[str, Any],
    *,
    targets: Iterable[str] | None = None,
    mem_mb: Mapping[str, float],
    source: str = "the config",
) -> list[str]:
    """ccl.memory's warnings for the real scenes of the run: each model stage's estimated peak at the
    scene's largest working image (scene_load.downscale, max_image_side) against its rule's `mem_mb`
    (stage -> MB) and, with `device: cuda` on a machine whose torch sees the GPU, the GPU's memory."""
    from ccl import memory
    from ccl.scene.ops import working_size

    needs = target_needs(targets)
    stages = {n: scene_needs(needs, n) for n in config["scenes"]}
    model_stages = {"masks", "tracks", "features"}
    sizes = {}
    for name in config["scenes"]:
        entry = resolve_entry(config, name)
        if entry["source"] == "synthetic" or not model_stages & stages[name]:
            continue
        if entry["source"] == "images" and not _is_colmap_folder(config, entry):
            photos, problem = _check_photos(config, name, entry)
            if problem is not None:
                continue
            load = config["scene_load"]
            whs = [working_size((p.width, p.height), downscale=load["downscale"], max_side=load["max_image_side"])
                   for p in photos.photos]  # fmt: skip
        else:
            scene, problem = _load_real_scene(config, name, entry)
            if problem is not None:
                continue
            whs = [(c.width, c.height) for c in scene.cameras]  # the working size already
        if whs:
            sizes[name] = (max(whs, key=lambda wh: wh[0] * wh[1]), len(whs))
    gpu = None
    if sizes and str(config.get("device", "auto")).startswith("cuda"):
        import torch

        device = str(config["device"])
        index = int(device[5:]) if device[5:].isdigit() else 0
        if torch.cuda.is_available() and index < torch.cuda.device_count():
            gpu = torch.cuda.get_device_properties(index).total_memory
    return memory.memory_warnings(config, sizes, mem_mb=mem_mb, gpu_bytes=gpu, stages=stages, source=source)
