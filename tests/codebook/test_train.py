"""Training behaviour: what pull and push do to a codebook, bounded memory, determinism, eq. 8."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from ccl.codebook import CodebookConfig, LossTerms, ops, train_prototypes
from ccl.codebook.diagnostics import assignment_stats
from ccl.codebook.testing import clustered_masks

BASE, PULL, PUSH, FULL = (
    LossTerms(False, False),
    LossTerms(True, False),
    LossTerms(False, True),
    LossTerms(True, True),
)
# Small, fast settings; lr higher than the default because runs are short.
FAST = CodebookConfig(n_prototypes=24, iterations=150, lr=0.01, batch_size=256, pairs_per_step=128)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def oversplit_tracks():
    """6 tracks, each a cloud of masks (CLIP-like spreads), and 4x as many prototypes as tracks:
    k-means (base) cuts every track's cloud into several cells, i.e. each track straddles clusters."""
    d = clustered_masks(n_masks=600, n_tracks=6, dim=64, seed=0, unmatched=0.0)
    return d.features, d.labels


def test_pull_puts_same_track_masks_on_one_prototype_where_base_splits_them(oversplit_tracks):
    f, labels = oversplit_tracks
    base = train_prototypes(f, labels, terms=BASE, cfg=FAST, seed=0)
    pull = train_prototypes(f, labels, terms=PULL, cfg=FAST, seed=0)
    s_base = assignment_stats(base.prototype_index, labels, FAST.n_prototypes)
    s_pull = assignment_stats(pull.prototype_index, labels, FAST.n_prototypes)
    assert s_base["single_prototype_track_fraction"] == 0.0, "the construction must split every track"
    assert s_pull["single_prototype_track_fraction"] >= 0.8
    assert s_pull["track_majority_share"] > s_base["track_majority_share"] + 0.3
    assert s_pull["prototype_purity"] > 0.95, "pull must not merge different tracks onto one prototype"


def test_hard_assignment_pull_cannot_hand_masks_over(oversplit_tracks):
    # Why straight_through is the default: with the hard argmax's gradient alone, pull only draws the
    # split prototypes together; no track ends up on one prototype.
    f, labels = oversplit_tracks
    cfg = dataclasses.replace(FAST, assignment="hard")
    pull = train_prototypes(f, labels, terms=PULL, cfg=cfg, seed=0)
    s = assignment_stats(pull.prototype_index, labels, cfg.n_prototypes)
    assert s["single_prototype_track_fraction"] == 0.0


@pytest.mark.parametrize("assignment", ["straight_through", "hard"])
def test_pull_brings_the_prototypes_of_a_track_made_of_two_separate_clusters_closer(assignment):
    # A track seen as two distinct, tight clusters (cos 0.6 apart) keeps two prototypes (no local move
    # merges them), but pull makes those prototypes more alike than base does: eq. 6 at work.
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    a, b = q[0], 0.6 * q[0] + 0.8 * q[1]
    centres = [a, b, q[2], q[3]]
    f = np.concatenate([_unit(c + 0.03 * rng.normal(size=(40, 16))) for c in centres]).astype(np.float32)
    labels = np.repeat([0, 0, 1, 2], 40).astype(np.int32)
    cfg = dataclasses.replace(FAST, n_prototypes=4, assignment=assignment)
    cos_ab = {}
    for name, terms in (("base", BASE), ("pull", PULL)):
        r = train_prototypes(f, labels, terms=terms, cfg=cfg, seed=0)
        ja, jb = np.bincount(r.prototype_index[:40]).argmax(), np.bincount(r.prototype_index[40:80]).argmax()
        assert ja != jb
        cos_ab[name] = float(r.prototypes[ja] @ r.prototypes[jb])
    assert cos_ab["base"] == pytest.approx(0.6, abs=0.05)
    assert cos_ab["pull"] > cos_ab["base"] + 0.1


@pytest.mark.parametrize("assignment", ["straight_through", "hard"])
def test_push_separates_close_prototypes_of_different_tracks(assignment):
    # Two tracks whose features are 0.95 apart in cosine (above the margin 0.7): base keeps their
    # prototypes at the cluster means (cos ~0.95); push drives them apart, towards the margin.
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    a, b = q[0], 0.95 * q[0] + np.sqrt(1 - 0.95**2) * q[1]
    f = np.concatenate([_unit(c + 0.01 * rng.normal(size=(60, 16))) for c in (a, b, q[2])]).astype(np.float32)
    labels = np.repeat([0, 1, 2], 60).astype(np.int32)
    cfg = dataclasses.replace(FAST, n_prototypes=3, assignment=assignment)
    cos_ab = {}
    for name, terms in (("base", BASE), ("push", PUSH)):
        r = train_prototypes(f, labels, terms=terms, cfg=cfg, seed=0)
        ja, jb = r.prototype_index[0], r.prototype_index[60]
        assert ja != jb
        cos_ab[name] = float(r.prototypes[ja] @ r.prototypes[jb])
    assert cos_ab["base"] > 0.93
    assert cos_ab["push"] < cos_ab["base"] - 0.1


def test_same_seed_same_codebook_other_seed_other_init(oversplit_tracks):
    f, labels = oversplit_tracks
    cfg = dataclasses.replace(FAST, iterations=20)
    a = train_prototypes(f, labels, terms=FULL, cfg=cfg, seed=3)
    b = train_prototypes(f, labels, terms=FULL, cfg=cfg, seed=3)
    c = train_prototypes(f, labels, terms=FULL, cfg=cfg, seed=4)
    assert np.array_equal(a.prototypes, b.prototypes)
    assert np.array_equal(a.prototype_index, b.prototype_index)
    assert np.array_equal(a.loss_curve, b.loss_curve)
    assert not np.array_equal(a.init_prototypes, c.init_prototypes)


