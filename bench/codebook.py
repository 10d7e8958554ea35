"""Codebook training: time per 10^4 masks on the CPU (synthetic clustered CLIP-like features, D=512,
default CodebookConfig), and, on the synthetic default scene with `sim` masks, tracks and features,
how consistently each variant maps a track's masks (base vs full, and full with the hard j* gradient).
Wall and CPU seconds (CPU is steadier on a shared machine), one torch thread (on a machine shared
by many processes, two threads per process ran 8x slower than one). Writes bench/out/codebook.json.
Run: python -m bench.codebook   (python -m bench.codebook speed: the timing part only)
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "out" / "codebook.json"
DIM = 512


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return result, {"wall_s": round(time.perf_counter() - w0, 3), "cpu_s": round(time.process_time() - c0, 3)}


def speed_figures() -> dict:
    import torch

    from ccl.codebook import CodebookConfig, LossTerms, train_prototypes
    from ccl.codebook.diagnostics import assignment_stats
    from ccl.codebook.testing import clustered_masks

    cfg = CodebookConfig()
    out: dict = {"config": dataclasses.asdict(cfg), "torch_threads": torch.get_num_threads(), "runs": []}
    # Warm-up: the first optimiser step imports parts of torch; keep that out of the figures.
    warm = clustered_masks(n_masks=300, n_tracks=5, dim=DIM, seed=1)
    train_prototypes(warm.features, warm.labels, terms=LossTerms(True, True),
                     cfg=dataclasses.replace(cfg, n_prototypes=8, iterations=2), seed=0)  # fmt: skip
    for n_masks, n_tracks, variants in ((10_000, 100, ("base", "full")), (100_000, 1000, ("full",))):
        data = clustered_masks(n_masks=n_masks, n_tracks=n_tracks, dim=DIM, seed=0)
        _, t_init = _timed(
            lambda d=data: train_prototypes(
                d.features,
                d.labels,
                terms=LossTerms(False, False),
                cfg=dataclasses.replace(cfg, iterations=0),
                seed=0,
            )
        )
        for variant in variants:
            terms = LossTerms(variant in ("full", "pull"), variant in ("full", "push"))
            r, t = _timed(
                lambda d=data, tm=terms: train_prototypes(d.features, d.labels, terms=tm, cfg=cfg, seed=0)
            )
            s = assignment_stats(r.prototype_index, data.labels, cfg.n_prototypes)
            out["runs"].append({
                "n_masks": n_masks, "n_tracks": n_tracks, "dim": DIM, "variant": variant,
                "total": t, "init_and_assignment_only": t_init,
                "seconds_per_1e4_masks_wall": round(t["wall_s"] * 1e4 / n_masks, 3),
                "ms_per_step_wall": round(1e3 * (t["wall_s"] - t_init["wall_s"]) / cfg.iterations, 2),
                "single_prototype_track_fraction": s["single_prototype_track_fraction"],
                "track_majority_share": s["track_majority_share"],
                "prototypes_in_use": s["prototypes_in_use"],
            })  # fmt: skip
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def synthetic_figures() -> dict:
    """The synthetic default scene through sim masks, tracks and features, then every codebook variant."""
    from ccl.codebook import CodebookConfig, diagnostics_path, fit_codebook

    try:
        from ccl.features import FeaturesConfig, extract_features
        from ccl.masks import MasksConfig, generate_masks, merge_masks
        from ccl.scene import SceneLoadConfig, load_scene
        from ccl.synthetic import SyntheticConfig, make_scene
        from ccl.tracks import TracksConfig, track_masks
    except ImportError as e:
        return {"pending": f"upstream stage not available: {e}"}

    keys = ("single_prototype_track_fraction", "track_majority_share", "prototype_purity", "prototypes_in_use",
            "intra_track_spread", "nearest_track_separation", "inter_track_separation")  # fmt: skip
    runs = {
        "base": ("base", CodebookConfig()),
        "full": ("full", CodebookConfig()),
        "full_hard_assignment": ("full", CodebookConfig(assignment="hard")),
    }
    out: dict = {"codebook": dataclasses.asdict(CodebookConfig()), "masks_tracks_features": "defaults (sim)"}
    with tempfile.TemporaryDirectory(prefix="bench-codebook-") as tmp:
        root = Path(tmp)
        make_scene(root / "scene", cfg=SyntheticConfig(), seed=0)
        scene = load_scene(root / "scene", source="synthetic", cfg=SceneLoadConfig(), name="synthetic")
        generate_masks(scene, cfg=MasksConfig(), out_path=root / "raw.h5", seed=0)
        for scale in ("sp", "wp"):
            merge_masks(root / "raw.h5", scale=scale, cfg=MasksConfig(), out_path=root / f"{scale}.h5")
            track_masks(
                scene, root / f"{scale}.h5", cfg=TracksConfig(), out_path=root / f"t_{scale}.h5", seed=0
            )
            extract_features(
                scene, root / f"{scale}.h5", cfg=FeaturesConfig(), out_path=root / f"f_{scale}.h5", seed=0
            )
            per_scale: dict = {}
            for name, (variant, cfg) in runs.items():
                cb = root / name / f"{scale}.h5"
                _, t = _timed(
                    lambda v=variant, c=cfg, o=cb, s=scale: fit_codebook(
                        root / f"f_{s}.h5",
                        root / f"t_{s}.h5",
                        variant=v,
                        cfg=c,
                        out_path=o,
                        seed=0,
                        device="cpu",
                    )
                )
                diag = json.loads(diagnostics_path(cb).read_text())
                per_scale[name] = {
                    "seconds": t,
                    "before": diag["before"],
                    "init": {k: diag["init"][k] for k in keys},
                    "after": {k: diag["after"][k] for k in keys},
                }
                per_scale["n_masks"], per_scale["n_tracks"] = diag["n_masks"], diag["n_tracks"]
                per_scale["n_labelled_masks"] = diag["n_labelled_masks"]
            out[scale] = per_scale
    return out


def main(argv: list[str] | None = None) -> dict:
    import torch

    argv = sys.argv[1:] if argv is None else argv
    torch.set_num_threads(1)
    out = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "command": "python -m bench.codebook",
        "speed": speed_figures(),
    }
    if "speed" not in argv:
        out["synthetic_default"] = synthetic_figures()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    for r in out["speed"]["runs"]:
        print(
            f"{r['variant']:>4} {r['n_masks']:>6} masks D={r['dim']}: {r['total']['wall_s']:.1f} s wall "
            f"({r['total']['cpu_s']:.1f} s CPU), {r['seconds_per_1e4_masks_wall']:.1f} s per 1e4 masks, "
            f"{r['ms_per_step_wall']:.0f} ms/step; tracks on one prototype {r['single_prototype_track_fraction']}"
        )
    for scale in ("sp", "wp"):
        s = out.get("synthetic_default", {}).get(scale)
        if s:
            row = ", ".join(
                f"{k} {v['after']['single_prototype_track_fraction']:.3f} (majority {v['after']['track_majority_share']:.3f})"
                for k, v in s.items()
                if isinstance(v, dict) and "after" in v
            )
            print(
                f"synthetic default {scale} ({s['n_masks']} masks, {s['n_tracks']} tracks): tracks on one prototype: {row}"
            )
    print(f"wrote {OUT}")
    return out


if __name__ == "__main__":
    main()
