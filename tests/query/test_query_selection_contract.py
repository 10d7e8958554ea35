"""What a caller of ccl.query gets back: text embeddings in query order, relevance of dense feature maps,
and the 3D selection (its fields, the threshold being strict, the negatives on by default)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from ccl.features import FeaturesConfig, encode_text
from ccl.query import QueryConfig, feature_relevance, from_arrays, prototype_relevance, select_gaussians
from ccl.query.relevance import text_embeddings

# float32 relevance: softmax of float32 logits; 1e-6 covers float32 rounding of exp and sums.
ATOL32 = 1e-6


def test_text_embeddings_keep_queries_and_negatives_apart_in_order():
    cfg = QueryConfig(negatives=("object", "stuff"))
    features_cfg = FeaturesConfig(backend="sim")
    emb = text_embeddings(["red mug", "teddy bear"], cfg=cfg, features_cfg=features_cfg)
    assert emb.queries == ("red mug", "teddy bear") and emb.negative_phrases == ("object", "stuff")
    one_by_one = [encode_text([p], cfg=features_cfg, device="cpu")[0] for p in emb.queries + cfg.negatives]
    np.testing.assert_allclose(emb.positives, one_by_one[:2], atol=1e-6)
    np.testing.assert_allclose(emb.negatives, one_by_one[2:], atol=1e-6)


def test_text_embeddings_run_the_encoder_on_the_cpu_unless_told_and_check_what_it_returns(monkeypatch):
    import ccl.features

    calls = []

    def encoder(phrases, *, cfg, device):  # a text encoder that returns one row too few
        calls.append(device)
        return np.ones((len(phrases) - 1, 4))

    monkeypatch.setattr(ccl.features, "encode_text", encoder)
    cfg = QueryConfig(negatives=("object",))
    with pytest.raises(ValueError, match=r"^encode_text returned shape \(2, 4\) for 3 phrases$"):
        text_embeddings(["mug", "bear"], cfg=cfg, features_cfg=None)
    with pytest.raises(ValueError, match="returned shape"):
        text_embeddings(["mug", "bear"], cfg=cfg, features_cfg=None, device="cuda:1")
    assert calls == ["cpu", "cuda:1"]


def test_relevance_of_a_dense_feature_map_is_per_pixel():
    # a single query in paper mode is completed by the negatives along the feature axis of an [H, W, D] map
    cfg = QueryConfig(mode="paper", temperature=0.1, negatives=("x",))
    eye = np.eye(2, dtype=np.float32)
    emb = from_arrays(["mug"], eye[:1], eye[1:], cfg=cfg)
    image = np.stack([np.stack([eye[0], eye[1], eye[0]])] * 2)  # [2, 3, 2]: query, negative, query
    rel = feature_relevance(image, emb, cfg=cfg)
    hit, miss = math.exp(10) / (math.exp(10) + 1), 1 / (math.exp(10) + 1)
    np.testing.assert_allclose(rel[..., 0], [[hit, miss, hit]] * 2, atol=ATOL32)


def test_prototypes_of_the_wrong_rank_are_refused_with_their_shape():
    cfg = QueryConfig(negatives=("a", "b"))
    emb = from_arrays(["mug"], np.eye(3, dtype=np.float32)[:1], np.eye(3, dtype=np.float32)[1:], cfg=cfg)
    with pytest.raises(ValueError, match=r"expected \[N, D\], got shape \(3,\)"):
        prototype_relevance(np.ones(3, np.float32), emb, cfg=cfg)


@pytest.fixture
def two_texts():
    """Prototypes e0 (the mug), e1 (the bear), e2 (the negative 'object'), and one halfway mug/object."""
    eye = np.eye(3, dtype=np.float32)
    cfg = QueryConfig(mode="paper", temperature=0.1, threshold=0.5, negatives=("object",))
    emb = from_arrays(["mug", "bear"], eye[:2], eye[2:], cfg=cfg)
    protos = np.concatenate([eye, (eye[:1] + eye[2:]) / math.sqrt(2)])
    return cfg, emb, protos


def test_selection_uses_the_negatives_by_default(two_texts):
    cfg, emb, protos = two_texts
    classes = np.array([2, 0, 1, 2])
    sel = select_gaussians(classes, protos, emb, cfg=cfg)
    # the negative's Gaussians match neither text: e^0 / (e^10 + 2) each, not the 50/50 of eq. 10 alone
    np.testing.assert_allclose(sel.relevance[:, 0], [1 / (math.exp(10) + 2)] * 2, atol=ATOL32)
    assert sel.selected.tolist() == [False, True, True, False]
    closed = select_gaussians(classes, protos, emb, cfg=cfg, with_negatives=False)
    np.testing.assert_allclose(closed.relevance[:, 0], [0.5, 0.5], atol=ATOL32)


def test_selection_reports_its_queries_classes_and_threshold(two_texts):
    cfg, emb, protos = two_texts
    classes = np.array([[0], [1], [3]])  # a decoder's argmax with its kept axis
    sel = select_gaussians(classes, protos, emb, cfg=cfg)
    assert sel.queries == ("mug", "bear")
    assert sel.classes.tolist() == [0, 1, 3] and sel.classes.dtype == np.int64
    assert sel.threshold == 0.5 and sel.relevance.shape == (2, 3)


def test_a_gaussian_exactly_at_the_threshold_is_not_selected(two_texts):
    cfg, emb, protos = two_texts
    # prototype 3 lies halfway between 'mug' and 'object' (bear: cos 0): mug relevance e^a/(2e^a+1), a=10/√2
    a = 10 / math.sqrt(2)
    rel = float(prototype_relevance(protos[3:], emb, cfg=cfg, with_negatives=True)[0, 0])
    assert rel == pytest.approx(math.exp(a) / (2 * math.exp(a) + 1), abs=ATOL32)
    at = QueryConfig(mode="paper", temperature=0.1, threshold=rel, negatives=("object",))
    sel = select_gaussians(np.array([3]), protos, emb, cfg=at)
    assert not sel.selected[0]  # "above the threshold": strictly


def test_selection_logs_how_many_gaussians_it_kept(two_texts, caplog):
    cfg, emb, protos = two_texts
    with caplog.at_level(logging.INFO, logger="ccl.query.relevance"):
        select_gaussians(np.array([0, 2, 1, 0, 2]), protos, emb, cfg=cfg)
    assert "query3d ['mug', 'bear']: 3 of 5 Gaussians above 0.50 (paper mode)" in caplog.messages
