"""Training the prototypes (eq. 4–8) on in-memory arrays: no files, no plotting.

Memory stays O(M·D + (batch_size + 4·pairs_per_step)·N): each step draws `batch_size` masks for L_max
and `pairs_per_step` same-label and as many different-label pairs, never an M×M matrix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ccl.codebook import ops
from ccl.codebook.config import CodebookConfig
from ccl.codebook.supervision import Supervision, supervision_of
from ccl.runlog import progress

log = logging.getLogger(__name__)

LOSS_COLUMNS = ("total", "max", "pull", "push")


@dataclass(frozen=True)
class LossTerms:
    """Which pair terms are on (L_max always is)."""

    pull: bool
    push: bool


@dataclass(frozen=True, eq=False)
class TrainResult:
    prototypes: np.ndarray  # [N, D] float32, unit rows
    prototype_index: np.ndarray  # [M] int32, j* of every mask after training
    init_prototypes: np.ndarray  # [N, D] float32, unit rows, after initialisation (before training)
    init_index: np.ndarray  # [M] int32, j* of every mask after initialisation
    loss_curve: np.ndarray  # [iterations, 4] float32, columns LOSS_COLUMNS; pair terms 0 when off
    terms: LossTerms  # the terms actually trained (pair terms switched off when they cannot apply)


def effective_terms(requested: LossTerms, supervision: Supervision) -> LossTerms:
    """The requested terms less the pair terms that have no pair to act on (`ccl.codebook.supervision`
    defines when). Said in the log at INFO: `fit_codebook` warns the user, naming scene, scale and cause."""
    off = supervision.terms_without_pairs(pull=requested.pull, push=requested.push)
    if off:
        log.info(
            "switched off, no pairs to act on: %s (%s)",
            ", ".join(f"L_{t}" for t in off),
            supervision.why(off),
        )
    return LossTerms(pull=requested.pull and "pull" not in off, push=requested.push and "push" not in off)


def init_prototypes(x, *, cfg: CodebookConfig, generator):
    """[N, D] unit rows from the features: k-means++ (+ spherical k-means) or N random masks."""
    import torch

    m = x.shape[0]
    if m > cfg.kmeans_max_samples:
        sample = torch.randperm(m, generator=generator)[: cfg.kmeans_max_samples].to(x.device)
        x = x[sample]
    if cfg.init == "random":
        pick = torch.randperm(x.shape[0], generator=generator)[: cfg.n_prototypes].to(x.device)
        return x[pick].clone()
    centres = ops.kmeanspp_sphere(x, cfg.n_prototypes, generator=generator)
    return ops.spherical_kmeans(x, centres, iterations=cfg.kmeans_iterations)


def train_prototypes(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    terms: LossTerms,
    cfg: CodebookConfig,
    seed: int,
    device: str = "cpu",
) -> TrainResult:
    """Fit N prototypes to `features` [M, D] (unit rows) with track `labels` [M] (−1 = unmatched).

    L = L_max + λ_pull·L_pull + λ_push·L_push (eq. 8), Adam on W with T = W / ||W|| (T stays on the
    sphere; W is renormalised after each step so the step size does not drift with ||W||).
    Deterministic given `seed` (three independent streams: initialisation, mask batches, pairs, so a
    variant whose pair terms are off reproduces `base` exactly).
    """
    import torch

    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels)
    m = features.shape[0]
    assert labels.shape == (m,), (labels.shape, m)
    assert m >= cfg.n_prototypes, "the caller checks M >= N with a message for the user"

    gen = torch.Generator().manual_seed(int(seed))
    rng_batch = np.random.default_rng([int(seed), 1])
    rng_pairs = np.random.default_rng([int(seed), 2])
    sampler = ops.PairSampler.from_labels(labels)
    terms = effective_terms(terms, supervision_of(labels))

    x = ops.normalize(torch.from_numpy(features).to(device))
    t0 = init_prototypes(x, cfg=cfg, generator=gen)
    init_index = ops.assign_all(x, t0)

    w = torch.nn.Parameter(t0.clone())
    opt = torch.optim.Adam([w], lr=cfg.lr)
    curve = torch.zeros((cfg.iterations, len(LOSS_COLUMNS)), dtype=torch.float32, device=device)
    full_batch = m <= cfg.batch_size

    log.info(
        "training %d prototypes on %d masks (D=%d, %d labelled, %d tracks): terms L_max%s%s, %d steps",
        cfg.n_prototypes,
        m,
        features.shape[1],
        len(sampler.labelled),
        sampler.n_labels,
        " + pull" if terms.pull else "",
        " + push" if terms.push else "",
        cfg.iterations,
    )
    for step in progress(range(cfg.iterations), desc="codebook", total=cfg.iterations, unit="step"):
        t = ops.normalize(w)
        batch = (
            None if full_batch else torch.from_numpy(rng_batch.integers(m, size=cfg.batch_size)).to(device)
        )
        pos = sampler.positive(cfg.pairs_per_step, rng_pairs) if terms.pull else None
        neg = sampler.negative(cfg.pairs_per_step, rng_pairs) if terms.push else None
        loss, l_max, l_pull, l_push = step_losses(x, t, batch=batch, pos=pos, neg=neg, cfg=cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            w.copy_(ops.normalize(w))
            curve[step] = torch.stack([loss, l_max, l_pull, l_push]).detach()

    t_final = ops.normalize(w).detach()
    index = ops.assign_all(x, t_final)
    return TrainResult(
        prototypes=t_final.cpu().numpy().astype(np.float32),
        prototype_index=index.cpu().numpy().astype(np.int32),
        init_prototypes=t0.cpu().numpy().astype(np.float32),
        init_index=init_index.cpu().numpy().astype(np.int32),
        loss_curve=curve.cpu().numpy(),
        terms=terms,
    )


Pairs = tuple[np.ndarray, np.ndarray]  # (i [P], k [P]) mask indices


def step_losses(
    x, t, *, batch, pos: Pairs | None, neg: Pairs | None, cfg: CodebookConfig, shared: bool = True
):
    """(L, L_max, L_pull, L_push) of one step, eq. 5–8, as 0-d tensors with their graphs.

    x [M, D] masks, t [N, D] prototypes; `batch` [B] mask indices for L_max, None = every mask;
    `pos`/`neg` same-/different-label pairs, None = term off. With `batch` None and `shared`, one
    [M, N] product serves L_max and every pair (few masks: cheaper than 4·P rows); otherwise each
    term takes the cosines of its own rows (bounded memory for any M). Both give the same values
    and gradients (tests/codebook/test_train.py).
    """
    import torch

    straight_through = cfg.assignment == "straight_through"
    if batch is None and shared:
        with torch.set_grad_enabled(straight_through and (pos is not None or neg is not None)):
            _, sims_all = ops.nearest_prototype(x, t)
        l_max = (1.0 - (x * t[sims_all.detach().argmax(dim=1)]).sum(dim=1)).mean()

        def pair_sims(idx):
            return sims_all[idx]

    else:
        l_max, _ = ops.loss_max(x if batch is None else x[batch], t)

        def pair_sims(idx):
            with torch.set_grad_enabled(straight_through):
                return ops.nearest_prototype(x[idx], t)[1]

    def pair_prototypes(pairs: Pairs):
        i, k = pairs
        idx = torch.from_numpy(np.concatenate([i, k])).to(t.device)
        both = ops.select_prototypes(
            pair_sims(idx), t, straight_through=straight_through, temperature=cfg.temperature
        )
        return both[: len(i)], both[len(i) :]

    zero = l_max.new_zeros(())
    l_pull = ops.loss_pull(*pair_prototypes(pos)) if pos is not None else zero
    l_push = ops.loss_push(*pair_prototypes(neg), cfg.margin) if neg is not None else zero
    loss = l_max + cfg.lambda_pull * l_pull + cfg.lambda_push * l_push
    return loss, l_max, l_pull, l_push
