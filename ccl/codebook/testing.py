"""Synthetic clustered mask features with track labels, for tests and benchmarks (no files).

Shaped like CLIP mask embeddings of a scene: every vector shares a common direction (CLIP embeddings
of one scene sit in a narrow cone), tracks of one object share an object direction, and each mask
(one view of a track) adds view noise. Some masks are unmatched (label −1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class ClusteredMasks:
    features: np.ndarray  # [M, D] float32, unit rows
    labels: np.ndarray  # [M] int32, track label, −1 = unmatched
    track_centres: np.ndarray  # [n_tracks, D] float32, unit rows


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def clustered_masks(
    *,
    n_masks: int,
    n_tracks: int,
    dim: int,
    seed: int,
    tracks_per_object: int = 4,
    common: float = 1.0,
    object_spread: float = 1.0,
    part_spread: float = 0.6,
    view_noise: float = 0.6,
    unmatched: float = 0.1,
) -> ClusteredMasks:
    """`n_masks` unit vectors in `n_tracks` tracks (sizes uneven), a fraction `unmatched` labelled −1.

    The spreads are norms of random offsets relative to a unit direction: with the defaults a mask's
    cosine to its track centre is ~0.9, tracks of one object ~0.8 apart, unrelated tracks ~0.5.
    """
    rng = np.random.default_rng(seed)

    def offsets(n: int, scale: float) -> np.ndarray:
        return scale * _unit(rng.normal(size=(n, dim)))

    c = offsets(1, common)
    n_obj = max(1, -(-n_tracks // tracks_per_object))
    objects = c + offsets(n_obj, object_spread)
    tracks = _unit(objects[np.arange(n_tracks) % n_obj] + offsets(n_tracks, part_spread))
    weights = rng.gamma(2.0, size=n_tracks)
    which = rng.choice(n_tracks, size=n_masks, p=weights / weights.sum())
    noise = view_noise * rng.normal(size=(n_masks, dim)) / np.sqrt(dim)
    feats = _unit(tracks[which] + noise).astype(np.float32)
    labels = which.astype(np.int32)
    labels[rng.random(n_masks) < unmatched] = -1
    return ClusteredMasks(features=feats, labels=labels, track_centres=tracks.astype(np.float32))
