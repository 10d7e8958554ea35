"""ccl.query: the two relevance rules, LangSplat's smoothing and scale choice, painting, 3D selection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ccl.query import (
    QueryConfig,
    box_filter,
    choose_scale,
    feature_relevance,
    from_arrays,
    langsplat_relevance,
    paper_relevance,
    prototype_relevance,
    relevance_maps,
    scale_sets,
    select_gaussians,
    validate_queries,
)
from ccl.query.ops import paint

# float32 relevance: softmax of float32 logits; 1e-6 covers float32 rounding of exp and sums.
ATOL32 = 1e-6


def _unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("bad", ["", "   ", "\t"])
def test_empty_query_string_is_refused(bad):
    with pytest.raises(ValueError, match="empty query string"):
        validate_queries(["egg", bad])


def test_repeated_and_missing_queries_are_refused():
    with pytest.raises(ValueError, match="repeated queries \\['egg'\\]"):
        validate_queries(["egg", "corn", "egg"])
    with pytest.raises(ValueError, match="no text query"):
        validate_queries([])
    assert validate_queries("egg") == ("egg",)


def test_paper_relevance_closed_form():
    # cosines 1 and 0 against two queries, temperature 0.1: p = e^10 / (e^10 + 1)
    p = paper_relevance(np.array([[1.0, 0.0]]), temperature=0.1)
    assert p[0, 0] == pytest.approx(math.exp(10) / (math.exp(10) + 1), abs=ATOL32)
    assert p.sum() == pytest.approx(1.0, abs=ATOL32)


def _langsplat_reference(pos, neg):
    """LangSplat's get_relevancy re-derived with torch: per negative a 2-way softmax of 10·cos, then the
    entry of the negative where the query's probability is smallest (argmin + gather)."""
    import torch

    pos_t = torch.tensor(pos)[:, None].repeat(1, neg.shape[1])  # [P, K]
    sims = torch.stack((pos_t, torch.tensor(neg)), dim=-1)  # [P, K, 2]
    sm = torch.softmax(10 * sims, dim=-1)
    best = sm[..., 0].argmin(dim=1)
    return sm[torch.arange(sm.shape[0]), best, 0].numpy()


def test_langsplat_relevance_matches_its_definition():
    rng = np.random.default_rng(0)
    feats, text, negs = _unit(rng, 500, 16), _unit(rng, 3, 16), _unit(rng, 4, 16)
    pos_s, neg_s = feats @ text.T, feats @ negs.T
    got = langsplat_relevance(pos_s, neg_s)  # [500, 3]
    for q in range(3):
        np.testing.assert_allclose(got[:, q], _langsplat_reference(pos_s[:, q], neg_s), atol=ATOL32)
    # the minimum over negatives is the sigmoid of 10·(cos_q − max_k cos_k)
    want = 1 / (1 + np.exp(-10 * (pos_s - neg_s.max(axis=1, keepdims=True))))
    np.testing.assert_allclose(got, want, atol=ATOL32)


def test_box_filter_is_cv2_filter2d_with_reflect101_and_centre_anchor():
    # independent reference: pad 15 before, 14 after (anchor (15, 15) of a 30-wide kernel), reflect-101
    from numpy.lib.stride_tricks import sliding_window_view

    rng = np.random.default_rng(1)
    for shape in [(48, 64), (12, 9)]:
        x = rng.random(shape, dtype=np.float32)
        ref = sliding_window_view(np.pad(x, ((15, 14), (15, 14)), mode="reflect"), (30, 30)).mean(axis=(2, 3))
        np.testing.assert_allclose(box_filter(x), ref, atol=1e-6)


def test_scale_is_chosen_by_smoothed_peak_not_raw_peak():
    maps = np.zeros((2, 80, 100), np.float32)
    maps[0, 40, 50] = 1.0  # a lone spike: raw max 1.0, smoothed max 0.5 · (1/900 + 1) ≈ 0.5006
    maps[1, 20:60, 30:70] = 0.8  # a 40×40 plateau: smoothed max 0.8
    assert choose_scale(maps) == 1
    assert choose_scale(maps[::-1].copy()) == 0


def test_paint_and_relevance_maps_equal_dense_features():
    rng = np.random.default_rng(2)
    cfg = QueryConfig(mode="paper")
    protos = _unit(rng, 6, 8)
    emb = from_arrays(["a", "b", "c"], _unit(rng, 3, 8), _unit(rng, 4, 8), cfg=cfg)
    class_map = rng.integers(-1, 6, size=(10, 12))
    fast = relevance_maps(class_map, prototype_relevance(protos, emb, cfg=cfg))  # [3, 10, 12]
    dense = np.moveaxis(feature_relevance(protos[np.maximum(class_map, 0)], emb, cfg=cfg), -1, 0)
    dense[:, class_map < 0] = 0.0  # no class: relevance 0
    np.testing.assert_allclose(fast, dense, atol=ATOL32)
    with pytest.raises(ValueError, match="different runs"):
        paint(np.array([[0, 7]]), np.zeros((6, 1)))


def test_single_query_paper_mode_uses_the_negatives():
    cfg = QueryConfig(mode="paper", temperature=0.1)
    text = np.eye(4, dtype=np.float32)[:1]
    negs = np.eye(4, dtype=np.float32)[1:]
    emb = from_arrays(["mug"], text, negs, cfg=cfg.__class__(negatives=("x", "y", "z")))
    rel = feature_relevance(np.eye(4, dtype=np.float32), emb, cfg=cfg)  # feature = each basis vector
    # feature e0 matches the query: e^10 / (e^10 + 3); e1 matches a negative: 1 / (e^10 + 3)
    assert rel[0, 0] == pytest.approx(math.exp(10) / (math.exp(10) + 3), abs=ATOL32)
    assert rel[1, 0] == pytest.approx(1 / (math.exp(10) + 3), abs=ATOL32)


def test_select_gaussians_by_prototype():
    cfg = QueryConfig(mode="langsplat", threshold=0.5)
    protos = np.eye(3, dtype=np.float32)
    emb = from_arrays(
        ["red"], protos[:1], np.eye(3, dtype=np.float32)[1:], cfg=QueryConfig(negatives=("a", "b"))
    )
    classes = np.array([0, 1, 2, 0, 0])
    sel = select_gaussians(classes, protos, emb, cfg=cfg)
    assert sel.selected.tolist() == [True, False, False, True, True]
    assert sel.relevance.shape == (1, 5)


def test_scale_sets():
    assert scale_sets(["sp", "wp"]) == [("sp", "wp")]
    assert scale_sets(["sp", "wp", "all"]) == [("sp", "wp"), ("all",)]
    assert scale_sets(["all"]) == [("all",)]


def test_config_refuses_bad_mode():
    with pytest.raises(ValueError, match="query.mode"):
        QueryConfig(mode="lerf")


def test_interactive_paper_mode_lets_no_query_win():
    # two texts (e0, e1) and one negative (e2); a feature on e2 matches neither text
    cfg = QueryConfig(mode="paper", temperature=0.1)
    eye = np.eye(3, dtype=np.float32)
    emb = from_arrays(["mug", "bear"], eye[:2], eye[2:], cfg=QueryConfig(negatives=("object",)))
    closed = feature_relevance(eye[2:], emb, cfg=cfg)  # eq. 10 over the two texts: forced 50/50
    np.testing.assert_allclose(closed, [[0.5, 0.5]], atol=ATOL32)
    opened = feature_relevance(eye[2:], emb, cfg=cfg, with_negatives=True)
    np.testing.assert_allclose(opened, [[1 / (math.exp(10) + 2)] * 2], atol=ATOL32)
