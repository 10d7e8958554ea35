"""`fit_codebook`: the codebook stage's one entry, files in and files out."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ccl.codebook.config import CodebookConfig, variant_terms
from ccl.codebook.data import CodebookInputs, load_inputs
from ccl.codebook.diagnostics import assignment_stats, plot_loss_curve, track_cosine_stats
from ccl.codebook.supervision import degenerate_message, supervision_of, supervision_record, tracks_origin
from ccl.codebook.train import LOSS_COLUMNS, LossTerms, TrainResult, train_prototypes
from ccl.config import as_params, config_source
from ccl.device import resolve_device
from ccl.io.atomic import atomic_write_json
from ccl.io.provenance import file_record
from ccl.runlog import warn_user

log = logging.getLogger(__name__)


def diagnostics_path(out_path: str | os.PathLike) -> Path:
    """`{scale}.diagnostics.json` beside `{scale}.h5`."""
    p = Path(out_path)
    return p.with_name(p.stem + ".diagnostics.json")


def loss_plot_path(out_path: str | os.PathLike) -> Path:
    """`{scale}.loss.png` beside `{scale}.h5`."""
    p = Path(out_path)
    return p.with_name(p.stem + ".loss.png")


def fit_codebook(
    features_path: str | os.PathLike,
    tracks_path: str | os.PathLike,
    *,
    variant: str,
    cfg: CodebookConfig,
    out_path: str | os.PathLike,
    seed: int,
    device: str = "auto",
    manifest_path: str | os.PathLike | None = None,
    diagnostics_out: str | os.PathLike | None = None,
    loss_plot_out: str | os.PathLike | None = None,
) -> TrainResult:
    """Learn the prototypes of one scene and scale, and map every mask to its prototype.

    Reads results/{scene}/features/{scale}.h5 and results/{scene}/tracks/{scale}.h5 (and, when given,
    the scene manifest, to check the frames); writes `out_path` (kind "codebook", docs/contracts.md),
    its diagnostics JSON and loss PNG (default names beside it). `variant` in full, base, pull, push.
    Bad input (files of different scenes or scales, fewer masks than prototypes) raises ValueError
    before any training. Degenerate supervision (a pair term of the variant without pairs: labels all −1,
    every track one mask, or one track; `ccl.codebook.supervision`) trains without that term, is
    recorded as `supervision` in the diagnostics and the codebook's `model` attr, and is warned about
    on the console with the scene, scale and likely cause.
    """
    if not isinstance(cfg, CodebookConfig):
        raise TypeError(f"cfg: expected a CodebookConfig, got {type(cfg).__name__}")
    pull, push = variant_terms(variant)
    frame_names = None
    if manifest_path is not None:
        from ccl.scene import read_manifest

        frame_names = [fr.name for fr in read_manifest(manifest_path).frames]
    data = load_inputs(features_path, tracks_path, frame_names=frame_names)
    if data.n_masks < cfg.n_prototypes:
        raise ValueError(
            f"{features_path}: {data.n_masks} masks in {len(data.frame_names)} frames, fewer than the "
            f"{cfg.n_prototypes} prototypes asked for: lower codebook.n_prototypes in {config_source()} to at "
            f"most {data.n_masks} (or give the scene more views or masks)"
        )
    device = resolve_device(device)
    diag_out = diagnostics_out or diagnostics_path(out_path)
    origin = tracks_origin(tracks_path)
    supervision = supervision_record(supervision_of(data.labels), variant=variant, origin=origin)
    if supervision["degenerate"]:
        warn_user(
            log,
            degenerate_message(
                supervision, scene=origin.scene or "?", scale=origin.scale or Path(out_path).stem,
                variant=variant, details=str(diag_out),
            ),
        )  # fmt: skip

    t0 = time.perf_counter()
    result = train_prototypes(
        data.features, data.labels, terms=LossTerms(pull=pull, push=push), cfg=cfg, seed=seed, device=device
    )
    seconds = time.perf_counter() - t0
    trained = {"pull": result.terms.pull, "push": result.terms.push}
    assert [t for t in trained if (pull, push)[t == "push"] and not trained[t]] == supervision[
        "terms_without_pairs"
    ], "training switches off exactly the terms without pairs"

    diag = build_diagnostics(data, result, variant=variant, cfg=cfg, seconds=seconds, supervision=supervision)
    atomic_write_json(diag_out, diag)
    active = (
        ("total", "max") + (("pull",) if result.terms.pull else ()) + (("push",) if result.terms.push else ())
    )
    plot_loss_curve(
        loss_plot_out or loss_plot_path(out_path),
        result.loss_curve,
        LOSS_COLUMNS,
        title=f"codebook {variant}: {data.n_masks} masks, N={cfg.n_prototypes}, j* gradient {cfg.assignment}",
        active=active,
    )

    from ccl.io.codebook_h5 import write_codebook

    per_frame = {
        name: result.prototype_index[data.frame_offsets[f] : data.frame_offsets[f + 1]]
        for f, name in enumerate(data.frame_names)
    }
    write_codebook(
        out_path,
        variant=variant,
        prototypes=result.prototypes,
        prototype_index=per_frame,
        frame_names=list(data.frame_names),
        params={**as_params(cfg), "variant": variant, "seed": int(seed)},
        model={
            "name": "ccl.codebook",
            "terms_trained": {"max": True, "pull": result.terms.pull, "push": result.terms.push},
            "device": device,
            "inputs_simulated": data.simulated,
            "features_model": data.features_model,
            "tracks_model": data.tracks_model,
            "supervision": supervision,
        },
        inputs={
            "features": file_record(features_path),
            "tracks": file_record(tracks_path),
            # the masks file both were made from (load_inputs checked they agree): what the language
            # field's stage checks its masks file against
            "masks": data.masks_record,
        },
    )
    after = diag["after"]
    log.info(
        "%s: %d of %d prototypes in use; tracks on one prototype %s (after init %s); %.1f s",
        out_path, after["prototypes_in_use"], cfg.n_prototypes, _fmt(after["single_prototype_track_fraction"]),
        _fmt(diag["init"]["single_prototype_track_fraction"]), seconds,
    )  # fmt: skip
    return result


LOSS_CURVE_NOTES = {
    "hard": "values of eq. 5-8 per step; the optimiser follows their gradient",
    "straight_through": (
        "values of eq. 5-8 per step (hard j*); the optimiser follows the straight-through gradient, which "
        "also moves masks between prototypes, so L_max and the total can rise while tracks consolidate"
    ),
}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def build_diagnostics(
    data: CodebookInputs,
    result: TrainResult,
    *,
    variant: str,
    cfg: CodebookConfig,
    seconds: float,
    supervision: dict[str, Any],
) -> dict[str, Any]:
    """The diagnostics JSON: what the labels offer the pair terms (`supervision`, from
    `supervision_record`), consistency of each track before (raw features), after initialisation and
    after training (assigned prototypes), prototypes in use, and the loss curve."""
    labels = data.labels
    n = cfg.n_prototypes
    init = {
        **track_cosine_stats(result.init_prototypes[result.init_index], labels),
        **assignment_stats(result.init_index, labels, n),
    }
    after = {
        **track_cosine_stats(result.prototypes[result.prototype_index], labels),
        **assignment_stats(result.prototype_index, labels, n),
    }
    curve = result.loss_curve
    return {
        "variant": variant,
        "terms_requested": dict(zip(("pull", "push"), variant_terms(variant), strict=True)),
        "terms_trained": {"pull": result.terms.pull, "push": result.terms.push},
        "assignment": cfg.assignment,
        "loss_curve_note": LOSS_CURVE_NOTES[cfg.assignment],
        "n_masks": data.n_masks,
        "n_labelled_masks": int((labels >= 0).sum()),
        "n_tracks": int(len(np.unique(labels[labels >= 0]))),
        "supervision": supervision,
        "n_prototypes": n,
        "dim": int(data.features.shape[1]),
        "inputs_simulated": data.simulated,
        "train_seconds": round(seconds, 3),
        "before": track_cosine_stats(data.features, labels),
        "init": init,
        "after": after,
        "loss_curve": {
            "step": list(range(1, len(curve) + 1)),
            **{name: curve[:, c].round(6).tolist() for c, name in enumerate(LOSS_COLUMNS)},
        },
    }
