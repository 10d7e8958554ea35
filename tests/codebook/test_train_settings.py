"""train_prototypes under the settings the behaviour tests leave at their defaults: random
initialisation, the k-means sample bound, a batch the size of the scene, the pair temperature, and what
a training says (its log line, its progress line) and returns (dtypes, the initial assignment)."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

import ccl.codebook.train as train_mod
from ccl.codebook import CodebookConfig, LossTerms, train_prototypes
from ccl.codebook.testing import clustered_masks

BASE, FULL = LossTerms(False, False), LossTerms(True, True)
FAST = CodebookConfig(n_prototypes=8, iterations=30, lr=0.01, batch_size=64, pairs_per_step=32)


@pytest.fixture(scope="module")
def masks():
    d = clustered_masks(n_masks=200, n_tracks=5, dim=16, seed=1, unmatched=0.2)
    return d.features, d.labels


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_random_initialisation_picks_distinct_masks_of_the_whole_set_by_seed():
    # fewer masks (40) than feature dimensions (64): every pick is a row index of the masks
    d = clustered_masks(n_masks=40, n_tracks=4, dim=64, seed=2, unmatched=0.0)
    cfg = dataclasses.replace(FAST, init="random", iterations=1)
    a = train_prototypes(d.features, d.labels, terms=BASE, cfg=cfg, seed=0)
    again = train_prototypes(d.features, d.labels, terms=BASE, cfg=cfg, seed=0)
    other = train_prototypes(d.features, d.labels, terms=BASE, cfg=cfg, seed=1)
    unit = _unit(d.features.astype(np.float64))
    rows = [int(np.argmax(unit @ p)) for p in a.init_prototypes]
    assert len(set(rows)) == cfg.n_prototypes  # N distinct masks
    np.testing.assert_allclose(a.init_prototypes, unit[rows], atol=1e-6)  # the masks themselves
    np.testing.assert_array_equal(a.init_prototypes, again.init_prototypes)  # by the seed
    assert not np.array_equal(a.init_prototypes, other.init_prototypes)


def test_kmeans_samples_only_above_its_bound_and_by_the_seed(masks):
    f, labels = masks
    m = len(f)
    unbounded = dataclasses.replace(FAST, iterations=1, kmeans_max_samples=10 * m)
    at_bound = dataclasses.replace(unbounded, kmeans_max_samples=m)  # M masks: all used, in order
    below = dataclasses.replace(unbounded, kmeans_max_samples=m // 4)
    ref = train_prototypes(f, labels, terms=BASE, cfg=unbounded, seed=0).init_prototypes
    np.testing.assert_array_equal(
        train_prototypes(f, labels, terms=BASE, cfg=at_bound, seed=0).init_prototypes, ref
    )
    sampled = train_prototypes(f, labels, terms=BASE, cfg=below, seed=0).init_prototypes
    assert not np.array_equal(sampled, ref)
    np.testing.assert_array_equal(
        train_prototypes(f, labels, terms=BASE, cfg=below, seed=0).init_prototypes, sampled
    )


def test_a_batch_the_size_of_the_scene_is_the_full_batch(masks):
    # batch_size M: every mask every step, as any larger batch; one smaller draws masks at random
    f, labels = masks
    full = train_prototypes(
        f, labels, terms=FULL, cfg=dataclasses.replace(FAST, batch_size=10 * len(f)), seed=0
    )
    exact = train_prototypes(f, labels, terms=FULL, cfg=dataclasses.replace(FAST, batch_size=len(f)), seed=0)
    drawn = train_prototypes(
        f, labels, terms=FULL, cfg=dataclasses.replace(FAST, batch_size=len(f) - 1), seed=0
    )
    np.testing.assert_array_equal(exact.prototypes, full.prototypes)
    assert not np.array_equal(drawn.prototypes, full.prototypes)


def test_the_pair_temperature_reaches_the_pair_terms(masks):
    f, labels = masks
    cold = train_prototypes(f, labels, terms=FULL, cfg=dataclasses.replace(FAST, temperature=0.02), seed=0)
    warm = train_prototypes(f, labels, terms=FULL, cfg=dataclasses.replace(FAST, temperature=0.5), seed=0)
    assert not np.array_equal(cold.prototypes, warm.prototypes)


def test_as_many_masks_as_prototypes_trains():
    d = clustered_masks(n_masks=8, n_tracks=2, dim=16, seed=3, unmatched=0.0)
    r = train_prototypes(d.features, d.labels, terms=FULL, cfg=FAST, seed=0)
    assert r.prototypes.shape == (8, 16)


def test_the_result_is_float32_and_int32_and_records_the_initial_assignment(masks):
    f, labels = masks
    r = train_prototypes(f, labels, terms=FULL, cfg=FAST, seed=0)
    assert r.prototypes.dtype == r.init_prototypes.dtype == r.loss_curve.dtype == np.float32
    assert r.prototype_index.dtype == r.init_index.dtype == np.int32
    cos = _unit(f.astype(np.float64)) @ r.init_prototypes.astype(np.float64).T
    np.testing.assert_array_equal(r.init_index, cos.argmax(axis=1))  # each mask's nearest initial prototype
    as64 = train_prototypes(f.astype(np.float64), labels, terms=FULL, cfg=FAST, seed=0)
    np.testing.assert_array_equal(as64.prototypes, r.prototypes)  # computed in float32 whatever it is given


def test_the_log_names_the_terms_trained(masks, caplog):
    f, labels = masks
    with caplog.at_level(logging.INFO, logger="ccl.codebook.train"):
        train_prototypes(f, labels, terms=FULL, cfg=FAST, seed=0)
        train_prototypes(f, labels, terms=BASE, cfg=FAST, seed=0)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training ")]
    n_labelled = int((labels >= 0).sum())
    head = f"training 8 prototypes on 200 masks (D=16, {n_labelled} labelled, 5 tracks): terms L_max"
    assert said == [f"{head} + pull + push, 30 steps", f"{head}, 30 steps"], said


def test_pair_terms_without_pairs_are_switched_off_and_said(caplog):
    d = clustered_masks(n_masks=40, n_tracks=4, dim=16, seed=2, unmatched=0.0)
    unlabelled = np.full(len(d.features), -1)
    with caplog.at_level(logging.INFO, logger="ccl.codebook.train"):
        r = train_prototypes(d.features, unlabelled, terms=FULL, cfg=FAST, seed=0)
    assert r.terms == BASE
    said = [m for m in caplog.messages if m.startswith("switched off")]
    assert len(said) == 1 and said[0].startswith("switched off, no pairs to act on: L_pull, L_push ("), said


def test_the_progress_line_counts_steps(masks, monkeypatch):
    from progress_testkit import record_progress

    f, labels = masks
    seen = record_progress(monkeypatch, train_mod)
    train_prototypes(f, labels, terms=BASE, cfg=FAST, seed=0)
    assert seen == {"desc": "codebook", "total": 30, "unit": "step"}
