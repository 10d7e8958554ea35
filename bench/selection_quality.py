"""3D selections (`ccl query3d`, appendix D) against the synthetic scene's ground truth: for each object,
the precision and recall of the Gaussians its name selects, at the default config and threshold.

Ground truth per Gaussian: the object whose volume holds its mean, the volume being the object's
primitives (rebuilt from the seed and parameters gt.h5 records, ccl.synthetic.plan_scene) grown by
VOLUME_TOL (a Gaussian on the surface has its mean just outside it); any other Gaussian (table, walls,
floaters) belongs to no object. Gaussians are counted by number, and also weighted by their opacity
(what a viewer of the PLY sees).

Each object's category name is queried alone, as `ccl query3d "<name>"` does (scale `auto`, the
`query` config's mode and threshold); each selection rule (ccl.query.view.SELECTION_RULES) with each
cleaning (CLEAN_MODES) is measured on the same fields. Where a selection's false positives land
(another object, no object), how opaque they are (median opacity) and how many lie apart from the
selection's main body (outside its largest piece, ccl.query.components at the cleaning's link) is
written per object.

Runs the workflow (sim backends, CPU) in a scratch folder up to the `full` language fields, so the
fields are those of `snakemake` at the default config. Writes bench/out/selection_quality.json.
Run: python -m bench.selection_quality [workdir] [--keep-fields] [--seeds N [N ...]]   (an existing
workdir is reused: done jobs are kept; --keep-fields: a job reruns only when an input is newer, not when
the code changed, so fields trained by an earlier commit are measured as they are)

Training seeds: the figures move with the training seed (the codebook and the fields; at one commit the
blue book's precision with views + components was 0.978 at seed 0 and 0.940 at seed 1), so one seed's
figures do not show whether a target holds. `--seeds 0 1 2` writes `seeds: [0, 1, 2]` into the workdir's
config.yaml and trains and measures every seed in that one folder; the scene, masks and features are
shared, seeded by the first seed as in the workflow (README, "Seeds"), so a first seed other than the
config's rebuilds them. Without --seeds: the config's first seed alone (0 at the default config), as
before. The JSON keeps the first seed's figures where they were (`seed`, `summary`, `rows`, ...; each row
now also names its `seed`) and adds `seeds`, `per_seed` (every seed's `summary`, `rows`, ground truth and
vote timings, the first included) and `across_seeds`: per object, rule and cleaning the mean, sample std
(None with one seed) and worst seed of precision and recall (an empty selection counts as 0, as in
`summary`), and per rule and cleaning whether precision >= PRECISION_TARGET holds for every object on
every seed (`holds_on_every_seed`, and the objects below it per seed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).parent / "out" / "selection_quality.json"
VARIANT = "full"  # ccl query3d's default
VOLUME_TOL = 0.01  # scene units (objects are 0.1-0.3 tall; the median Gaussian's largest radius is ~0.02)
# precision written again against volumes grown further, to tell false positives at the object's surface
# (a Gaussian whose mean lies 1-3 cm out) from those elsewhere; the figures above use VOLUME_TOL alone
LOOSER_TOLS = (0.02, 0.03)
NO_OBJECT = -1
PRECISION_TARGET = 0.98  # an object's selection: at most 2 % of its Gaussians elsewhere


def _inside(p: np.ndarray, prim, tol: float) -> np.ndarray:
    """[P] bool: points p [P, 3] inside primitive `prim` with its half extents grown by `tol`."""
    from ccl.synthetic.ops import SHAPES

    q = (p - prim.center) @ prim.rot / (np.asarray(prim.scale) + tol)  # the shape's unit space
    if prim.shape == SHAPES["sphere"]:
        return (q**2).sum(axis=1) <= 1.0
    if prim.shape == SHAPES["box"]:
        return np.abs(q).max(axis=1) <= 1.0
    assert prim.shape == SHAPES["cylinder"], prim.shape
    return ((q[:, :2] ** 2).sum(axis=1) <= 1.0) & (np.abs(q[:, 2]) <= 1.0)


def gaussian_ground_truth(means: np.ndarray, objects, *, tol: float = VOLUME_TOL) -> np.ndarray:
    """[G] int: the id of the object (ccl.synthetic PlacedObject) whose grown volume holds each mean
    [G, 3], NO_OBJECT where none does (the first in the list where volumes overlap)."""
    xyz = means.astype(np.float64)
    label = np.full(len(xyz), NO_OBJECT, np.int64)
    for obj in objects:
        inside = np.zeros(len(xyz), bool)
        for prim in obj.prims:
            inside |= _inside(xyz, prim, tol)
        label[inside & (label == NO_OBJECT)] = obj.index
    return label


def scene_objects(gt_h5: Path):
    """The placed objects of the synthetic scene whose gt.h5 this is (its recorded params and seed)."""
    from ccl.synthetic import SyntheticConfig, plan_scene

    with h5py_file(gt_h5) as f:
        params = json.loads(f.attrs["params"])
    seed = int(params.pop("seed"))
    return plan_scene(SyntheticConfig(**params), seed).geometry.objects


def h5py_file(path: Path):
    from ccl.io import open_h5_for_read

    return open_h5_for_read(path, kind="gt", format_versions=(1,))


def false_positive_places(selected: np.ndarray, truth: np.ndarray, k: int, xyz: np.ndarray,
                          opacity: np.ndarray, voxel: float) -> dict:  # fmt: skip
    """Of `selected`'s false positives against object `k`: their median opacity, and how many lie outside
    the selection's largest piece (voxel_components of the selected means, voxel edge `voxel`)."""
    from ccl.query.components import voxel_components

    wrong = selected & (truth != k)
    if not wrong.any():
        return {"false_opacity_median": None, "false_apart": 0}
    idx = np.nonzero(selected)[0]
    label = voxel_components(xyz[idx], voxel)
    main = np.zeros(len(truth), bool)
    main[idx[label == np.bincount(label).argmax()]] = True
    return {"false_opacity_median": round(float(np.median(opacity[wrong])), 3),
            "false_apart": int((wrong & ~main).sum())}  # fmt: skip