def test_all_labels_unmatched_trains_l_max_alone_and_equals_base(oversplit_tracks, caplog):
    f, _ = oversplit_tracks
    labels = np.full(len(f), -1, np.int32)
    cfg = dataclasses.replace(FAST, iterations=30)
    base = train_prototypes(f, labels, terms=BASE, cfg=cfg, seed=0)
    with caplog.at_level(logging.INFO, logger="ccl.codebook.train"):
        full = train_prototypes(f, labels, terms=FULL, cfg=cfg, seed=0)
    # said at INFO: fit_codebook warns the user with scene, scale and cause (tests/codebook/test_supervision.py)
    assert "switched off, no pairs to act on: L_pull, L_push (every mask's track label is -1" in caplog.text
    assert full.terms == BASE
    assert np.array_equal(full.prototypes, base.prototypes)
    assert np.array_equal(full.prototype_index, base.prototype_index)


def test_total_loss_is_eq8_and_pair_terms_are_zero_when_off(oversplit_tracks):
    f, labels = oversplit_tracks
    cfg = dataclasses.replace(FAST, iterations=10, lambda_pull=0.3, lambda_push=0.7, margin=0.2)
    full = train_prototypes(f, labels, terms=FULL, cfg=cfg, seed=0).loss_curve
    total, l_max, l_pull, l_push = full.T
    np.testing.assert_allclose(total, l_max + 0.3 * l_pull + 0.7 * l_push, rtol=1e-5, atol=1e-6)
    assert (l_push > 0).all()
    base = train_prototypes(f, labels, terms=BASE, cfg=cfg, seed=0).loss_curve
    assert (base[:, 2:] == 0).all() and np.array_equal(base[:, 0], base[:, 1])


def test_steps_touch_bounded_batches_never_all_masks(monkeypatch):
    # 30,000 masks: every similarity product inside a training step has at most
    # max(batch_size, 2 * pairs_per_step) rows; none has M rows (let alone M×M entries).
    m, cfg = 30_000, CodebookConfig(n_prototypes=16, iterations=3, batch_size=256, pairs_per_step=128,
                                    kmeans_max_samples=2000, kmeans_iterations=1)  # fmt: skip
    d = clustered_masks(n_masks=m, n_tracks=50, dim=8, seed=0)
    rows: list[int] = []
    pair_rows: list[int] = []
    real_nearest, real_pull, real_push = ops.nearest_prototype, ops.loss_pull, ops.loss_push

    def spy_nearest(features, prototypes):
        rows.append(features.shape[0])
        return real_nearest(features, prototypes)

    def spy_pull(t_i, t_k):
        pair_rows.append(t_i.shape[0])
        return real_pull(t_i, t_k)

    def spy_push(t_i, t_k, margin):
        pair_rows.append(t_i.shape[0])
        return real_push(t_i, t_k, margin)

    monkeypatch.setattr(ops, "nearest_prototype", spy_nearest)
    monkeypatch.setattr(ops, "loss_pull", spy_pull)
    monkeypatch.setattr(ops, "loss_push", spy_push)
    r = train_prototypes(d.features, d.labels, terms=FULL, cfg=cfg, seed=0)
    assert len(rows) == 3 * 3  # per step: one L_max batch, one pull batch, one push batch
    assert max(rows) <= max(cfg.batch_size, 2 * cfg.pairs_per_step) < m
    assert pair_rows == [cfg.pairs_per_step] * 6
    assert r.prototype_index.shape == (m,)


@pytest.mark.parametrize("pairs", ["pull", "push", "both"])
@pytest.mark.parametrize("assignment", ["straight_through", "hard"])
def test_shared_product_step_equals_per_term_reference(oversplit_tracks, assignment, pairs):
    # The few-masks fast path (one [M, N] product for L_max and all pairs) against each term computing
    # its own cosines: same losses and same prototype gradient, with either pair term alone (the pull
    # and push variants) or both.
    import torch

    from ccl.codebook.train import step_losses

    f, labels = oversplit_tracks
    cfg = dataclasses.replace(FAST, assignment=assignment, margin=0.3)
    x = torch.from_numpy(f)
    s = ops.PairSampler.from_labels(labels)
    rng = np.random.default_rng(0)
    pos, neg = s.positive(64, rng), s.negative(64, rng)
    pos, neg = (pos if pairs != "push" else None), (neg if pairs != "pull" else None)
    w0 = ops.normalize(torch.randn(FAST.n_prototypes, f.shape[1], generator=torch.Generator().manual_seed(0)))
    results = []
    for shared in (True, False):
        w = w0.clone().requires_grad_(True)
        losses = step_losses(x, ops.normalize(w), batch=None, pos=pos, neg=neg, cfg=cfg, shared=shared)
        losses[0].backward()
        results.append(([float(v.detach()) for v in losses], w.grad.clone()))
    (fast, g_fast), (ref, g_ref) = results
    # float32 sums over 600 masks and 64 pairs: relative 1e-5 covers summation-order differences.
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-7)
    active = [fast[2] > 0, fast[3] > 0]
    assert active == [pos is not None, neg is not None], "each pair term on must be active for the comparison to mean something"
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-7)
