"""ccl.query.ops on the inputs a caller may hand it: float64 arrays (results are float32 as documented),
unnormalised or tiny vectors, large logits, class indices out of range, a bright pixel to smooth, and the
messages that name the bad query or the mismatched model."""

from __future__ import annotations

import numpy as np
import pytest

from ccl.query.ops import (
    box_filter,
    cosine,
    l2_normalize,
    langsplat_relevance,
    paint,
    smoothed_relevance,
    softmax,
    validate_queries,
)


def test_results_are_float32_for_float64_inputs():
    x = np.random.default_rng(0).random((3, 4))  # float64, as numpy and h5py readers give
    assert l2_normalize(x).dtype == np.float32
    assert softmax(x).dtype == np.float32
    assert langsplat_relevance(x[:, :2], x[:, 2:]).dtype == np.float32
    assert box_filter(np.ones((8, 8))).dtype == np.float32
    assert smoothed_relevance(np.ones((8, 8))).dtype == np.float32
    assert paint(np.array([[0, -1]]), x).dtype == np.float32


def test_l2_normalize_scales_any_length_to_one_and_keeps_zero_rows_zero():
    x = np.array([[3.0, 4.0], [3e-7, 4e-7], [0.0, 0.0]])
    np.testing.assert_allclose(l2_normalize(x), [[0.6, 0.8], [0.6, 0.8], [0.0, 0.0]], rtol=1e-6)


def test_softmax_is_stable_for_large_logits_and_normalises_each_row_alone():
    p = softmax(np.array([[1000.0, 1000.0], [0.0, 1000.0], [0.0, 0.0]]))
    np.testing.assert_allclose(p, [[0.5, 0.5], [0.0, 1.0], [0.5, 0.5]], atol=1e-7)


def test_paint_fills_pixels_without_a_class_with_zero_by_default():
    painted = paint(np.array([[1, -1]]), np.array([[0.3], [0.7]]))
    np.testing.assert_allclose(painted, [[[0.7, 0.0]]], atol=1e-7)


@pytest.mark.parametrize("bad_index", [2, -2])
def test_paint_refuses_a_class_index_the_codebook_does_not_have(bad_index):
    with pytest.raises(
        ValueError, match=r"there are 2 prototypes: the language field .* rerun the workflow$"
    ):
        paint(np.array([[0, bad_index]]), np.zeros((2, 1)))


def test_smoothing_is_half_the_raw_map_plus_half_its_30x30_box_mean():
    raw = np.zeros((40, 40), np.float32)
    raw[20, 20] = 1.0
    smoothed = smoothed_relevance(raw)
    assert smoothed[20, 20] == pytest.approx(0.5 * (1 + 1 / 900), rel=1e-6)
    flat = np.full((40, 40), 0.25, np.float32)
    np.testing.assert_allclose(smoothed_relevance(flat), flat, rtol=1e-6)


def test_a_feature_and_text_dimension_mismatch_names_both_and_the_fix():
    features = np.ones((5, 6, 8), np.float32)  # an [H, W, D] feature map
    with pytest.raises(
        ValueError,
        match=r"^feature dimension 8 != text embedding dimension 4: the prototypes and the text encoder must be the same model \(features.backend / features.model\)$",
    ):
        cosine(features, np.ones((3, 4), np.float32))


def test_query_errors_name_the_query():
    with pytest.raises(ValueError, match=r"^queries\[1\]: a query must be a string, got int 3$"):
        validate_queries(["mug", 3])
    with pytest.raises(
        ValueError, match=r"^queries: repeated queries \['mug'\].*softmax runs over the query set\)$"
    ):
        validate_queries(["mug", "bear", "mug"])