def scores(selected: np.ndarray, truth: np.ndarray, k: int, weight: np.ndarray | None = None) -> dict:
    """Precision and recall of `selected` [G] bool against object `k` of `truth` [G] (counts, or sums of
    `weight`), and where the false positives lie."""
    w = np.ones(len(truth)) if weight is None else weight
    hit = selected & (truth == k)
    n_sel, n_obj = float(w[selected].sum()), float(w[truth == k].sum())
    out = {
        "precision": round(float(w[hit].sum()) / n_sel, 4) if n_sel else None,
        "recall": round(float(w[hit].sum()) / n_obj, 4) if n_obj else None,
    }
    if weight is None:
        wrong = truth[selected & ~hit]
        out.update(selected=int(selected.sum()), object_gaussians=int((truth == k).sum()),
                   false_on_objects={int(i): int((wrong == i).sum()) for i in np.unique(wrong[wrong >= 0])},
                   false_on_no_object=int((wrong == NO_OBJECT).sum()))  # fmt: skip
    return out


def measure(results: Path, config: dict, *, seed: int) -> dict:
    from ccl.config import section
    from ccl.features import FeaturesConfig
    from ccl.query import QueryConfig
    from ccl.query.components import link_voxel
    from ccl.query.relevance import text_embeddings
    from ccl.query.view import (
        CLEAN_MODES,
        SELECTION_RULES,
        choose_gaussians,
        gaussian_view_votes,
        language_source,
    )
    from ccl.scene import SceneLoadConfig, load_scene_from_manifest

    scene = load_scene_from_manifest(
        results / "scene.json", cfg=section(SceneLoadConfig, config["scene_load"])
    )
    query_cfg = section(QueryConfig, config["query"])
    features_cfg = section(FeaturesConfig, config["features"])
    source = language_source(results / f"seed{seed}", VARIANT, scale="auto")
    objects = scene_objects(results / "scene" / "gt.h5")
    votes_s = {}
    for s in source.scales:  # the votes, with the labels cleaning's maps, once per field (choose_gaussians
        t0 = time.perf_counter()  # reuses them)
        gaussian_view_votes(source.language_field(s), scene.cameras, maps=source.training_maps(s))
        votes_s[s] = round(time.perf_counter() - t0, 2)
    truth: dict[str, np.ndarray] = {}
    looser: dict[tuple[str, float], np.ndarray] = {}
    rows = []
    for obj in objects:
        emb = text_embeddings([obj.category], cfg=query_cfg, features_cfg=features_cfg)
        for rule in SELECTION_RULES:
            for clean in CLEAN_MODES:
                t0 = time.perf_counter()
                chosen = choose_gaussians(source, emb, query_cfg=query_cfg, rule=rule, cameras=scene.cameras,
                                          clean=clean)  # fmt: skip
                seconds = time.perf_counter() - t0
                g = chosen.field.gaussians
                xyz = g.means.detach().cpu().numpy()
                if chosen.scale not in truth:
                    truth[chosen.scale] = gaussian_ground_truth(xyz, objects)
                    for tol in LOOSER_TOLS:
                        looser[(chosen.scale, tol)] = gaussian_ground_truth(xyz, objects, tol=tol)
                t = truth[chosen.scale]
                opacity = 1.0 / (1.0 + np.exp(-g.opacity_logits.detach().cpu().numpy()))
                voxel = link_voxel(g.log_scales.detach().cpu().numpy())
                rows.append({"seed": seed, "object": obj.category, "object_id": obj.index, "rule": rule,
                             "clean": clean,
                             "scale": chosen.scale, **scores(chosen.chosen, t, obj.index),
                             **false_positive_places(chosen.chosen, t, obj.index, xyz, opacity, voxel),
                             "opacity_weighted": scores(chosen.chosen, t, obj.index, opacity),
                             "precision_at_looser_tol": {str(tol): scores(chosen.chosen, looser[(chosen.scale, tol)],
                                                                           obj.index)["precision"]
                                                         for tol in LOOSER_TOLS},
                             "seconds": round(seconds, 3)})  # fmt: skip
    names = {o.index: o.category for o in objects}
    for r in rows:
        r["false_on_objects"] = {names[i]: n for i, n in r["false_on_objects"].items()}
    summary = []
    for rule in SELECTION_RULES:
        for clean in CLEAN_MODES:
            mine = [r for r in rows if (r["rule"], r["clean"]) == (rule, clean)]
            prec, rec = [r["precision"] or 0.0 for r in mine], [r["recall"] or 0.0 for r in mine]
            summary.append({"rule": rule, "clean": clean, "precision_min": min(prec),
                            "precision_mean": round(float(np.mean(prec)), 4), "recall_min": min(rec),
                            "recall_mean": round(float(np.mean(rec)), 4),
                            f"objects_precision_below_{PRECISION_TARGET}": [
                                r["object"] for r in mine if (r["precision"] or 0) < PRECISION_TARGET]})  # fmt: skip
    coverage = {s: {"gaussians": len(t), "no_object": int((t == NO_OBJECT).sum()),
                    "per_object": {names[i]: int((t == i).sum()) for i in names}} for s, t in truth.items()}  # fmt: skip
    return {"query": {"mode": query_cfg.mode, "threshold": query_cfg.threshold}, "ground_truth": coverage,
            "votes_seconds_per_scale": votes_s, "summary": summary, "rows": rows}  # fmt: skip


