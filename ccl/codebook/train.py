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


def effective_terms(requested: LossTerms, sampler: ops.PairSampler) -> LossTerms:
    """Switch off a pair term that has no pairs to act on, and say so in the log."""
    pull, push = requested.pull, requested.push
    if (pull or push) and len(sampler.labelled) == 0:
        log.warning(
            "every mask's track label is -1 (unmatched): the pull and push losses have no pairs and "
            "vanish; training L_max alone (the result equals the 'base' variant)"
        )
        return LossTerms(pull=False, push=False)
    if pull and not sampler.has_positive:
        log.warning("no track has two masks: L_pull has no same-label pairs and is switched off")
        pull = False
    if push and not sampler.has_negative:
        log.warning("fewer than two tracks: L_push has no different-label pairs and is switched off")
        push = False
    return LossTerms(pull=pull, push=push)


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
    terms = effective_terms(terms, sampler)
    straight_through = cfg.assignment == "straight_through"

    x = ops.normalize(torch.from_numpy(features).to(device))
    t0 = init_prototypes(x, cfg=cfg, generator=gen)
    init_index = ops.assign_all(x, t0)

    w = torch.nn.Parameter(t0.clone())
    opt = torch.optim.Adam([w], lr=cfg.lr)
    curve = torch.zeros((cfg.iterations, len(LOSS_COLUMNS)), dtype=torch.float32, device=device)
    full_batch = m <= cfg.batch_size
    batch_all = torch.arange(m, device=device)

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
    for step in progress(range(cfg.iterations), desc="codebook", total=cfg.iterations):
        t = ops.normalize(w)
        if full_batch:
            batch = batch_all
        else:
            batch = torch.from_numpy(rng_batch.integers(m, size=cfg.batch_size)).to(device)
        l_max, _ = ops.loss_max(x[batch], t)
        loss = l_max
        zero = l_max.new_zeros(())
        l_pull = l_push = zero
        if terms.pull:
            i, k = sampler.positive(cfg.pairs_per_step, rng_pairs)
            t_i, t_k = _pair_prototypes(x, t, i, k, straight_through, cfg.temperature)
            l_pull = ops.loss_pull(t_i, t_k)
            loss = loss + cfg.lambda_pull * l_pull
        if terms.push:
            i, k = sampler.negative(cfg.pairs_per_step, rng_pairs)
            t_i, t_k = _pair_prototypes(x, t, i, k, straight_through, cfg.temperature)
            l_push = ops.loss_push(t_i, t_k, cfg.margin)
            loss = loss + cfg.lambda_push * l_push
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


def _pair_prototypes(x, t, i: np.ndarray, k: np.ndarray, straight_through: bool, temperature: float):
    """T_j*(i), T_j*(k) for a batch of pairs, from one [2P, N] similarity product."""
    import torch

    idx = torch.from_numpy(np.concatenate([i, k])).to(x.device)
    both = ops.assigned_prototypes(x[idx], t, straight_through=straight_through, temperature=temperature)
    return both[: len(i)], both[len(i) :]
