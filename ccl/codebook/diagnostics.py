"""How consistent a codebook makes the masks of a track: statistics before and after training, and the
loss plot. Numpy only (matplotlib imported in `plot_loss_curve`); O(M·D), never an M×M matrix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

# Tracks compared pairwise for the nearest-other-track statistic (a deterministic sample above this).
MAX_TRACKS_PAIRWISE = 2048


def _track_sums(vectors: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per label >= 0: (sum of its vectors [K, D] float64, mask count [K])."""
    keep = labels >= 0
    uniq, inv = np.unique(labels[keep], return_inverse=True)
    sums = np.zeros((len(uniq), vectors.shape[1]), np.float64)
    np.add.at(sums, inv, vectors[keep].astype(np.float64))
    return sums, np.bincount(inv, minlength=len(uniq))


def track_cosine_stats(vectors: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """Intra-track spread and inter-track separation of unit `vectors` [M, D] grouped by `labels` [M].

    intra_track_spread: mean over tracks with >= 2 masks of 1 − (mean cosine between two of its masks);
        0 when every mask of every track has the same vector.
    inter_track_separation: 1 − mean cosine between the mean directions of two different tracks.
    nearest_track_separation: mean over tracks of 1 − (cosine to the nearest other track's direction).
    Exact pairwise means from sums (for unit x: sum_{i != k} x_i·x_k = |sum x|² − n). None when undefined.
    """
    sums, counts = _track_sums(vectors, labels)
    out: dict[str, float | None] = {
        "intra_track_spread": None,
        "inter_track_separation": None,
        "nearest_track_separation": None,
    }
    multi = counts >= 2
    if multi.any():
        n = counts[multi].astype(np.float64)
        mean_cos = ((sums[multi] ** 2).sum(1) - n) / (n * (n - 1))
        out["intra_track_spread"] = float(np.mean(1.0 - mean_cos))
    k = len(counts)
    if k >= 2:
        dirs = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        total = dirs.sum(0)
        out["inter_track_separation"] = float(1.0 - ((total @ total) - k) / (k * (k - 1)))
        if k > MAX_TRACKS_PAIRWISE:
            dirs = dirs[np.random.default_rng(0).choice(k, MAX_TRACKS_PAIRWISE, replace=False)]
        cos = dirs @ dirs.T
        np.fill_diagonal(cos, -np.inf)
        out["nearest_track_separation"] = float(np.mean(1.0 - cos.max(1)))
    return out


def assignment_stats(index: np.ndarray, labels: np.ndarray, n_prototypes: int) -> dict[str, Any]:
    """How the masks of each track spread over prototypes, for `index` [M] (j*) and `labels` [M].

    single_prototype_track_fraction: tracks with >= 2 masks whose masks all map to one prototype.
    track_majority_share: mean over those tracks of the share of masks on the track's commonest prototype.
    prototype_purity: share of labelled masks whose prototype's commonest track is their own track
        (1 = no prototype mixes tracks; collapsing every track onto one prototype would score low).
    """
    index = np.asarray(index, np.int64)
    labels = np.asarray(labels, np.int64)
    keep = labels >= 0
    idx, lab = index[keep], labels[keep]
    out: dict[str, Any] = {
        "prototypes_in_use": int(len(np.unique(index))),
        "n_prototypes": int(n_prototypes),
        "single_prototype_track_fraction": None,
        "track_majority_share": None,
        "prototype_purity": None,
    }
    if len(lab) == 0:
        return out
    # Counts of (track, prototype) pairs, as unique keys.
    pair, pair_count = np.unique(lab * n_prototypes + idx, return_counts=True)
    pair_track = pair // n_prototypes
    pair_proto = pair % n_prototypes
    tracks, track_size = np.unique(lab, return_counts=True)
    t_pos = np.searchsorted(tracks, pair_track)
    top_in_track = np.zeros(len(tracks), np.int64)
    np.maximum.at(top_in_track, t_pos, pair_count)
    n_protos_of_track = np.bincount(t_pos, minlength=len(tracks))
    multi = track_size >= 2
    if multi.any():
        out["single_prototype_track_fraction"] = float(np.mean(n_protos_of_track[multi] == 1))
        out["track_majority_share"] = float(np.mean(top_in_track[multi] / track_size[multi]))
    top_in_proto = np.zeros(n_prototypes, np.int64)
    np.maximum.at(top_in_proto, pair_proto, pair_count)
    out["prototype_purity"] = float(top_in_proto.sum() / len(lab))
    return out


def plot_loss_curve(
    path: str | os.PathLike,
    curve: np.ndarray,
    columns: tuple[str, ...],
    *,
    title: str,
    active: tuple[str, ...],
) -> Path:
    """PNG of the loss terms per step (`curve` [iterations, len(columns)]); written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ccl.io.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    steps = np.arange(1, len(curve) + 1)
    labels = {
        "total": "L (eq. 8)",
        "max": "L_max (eq. 5)",
        "pull": "L_pull (eq. 6)",
        "push": "L_push (eq. 7)",
    }
    for c, name in enumerate(columns):
        if name in active:
            ax.plot(steps, curve[:, c], lw=1.0, label=labels.get(name, name))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if len(curve):
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