def _spread(values: dict[int, float]) -> dict:
    """Mean, sample std (None with one value) and the worst (lowest) value of {seed: value}, and its seed."""
    v = np.array(list(values.values()), float)
    worst = min(values, key=lambda k: (values[k], k))
    return {"mean": round(float(v.mean()), 4), "std": round(float(v.std(ddof=1)), 4) if len(v) > 1 else None,
            "worst": values[worst], "worst_seed": worst, "per_seed": {str(k): x for k, x in values.items()}}  # fmt: skip


def across_seeds(per_seed: list[dict], *, target: float = PRECISION_TARGET) -> dict:
    """Per object, rule and cleaning: precision and recall over the seeds of `per_seed` (measure()'s
    results, each with its `seed`); per rule and cleaning: whether precision >= target holds for every
    object on every seed. An empty selection (precision None) counts as 0, as in measure()'s summary."""
    keys = list(dict.fromkeys((r["object"], r["rule"], r["clean"]) for m in per_seed for r in m["rows"]))
    by = {(m["seed"], r["object"], r["rule"], r["clean"]): r for m in per_seed for r in m["rows"]}
    seeds = [m["seed"] for m in per_seed]
    objects = []
    for obj, rule, clean in keys:
        rows = {s: by[(s, obj, rule, clean)] for s in seeds if (s, obj, rule, clean) in by}
        objects.append({"object": obj, "rule": rule, "clean": clean,
                        "precision": _spread({s: r["precision"] or 0.0 for s, r in rows.items()}),
                        "recall": _spread({s: r["recall"] or 0.0 for s, r in rows.items()})})  # fmt: skip
    rules = []
    for rule, clean in dict.fromkeys((r, c) for _, r, c in keys):
        mine = [o for o in objects if (o["rule"], o["clean"]) == (rule, clean)]
        below = {
            str(s): [o["object"] for o in mine if o["precision"]["per_seed"][str(s)] < target] for s in seeds
        }
        rules.append({"rule": rule, "clean": clean, "holds_on_every_seed": not any(below.values()),
                      "objects_below_per_seed": {s: b for s, b in below.items() if b},
                      "precision_min": min(o["precision"]["worst"] for o in mine),
                      "recall_min": min(o["recall"]["worst"] for o in mine),
                      "precision_mean": round(float(np.mean([o["precision"]["mean"] for o in mine])), 4),
                      "recall_mean": round(float(np.mean([o["recall"]["mean"] for o in mine])), 4)})  # fmt: skip
    return {"seeds": seeds, "precision_target": target, "rules": rules, "objects": objects}


