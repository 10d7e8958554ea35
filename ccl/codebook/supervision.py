"""Degenerate supervision: track labels that give a pair term of the fit nothing to act on.

What the pair terms need, and nothing more (the thresholds are the losses' own minimums):
- L_pull (eq. 6) is a mean over same-label pairs (i, k), i != k: it needs one track with at least
  `MIN_MASKS_FOR_SAME_LABEL_PAIR` = 2 masks.
- L_push (eq. 7) is a mean over pairs of different labels: it needs at least
  `MIN_TRACKS_FOR_DIFFERENT_LABEL_PAIR` = 2 tracks.
Masks labelled −1 (unmatched) are in no pair, so with every label −1 neither term has a pair.

A term without pairs is switched off (`ccl.codebook.train.effective_terms`), so a fit whose variant
asks for it trains fewer terms than its name says (`full` on labels all −1 trains L_max alone: it is
`base`). Such a fit's supervision is degenerate. It is recorded (`supervision` in the diagnostics JSON
and in the codebook's `model` attr), said on the console (`fit_codebook`), carried into queries.csv
(`supervision_degenerate_scales`, by `ccl.eval.pipeline` through `read_codebook_supervision`) and
marked in the tables, so that `full == base` is never read as a finding. A variant that asks for no
pair term (`base`), or only for terms that have pairs, is not degenerate, whatever the labels. One pair
is enough for a term to act; how much supervision a scene gives is in the recorded counts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccl.codebook.config import VARIANT_TERMS, variant_terms

# A same-label pair (i, k) of eq. 6 is two different masks of one track.
MIN_MASKS_FOR_SAME_LABEL_PAIR = 2
# A different-label pair of eq. 7 is two masks of two tracks.
MIN_TRACKS_FOR_DIFFERENT_LABEL_PAIR = 2
PAIR_TERMS = ("pull", "push")


@dataclass(frozen=True)
class Supervision:
    """What the track labels of one scene and scale offer the pair terms (masks with label >= 0)."""

    labelled_masks: int
    tracks: int  # distinct labels >= 0
    multi_mask_tracks: int  # tracks with >= MIN_MASKS_FOR_SAME_LABEL_PAIR masks
    same_label_pairs: int  # unordered pairs {i, k}, i != k, of one label: sum over tracks of n(n − 1)/2
    different_label_pairs: int  # unordered pairs of two labels: (L² − sum over tracks of n²) / 2

    @property
    def same_label_pairs_possible(self) -> bool:
        """L_pull (eq. 6) has a pair to act on."""
        return self.multi_mask_tracks > 0

    @property
    def different_label_pairs_possible(self) -> bool:
        """L_push (eq. 7) has a pair to act on."""
        return self.tracks >= MIN_TRACKS_FOR_DIFFERENT_LABEL_PAIR

    def terms_without_pairs(self, *, pull: bool, push: bool) -> tuple[str, ...]:
        """The requested pair terms that have no pair to act on, in PAIR_TERMS order."""
        missing = {"pull": pull and not self.same_label_pairs_possible}
        missing["push"] = push and not self.different_label_pairs_possible
        return tuple(t for t in PAIR_TERMS if missing[t])

    def why(self, terms: tuple[str, ...]) -> str | None:
        """Why the pair terms `terms` (from `terms_without_pairs`) have no pairs; None if there are none."""
        if not terms:
            return None
        if self.labelled_masks == 0:
            return "every mask's track label is -1 (unmatched), so no mask is in any pair"
        parts = []
        if "pull" in terms:
            parts.append(
                f"no track has {MIN_MASKS_FOR_SAME_LABEL_PAIR} masks ({self.tracks} tracks of one mask each), "
                "so L_pull (eq. 6) has no same-label pair"
            )
        if "push" in terms:
            parts.append(
                f"only one track ({self.labelled_masks} labelled masks), so L_push (eq. 7) has no pair of "
                "different labels"
            )
        return "; ".join(parts)


def supervision_of(labels: np.ndarray) -> Supervision:
    """Count what `labels` [M] (track label, −1 = unmatched) offer the pair terms. O(M)."""
    labels = np.asarray(labels).reshape(-1)
    _, sizes = np.unique(labels[labels >= 0], return_counts=True)
    n = [int(s) for s in sizes]  # Python ints: pair counts reach M² / 2, beyond int64 for no scene
    total = sum(n)
    squares = sum(s * s for s in n)
    return Supervision(
        labelled_masks=total,
        tracks=len(n),
        multi_mask_tracks=sum(s >= MIN_MASKS_FOR_SAME_LABEL_PAIR for s in n),
        same_label_pairs=(squares - total) // 2,
        different_label_pairs=(total * total - squares) // 2,
    )


@dataclass(frozen=True)
class TracksOrigin:
    """What made a tracks file, as its attributes record it (for the likely cause of bad labels)."""

    scene: str | None  # inputs.scene
    scale: str | None  # the stem of inputs.masks: results/{scene}/masks/{scale}.h5
    backend: str | None  # params.backend
    iou_thresh: float | None  # params.iou_thresh
    reseed_unmatched: bool | None  # params.reseed_unmatched
    n_tracks: int | None  # root attr n_tracks
    note: str | None  # model.note: why the tracks stage tracked nothing (one image, empty first frame)


def tracks_origin(tracks_path: str | os.PathLike) -> TracksOrigin:
    """Read the attributes of a tracks file (no arrays)."""
    from ccl.io.h5 import open_h5_for_read, read_json_attr

    with open_h5_for_read(tracks_path, kind="tracks") as t:
        params = read_json_attr(t, "params", {}) or {}
        model = read_json_attr(t, "model", {}) or {}
        inputs = read_json_attr(t, "inputs", {}) or {}
        n_tracks = t.attrs.get("n_tracks")
    masks = inputs.get("masks")
    masks = masks.get("path") if isinstance(masks, dict) else masks
    iou = params.get("iou_thresh")
    reseed = params.get("reseed_unmatched")
    return TracksOrigin(
        scene=None if inputs.get("scene") is None else str(inputs["scene"]),
        scale=Path(str(masks)).stem if masks else None,
        backend=params.get("backend") or model.get("backend"),
        iou_thresh=None if iou is None else float(iou),
        reseed_unmatched=None if reseed is None else bool(reseed),
        n_tracks=None if n_tracks is None else int(n_tracks),
        note=model.get("note"),
    )


def likely_cause(sup: Supervision, terms: tuple[str, ...], origin: TracksOrigin) -> str | None:
    """What in the tracks stage most likely left `terms` without pairs, and what to check."""
    if not terms:
        return None
    iou = "" if origin.iou_thresh is None else f" = {origin.iou_thresh:g}"
    tracker = {"sam2": "SAM2", None: "the tracker"}.get(origin.backend, f"the {origin.backend} tracker")
    if sup.labelled_masks == 0:
        if origin.note:
            return (
                f"the tracks stage had nothing to track: {origin.note} (a first frame without masks starts "
                "no track; one image has no second view to match): check the first frame's masks (masks "
                "settings) or begin the scene at a frame that has some"
            )
        return (
            f"{tracker} matched no mask to a first-frame mask ({origin.n_tracks} tracks, no mask labelled): "
            f"check tracks.iou_thresh{iou}, or the first frame has no masks"
        )
    causes = []
    if "pull" in terms:
        causes.append(
            f"{tracker} matched no mask of another frame to a first-frame track (IoU with the propagated "
            f"mask not above tracks.iou_thresh{iou}): check tracks.iou_thresh, that the views overlap, and "
            "the track_masks log"
        )
    if "push" in terms:
        reseed = (
            ", and tracks.reseed_unmatched is off, so no later mask starts a track: turn it on or"
            if origin.reseed_unmatched is False
            else ":"
        )
        causes.append(
            f"the first frame has a single mask at this scale{reseed} check the first frame's masks"
        )
    return "; ".join(causes)


def trained_variant(pull: bool, push: bool) -> str:
    """The variant whose pair terms are exactly (pull, push): what a degenerate fit trained."""
    return next(v for v, t in VARIANT_TERMS.items() if t == (pull, push))


def supervision_record(sup: Supervision, *, variant: str, origin: TracksOrigin) -> dict[str, Any]:
    """The `supervision` block of the diagnostics JSON and of the codebook's `model` attr."""
    pull, push = variant_terms(variant)
    missing = sup.terms_without_pairs(pull=pull, push=push)
    return {
        "labelled_masks": sup.labelled_masks,
        "tracks": sup.tracks,
        "multi_mask_tracks": sup.multi_mask_tracks,
        "same_label_pairs": sup.same_label_pairs,
        "different_label_pairs": sup.different_label_pairs,
        "same_label_pairs_possible": sup.same_label_pairs_possible,
        "different_label_pairs_possible": sup.different_label_pairs_possible,
        "terms_without_pairs": list(missing),
        "degenerate": bool(missing),
        "trained_as": trained_variant(pull and "pull" not in missing, push and "push" not in missing),
        "why": sup.why(missing),
        "likely_cause": likely_cause(sup, missing, origin),
    }


