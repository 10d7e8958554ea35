"""Gaussian fields on the synthetic default scene at the default config: held-out colour PSNR, language
pixel accuracy against the field's own index maps (every variant × scale) beside those maps' multi-view
consistency (the accuracy ceiling of any 3D field), the same language training on view-consistent maps
painted from the scene's ground truth (what the field can fit when its targets agree across views), and
the wall and CPU time of the rules train_rgb and train_language (their Snakemake benchmark files), with
the machine's load; and the language accuracy again at seeds EXTRA_SEEDS (every stage reseeded), so
the figure comes with its spread over seeds.

Runs the workflow (sim backends, CPU) in a scratch folder up to the language fields, so the figures are
those of `snakemake` itself. Writes bench/out/gaussian_fields.json.
Run: python -m bench.gaussian_fields [workdir]   (an existing workdir is reused: done jobs are kept)
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).parent / "out" / "gaussian_fields.json"
EXTRA_SEEDS = (1, 2)  # besides the config's own seed


def _benchmark(path: Path) -> dict:
    with path.open() as f:
        row = next(csv.DictReader(f, delimiter="\t"))
    return {"wall_s": round(float(row["s"]), 1), "cpu_s": round(float(row["cpu_time"]), 1),
            "max_rss_mb": round(float(row["max_rss"]), 1)}  # fmt: skip


def main(workdir: str | None = None) -> dict:
    import yaml

    from ccl.config import load_config

    work = Path(workdir or tempfile.mkdtemp(prefix="ccl_bench_fields_"))
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "config.yaml", work / "config.yaml")
    config = load_config(work / "config.yaml")
    scene = next(iter(config["scenes"]))
    load_before = os.getloadavg()
    _run_fields(work, config)
    seed = config["seeds"][0]
    res = work / "results" / scene / f"seed{seed}" / "gaussians"
    rgb = json.loads((res / "rgb.metrics.json").read_text())
    out = {
        "scene": scene,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },  # fmt: skip
        "config": {"rgb": config["rgb"], "language": config["language"], "synthetic": config["synthetic"]},
        "train_rgb": {
            "psnr_heldout_db": round(rgb["psnr_heldout"], 2),
            "psnr_train_db": round(rgb["psnr_train"], 2),
            "n_gaussians": rgb["n_gaussians"],
            "iterations": rgb["iterations"],
            "benchmark": _benchmark(work / "benchmarks" / "train_rgb" / f"{scene}.tsv"),
        },
        "train_language": [],
    }
    for v in config["variants"]:
        for s in config["scales"]:
            m = json.loads((res / v / f"{s}.metrics.json").read_text())
            out["train_language"].append({
                "variant": v, "scale": s, "accuracy_all": round(m["accuracy_all"], 4),
                "accuracy_train": round(m["accuracy_train"], 4),
                "accuracy_heldout": None if m["accuracy_heldout"] is None else round(m["accuracy_heldout"], 4),
                "index_consistency": m["index_consistency"] and round(m["index_consistency"], 4),
                "labelled_fraction": round(m["labelled_fraction"], 3), "n_classes": m["n_classes"],
                "iterations": m["iterations"],
                "benchmark": _benchmark(work / "benchmarks" / "train_language" / f"{scene}_seed{seed}_{v}_{s}.tsv"),
            })  # fmt: skip
    out["ground_truth_maps"] = fit_ground_truth_maps(work / "results" / scene, config, seed=seed)
    out["language_over_seeds"] = language_over_seeds(work, config, out["train_language"])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    shown = ("train_rgb", "train_language", "ground_truth_maps", "language_over_seeds")
    print(yaml.safe_dump({k: out[k] for k in shown}, sort_keys=False))
    return out


def _run_fields(work: Path, config: dict, *extra: str, seed: int | None = None) -> None:
    """The workflow in `work` up to the colour field and every language field of `seed` (default: the
    config's first; `extra` last: Snakemake reads every word after --config as a setting)."""
    scene = next(iter(config["scenes"]))
    run = f"results/{scene}/seed{config['seeds'][0] if seed is None else seed}"
    targets = [f"{run}/gaussians/rgb.safetensors"] + [
        f"{run}/gaussians/{v}/{s}.safetensors" for v in config["variants"] for s in config["scales"]
    ]
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
           "--configfile", str(work / "config.yaml"), "--cores", str(os.cpu_count() or 1), *targets, *extra]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=work)