def seed_table(across: dict, rule: str, clean: str) -> str:
    """Markdown table of one rule and cleaning over the seeds: per object each seed's precision and
    recall, their mean ± std and the worst seed's; then whether the precision target holds."""

    def cell(sp: dict) -> str:
        std = "" if sp["std"] is None else f" ± {sp['std']:.4f}"
        return " | ".join([*(f"{x:.4f}" for x in sp["per_seed"].values()), f"{sp['mean']:.4f}{std}",
                           f"{sp['worst']:.4f} (s{sp['worst_seed']})"])  # fmt: skip

    seeds = across["seeds"]
    cols = [*(f"s{s}" for s in seeds), "mean ± std", "worst"]
    head = ["object", *(f"P {c}" for c in cols), *(f"R {c}" for c in cols)]
    lines = [f"{rule} + {clean}", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for o in across["objects"]:
        if (o["rule"], o["clean"]) == (rule, clean):
            lines.append(f"| {o['object']} | {cell(o['precision'])} | {cell(o['recall'])} |")
    r = next(r for r in across["rules"] if (r["rule"], r["clean"]) == (rule, clean))
    below = "; ".join(f"seed {s}: {', '.join(b)}" for s, b in r["objects_below_per_seed"].items())
    lines.append(f"precision >= {across['precision_target']} on every seed: "
                 f"{'yes' if r['holds_on_every_seed'] else 'no (' + below + ')'}")  # fmt: skip
    return "\n".join(lines)


def _set_seeds(work: Path, seeds: list[int]) -> None:
    """Write `seeds` into the workdir's config.yaml (its `seed`/`seeds` key replaced) unless it has them."""
    import yaml

    from ccl.config import load_config

    if list(load_config(work / "config.yaml")["seeds"]) == seeds:
        return
    raw = yaml.safe_load((work / "config.yaml").read_text()) or {}
    raw.pop("seed", None)
    raw["seeds"] = seeds
    (work / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def _run_fields(work: Path, config: dict, seeds: list[int], *, keep_fields: bool = False) -> None:
    scene = next(iter(config["scenes"]))
    targets = [f"results/{scene}/seed{seed}/gaussians/{VARIANT}/{s}.safetensors"
               for seed in seeds for s in config["scales"]]  # fmt: skip
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
           "--configfile", str(work / "config.yaml"), "--cores", str(os.cpu_count() or 1), *targets]  # fmt: skip
    if keep_fields:
        cmd += ["--rerun-triggers", "mtime"]
    subprocess.run(cmd, check=True, cwd=work)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.selection_quality", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "workdir", nargs="?", help="scratch folder of the workflow (reused if it exists; default: a new one)"
    )
    p.add_argument("--keep-fields", action="store_true",
                   help="rerun a job only when an input is newer, not when the code changed (measure the "
                   "fields already in workdir)")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", metavar="N",
                   help="training seeds to train and measure, in one workdir (written into its config.yaml; "
                   "the first seeds the shared stages); default: the config's first seed (0)")  # fmt: skip
    args = p.parse_args(argv)
    if args.seeds is not None and len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds: repeated seed in {args.seeds}")
    return args


def main(workdir: str | None = None, *, keep_fields: bool = False, seeds: list[int] | None = None) -> dict:
    import yaml

    from ccl.config import load_config

    work = Path(workdir or tempfile.mkdtemp(prefix="ccl_bench_selection_"))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "config.yaml").is_file():
        shutil.copy(ROOT / "config.yaml", work / "config.yaml")
    if seeds:
        _set_seeds(work, list(seeds))
    config = load_config(work / "config.yaml")
    scene = next(iter(config["scenes"]))
    seeds = list(seeds) if seeds else [int(config["seeds"][0])]
    _run_fields(work, config, seeds, keep_fields=keep_fields)
    per_seed = [{"seed": s, **measure(work / "results" / scene, config, seed=s)} for s in seeds]
    across = across_seeds(per_seed)
    out = {
        "scene": scene, "seed": seeds[0], "seeds": seeds, "variant": VARIANT, "volume_tol": VOLUME_TOL,
        "keep_fields": keep_fields, "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        **{k: v for k, v in per_seed[0].items() if k != "seed"},
        "per_seed": per_seed, "across_seeds": across,
    }  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(yaml.safe_dump({"summary": out["summary"]} if len(seeds) == 1 else {"across_seeds": across["rules"]},
                         sort_keys=False))  # fmt: skip
    for r in across["rules"]:
        print(seed_table(across, r["rule"], r["clean"]) + "\n")
    return out


if __name__ == "__main__":
    args = parse_args()
    main(args.workdir, keep_fields=args.keep_fields, seeds=args.seeds)