def degenerate_message(record: dict[str, Any], *, scene: str, scale: str, variant: str, details: str) -> str:
    """The console warning of a degenerate fit (`record` from `supervision_record`)."""
    terms = " and ".join(f"L_{t}" for t in record["terms_without_pairs"])
    return (
        f"scene {scene}, scale {scale}, variant {variant}: degenerate track supervision: {record['why']}. "
        f"{terms} had nothing to act on and {'were' if ' and ' in terms else 'was'} off: this codebook is "
        f"the '{record['trained_as']}' variant's, and '{variant}' equal to '{record['trained_as']}' there is "
        f"not an effect of the terms. Likely cause: {record['likely_cause']}. Details: {details} "
        "(`supervision`)"
    )


def read_codebook_supervision(codebook_path: str | os.PathLike) -> dict[str, Any]:
    """Whether the fit of a codebook file had degenerate supervision, from its attributes (no arrays).

    `terms_without_pairs` are the pair terms its variant asks for that it did not train (`model.
    terms_trained`): a term is off exactly when it had no pairs. `degenerate`, `why` and `likely_cause`
    as in `supervision_record` (`why`/`likely_cause` None for a codebook written before the record).
    A codebook that records no variant or no trained terms (not written by `fit_codebook`) gives
    `degenerate` None: unknown, said in `why`.
    """
    from ccl.io.h5 import open_h5_for_read, read_json_attr

    with open_h5_for_read(codebook_path, kind="codebook") as f:
        variant = f.attrs.get("variant")
        model = read_json_attr(f, "model", {}) or {}
    variant = None if variant is None else str(variant)
    trained = model.get("terms_trained")
    if variant not in VARIANT_TERMS or not isinstance(trained, dict) or not set(PAIR_TERMS) <= set(trained):
        return {
            "variant": variant,
            "terms_without_pairs": [],
            "degenerate": None,
            "why": (
                f"{codebook_path} records no known variant ({variant!r}) with the terms it trained "
                "(model.terms_trained): it was not written by rule train_codebook, so whether its pair "
                "terms had pairs is unknown"
            ),
            "likely_cause": None,
        }
    requested = dict(zip(PAIR_TERMS, VARIANT_TERMS[variant], strict=True))
    missing = [t for t in PAIR_TERMS if requested[t] and not trained[t]]
    record = model.get("supervision") or {}
    return {
        "variant": variant,
        "terms_without_pairs": missing,
        "degenerate": bool(missing),
        "why": record.get("why"),
        "likely_cause": record.get("likely_cause"),
    }