def language_over_seeds(work: Path, config: dict, first: list[dict]) -> dict:
    """Language accuracy and map consistency per variant × scale at the config's seed (`first`, rows of
    train_language) and at EXTRA_SEEDS, each run in its own subfolder of `work`; min and mean per cell."""
    scene = next(iter(config["scenes"]))
    rows = [{"seed": int(config["seeds"][0]), **{k: r[k] for k in ("variant", "scale", "accuracy_all", "index_consistency")}}
            for r in first]  # fmt: skip
    for seed in EXTRA_SEEDS:
        sub = work / f"seed{seed}"
        sub.mkdir(exist_ok=True)
        shutil.copy(work / "config.yaml", sub / "config.yaml")
        # the whole workflow in its own folder, the scene's stages too (not the workflow's `seeds`, which
        # share them): how far one seed's fields are from another's when everything upstream moves too
        _run_fields(sub, config, "--config", f"seed={seed}", seed=seed)
        for v in config["variants"]:
            for s in config["scales"]:
                m = json.loads(
                    (
                        sub / "results" / scene / f"seed{seed}" / "gaussians" / v / f"{s}.metrics.json"
                    ).read_text()
                )
                rows.append({"seed": seed, "variant": v, "scale": s, "accuracy_all": round(m["accuracy_all"], 4),
                             "index_consistency": m["index_consistency"] and round(m["index_consistency"], 4)})  # fmt: skip
    summary = []
    for v in config["variants"]:
        for s in config["scales"]:
            acc = [r["accuracy_all"] for r in rows if (r["variant"], r["scale"]) == (v, s)]
            summary.append({"variant": v, "scale": s, "seeds": len(acc), "accuracy_min": min(acc),
                            "accuracy_mean": round(sum(acc) / len(acc), 4)})  # fmt: skip
    return {"rows": rows, "summary": summary}


def fit_ground_truth_maps(results: Path, config: dict, *, seed: int) -> list[dict]:
    """The language field of the default config trained on the colour field, against index maps painted
    from gt.h5 (one class per object, part or subpart id; −1 where the layer has none): maps that agree
    across views by construction, so the accuracy is the field's own, free of upstream inconsistency."""
    import numpy as np
    import torch

    from ccl.config import section
    from ccl.scene import SceneLoadConfig, load_scene_from_manifest
    from ccl.splat import LanguageConfig
    from ccl.splat.checkpoint import load_rgb_field
    from ccl.splat.diagnostics import index_consistency
    from ccl.splat.model import scene_scale
    from ccl.splat.train_language import fit_language
    from ccl.synthetic.gt import LEVEL_LAYERS, GroundTruth

    scene = load_scene_from_manifest(
        results / "scene.json", cfg=section(SceneLoadConfig, config["scene_load"])
    )
    gaussians, _ = load_rgb_field(results / f"seed{seed}" / "gaussians" / "rgb.safetensors")
    cfg = section(LanguageConfig, config["language"])
    voxel = 0.01 * scene_scale(np.stack([c.center for c in scene.cameras]))
    gt = GroundTruth(results / "scene" / "gt.h5", scene.frame_names)
    torch.set_num_threads(1)  # as the rule: bit-for-bit reproducible
    rows = []
    try:
        for layer in LEVEL_LAYERS:
            raw = [np.asarray(getattr(gt.frame(c.name), layer), dtype=np.int64) for c in scene.cameras]
            ids = np.unique(np.concatenate([m[m >= 0] for m in raw]))
            maps = [np.where(m >= 0, np.searchsorted(ids, m), -1) for m in raw]
            _, m = fit_language(scene.cameras, maps, n_classes=len(ids), gaussians=gaussians, cfg=cfg,
                                seed=seed)  # fmt: skip
            rows.append({"layer": layer, "n_classes": len(ids), "accuracy_all": round(m.accuracy_all, 4),
                         "accuracy_heldout": m.accuracy_heldout and round(m.accuracy_heldout, 4),
                         "index_consistency": round(index_consistency(gaussians, scene.cameras, maps, voxel=voxel), 4),
                         "labelled_fraction": round(m.labelled_fraction, 3), "seconds": round(m.seconds, 1)})  # fmt: skip
    finally:
        gt.close()
    return rows


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
