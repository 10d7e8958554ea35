"""Small pure functions of the codebook stage: the losses of eq. 4–8, initialisation, pair sampling.

Everything on the unit sphere: features F [M, D] and prototypes T [N, D] are L2-normalised rows, so a
cosine is a dot product. Torch is imported inside the functions (`import ccl.codebook` stays light),
except `paint_index_map`, which is numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# Norms below this are treated as zero vectors (a prototype parameter or a feature row).
EPS = 1e-12


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (the prototype parameterisation T = W / ||W||)."""
    import torch

    return torch.nn.functional.normalize(x, dim=-1, eps=EPS)


def nearest_prototype(features: torch.Tensor, prototypes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4: j* = argmax_j cos(F_i, T_j). Returns (j* [B] int64, cosines [B, N])."""
    sims = features @ prototypes.T
    return sims.detach().argmax(dim=1), sims


def loss_max(features: torch.Tensor, prototypes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5: mean_i (1 − cos(F_i, T_j*(i))). Returns (loss, j* [B]).

    The argmax is a hard selection: the gradient reaches only the selected prototypes (computed as
    F_i · T_j*, so the backward pass is a scatter of B rows, not a [B, N] product).
    """
    import torch

    with torch.no_grad():
        j, _ = nearest_prototype(features, prototypes)
    picked = (features * prototypes[j]).sum(dim=1)
    return (1.0 - picked).mean(), j


def loss_pull(t_i: torch.Tensor, t_k: torch.Tensor) -> torch.Tensor:
    """Eq. 6 over a batch of same-label pairs: mean (1 − cos(T_j*(i), T_j*(k))). Rows are unit vectors."""
    return (1.0 - (t_i * t_k).sum(dim=1)).mean()


def loss_push(t_i: torch.Tensor, t_k: torch.Tensor, margin: float) -> torch.Tensor:
    """Eq. 7 over a batch of different-label pairs: mean ReLU(cos(T_j*(i), T_j*(k)) − m)."""
    import torch

    return torch.relu((t_i * t_k).sum(dim=1) - margin).mean()


def assigned_prototypes(
    features: torch.Tensor,
    prototypes: torch.Tensor,
    *,
    straight_through: bool = False,
    temperature: float = 0.1,
) -> torch.Tensor:
    """T_j*(i) for each row of `features` [P, D] -> [P, D]; see `select_prototypes`."""
    import torch

    with torch.set_grad_enabled(straight_through and torch.is_grad_enabled()):
        _, sims = nearest_prototype(features, prototypes)
    return select_prototypes(sims, prototypes, straight_through=straight_through, temperature=temperature)


def select_prototypes(
    sims: torch.Tensor,
    prototypes: torch.Tensor,
    *,
    straight_through: bool = False,
    temperature: float = 0.1,
) -> torch.Tensor:
    """T_j*(i) from the cosines `sims` [P, N] of P masks with the prototypes -> [P, D].

    The value is always the hard selection of eq. 4, so every loss value is exactly eq. 6–7.
    hard (the paper, read literally): the gradient of a pair term reaches only the two selected
    prototypes and moves them along their geodesic, towards (pull) or away from (push) each other. A
    mask's nearest prototype then never changes because of a pair term: the prototype holding the
    mask stays between the mask and its partner's prototype, so a track split over two prototypes stays
    split (its prototypes become near-duplicates instead).
    straight_through: the same hard gradient, plus the gradient of the soft assignment
    q_i = softmax(cos(F_i, T) / temperature) with the prototype values held fixed,
    i.e. T_j*(i) + (q_i @ sg(T) − sg(q_i @ T)). That term moves a prototype towards the masks it
    should take over (the one agreeing with the pair partner) and away from those it should give up,
    so a pair term can hand a mask to another prototype. Needs `sims` with its graph.
    """
    import torch

    hard = prototypes[sims.detach().argmax(dim=1)]
    if not straight_through:
        return hard
    soft = torch.softmax(sims / temperature, dim=1) @ prototypes.detach()
    return hard + (soft - soft.detach())


# ------------------------------------------------------------------------------------------ init


def kmeanspp_sphere(x: torch.Tensor, n: int, *, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding on the unit sphere: D²-sampling with the cosine distance 1 − cos.

    x: [M, D] unit rows, M >= n. Returns [n, D] unit rows, each a row of x. O(n·M·D), no M×M matrix.
    """
    import torch

    m = x.shape[0]
    assert m >= n, "caller checks that there are at least as many masks as prototypes"
    first = int(torch.randint(m, (1,), generator=generator))
    chosen = [first]
    dist = (1.0 - x @ x[first]).clamp_min(0.0)
    for _ in range(1, n):
        total = float(dist.sum())
        if total <= 0.0:
            # Every remaining point coincides with a chosen centre: pick uniformly among the unchosen.
            free = torch.ones(m, dtype=torch.bool)
            free[torch.tensor(chosen)] = False
            cand = torch.nonzero(free).squeeze(1)
            nxt = int(cand[torch.randint(len(cand), (1,), generator=generator)])
        else:
            nxt = int(torch.multinomial(dist.cpu().double() / total, 1, generator=generator))
        chosen.append(nxt)
        dist = torch.minimum(dist, (1.0 - x @ x[nxt]).clamp_min(0.0))
    return x[torch.tensor(chosen, device=x.device)].clone()


def spherical_kmeans(
    x: torch.Tensor, centres: torch.Tensor, *, iterations: int, chunk: int = 65536
) -> torch.Tensor:
    """Lloyd iterations with cosine assignment and normalised means; an empty cluster keeps its centre."""
    import torch

    for _ in range(iterations):
        sums = torch.zeros_like(centres)
        counts = torch.zeros(centres.shape[0], dtype=x.dtype, device=x.device)
        for s in range(0, x.shape[0], chunk):
            xb = x[s : s + chunk]
            j = (xb @ centres.T).argmax(dim=1)
            sums.index_add_(0, j, xb)
            counts.index_add_(0, j, torch.ones_like(j, dtype=x.dtype))
        keep = counts > 0
        centres = torch.where(keep[:, None], normalize(sums), centres)
    return centres


def assign_all(x: torch.Tensor, prototypes: torch.Tensor, *, chunk: int = 65536) -> torch.Tensor:
    """j* for every row of x [M, D], in chunks (memory O(chunk·N)). Returns [M] int64."""
    import torch

    out = [(x[s : s + chunk] @ prototypes.T).argmax(dim=1) for s in range(0, x.shape[0], chunk)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=x.device)


# ---------------------------------------------------------------------------------- pair sampling


@dataclass(frozen=True)
class PairSampler:
    """Draws same-label and different-label mask pairs in fixed-size batches (never an M×M matrix).

    Built once from the labels; memory O(M). Masks with label −1 are never drawn.
    """

    labelled: np.ndarray  # [L] int64, indices of masks with label >= 0
    label_of: np.ndarray  # [L] int64, label of each entry of `labelled`
    order: np.ndarray  # [L] int64, positions into `labelled` sorted by label
    start: np.ndarray  # [L] int64, for each entry of `labelled`: first position of its label in `order`
    count: np.ndarray  # [L] int64, for each entry of `labelled`: masks with its label
    pos_anchor: np.ndarray  # [A] int64, positions into `labelled` whose label has >= 2 masks
    n_labels: int

    @classmethod
    def from_labels(cls, labels: np.ndarray) -> PairSampler:
        labels = np.asarray(labels).astype(np.int64, copy=False)
        labelled = np.flatnonzero(labels >= 0)
        lab = labels[labelled]
        order = np.argsort(lab, kind="stable")
        uniq, first, counts = np.unique(lab[order], return_index=True, return_counts=True)
        which = np.searchsorted(uniq, lab)
        start, count = first[which].astype(np.int64), counts[which].astype(np.int64)
        return cls(
            labelled=labelled,
            label_of=lab,
            order=order.astype(np.int64),
            start=start,
            count=count,
            pos_anchor=np.flatnonzero(count >= 2).astype(np.int64),
            n_labels=len(uniq),
        )

    @property
    def has_positive(self) -> bool:
        """Some label has two masks, so same-label pairs exist (L_pull is defined)."""
        return len(self.pos_anchor) > 0

    @property
    def has_negative(self) -> bool:
        """Two labels exist, so different-label pairs exist (L_push is defined)."""
        return self.n_labels >= 2

    def positive(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n same-label pairs (i, k), i != k, as mask indices [n], [n]: anchor uniform over labelled
        masks of tracks with >= 2 masks, partner uniform over the other masks of its track."""
        a = self.pos_anchor[rng.integers(len(self.pos_anchor), size=n)]
        # Partner among the count−1 other members: draw r in [0, count−1), skip the anchor's own slot.
        rank_of_a = self._rank[a]
        r = (rng.random(n) * (self.count[a] - 1)).astype(np.int64)
        r = r + (r >= rank_of_a)
        b = self.order[self.start[a] + r]
        return self.labelled[a], self.labelled[b]

    def negative(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n different-label pairs (i, k), each mask uniform over labelled masks, rejection-sampled."""
        out_a = np.empty(0, np.int64)
        out_b = np.empty(0, np.int64)
        while len(out_a) < n:
            a = rng.integers(len(self.labelled), size=n)
            b = rng.integers(len(self.labelled), size=n)
            ok = self.label_of[a] != self.label_of[b]
            out_a = np.concatenate([out_a, a[ok]])
            out_b = np.concatenate([out_b, b[ok]])
        return self.labelled[out_a[:n]], self.labelled[out_b[:n]]

    @property
    def _rank(self) -> np.ndarray:
        # Position of each labelled entry within its label's run of `order` (cached on first use).
        rank = self.__dict__.get("_rank_cache")
        if rank is None:
            rank = np.empty(len(self.order), np.int64)
            rank[self.order] = np.arange(len(self.order)) - self.start[self.order]
            object.__setattr__(self, "_rank_cache", rank)
        return rank


# ------------------------------------------------------------------------------------ index maps


def paint_index_map(segmentation: np.ndarray, prototype_index: np.ndarray) -> np.ndarray:
    """A frame's index map: each mask's prototype index painted over its pixels.

    segmentation: [H, W] int, mask index per pixel, −1 none. prototype_index: [M] int, j* per mask.
    Returns [H, W] int64, −1 where no mask covers the pixel.
    """
    seg = np.asarray(segmentation)
    idx = np.asarray(prototype_index)
    if seg.ndim != 2 or idx.ndim != 1:
        raise ValueError(
            f"paint_index_map: expected segmentation [H, W] and prototype_index [M], "
            f"got shapes {seg.shape} and {idx.shape}"
        )
    if seg.size:
        lo, hi = int(seg.min()), int(seg.max())
        if lo < -1 or hi >= len(idx):
            raise ValueError(
                f"paint_index_map: segmentation holds mask indices in [{lo}, {hi}] but prototype_index "
                f"has {len(idx)} masks (valid: -1..{len(idx) - 1}); are they from the same frame and scale?"
            )
    # A lookup table whose last entry is −1: index −1 (no mask) reads it.
    lut = np.concatenate([idx.astype(np.int64), np.array([-1], np.int64)])
    return lut[seg]
