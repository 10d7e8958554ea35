"""The losses of eq. 4–7 on hand-computed cases, initialisation, pair sampling, index maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccl.codebook import ops, paint_index_map

# float32 arithmetic on O(1) values: 1e-6 covers rounding of a few multiply-adds.
ATOL32 = 1e-6


def t32(x) -> torch.Tensor:
    return torch.tensor(np.asarray(x, np.float64), dtype=torch.float32)


# Three prototypes in the plane at 0°, 90°, 180°.
PROTOS = t32([[1, 0], [0, 1], [-1, 0]])


def test_nearest_prototype_is_argmax_cosine_eq4():
    f = t32([[0.6, 0.8], [0.8, -0.6], [-1, 0]])
    j, sims = ops.nearest_prototype(f, PROTOS)
    assert j.tolist() == [1, 0, 2]
    np.testing.assert_allclose(sims.numpy(), [[0.6, 0.8, -0.6], [0.8, -0.6, -0.8], [-1, 0, 1]], atol=ATOL32)


def test_loss_max_eq5_value_and_gradient_reaches_only_selected_prototypes():
    f = t32([[0.6, 0.8], [-1, 0]])  # nearest: prototype 1 (cos 0.8), prototype 2 (cos 1)
    t = PROTOS.clone().requires_grad_(True)
    loss, j = ops.loss_max(f, t)
    assert j.tolist() == [1, 2]
    assert loss.item() == pytest.approx(((1 - 0.8) + (1 - 1.0)) / 2, abs=ATOL32)
    loss.backward()
    # d/dT_j of mean(1 − F_i·T_j*) = −F_i / B for the selected j, zero for prototype 0 (never selected).
    np.testing.assert_allclose(t.grad.numpy(), [[0, 0], [-0.3, -0.4], [0.5, 0]], atol=ATOL32)


def test_loss_pull_eq6_on_known_cosines():
    t_i = t32([[1, 0], [0, 1]])
    t_k = t32([[0.6, 0.8], [0, 1]])  # cosines 0.6 and 1 (same prototype)
    assert ops.loss_pull(t_i, t_k).item() == pytest.approx(((1 - 0.6) + 0.0) / 2, abs=ATOL32)


def test_loss_push_eq7_is_a_hinge_at_the_margin():
    t_i = t32([[1, 0], [1, 0], [1, 0]])
    t_k = t32([[0.8, 0.6], [0.6, 0.8], [1, 0]])  # cosines 0.8, 0.6, 1
    got = ops.loss_push(t_i, t_k, margin=0.7).item()
    assert got == pytest.approx((0.1 + 0.0 + 0.3) / 3, abs=ATOL32)


def test_pair_loss_gradients_move_the_selected_prototypes_towards_or_apart():
    # Masks near prototypes 0 and 1 (90° apart): pull rotates them towards each other, push apart.
    f = t32([[1, 0.1], [0.1, 1]])
    f = f / f.norm(dim=1, keepdim=True)
    for loss_fn, sign in (
        (lambda a, b: ops.loss_pull(a, b), -1),
        (lambda a, b: ops.loss_push(a, b, -1.0), 1),
    ):
        w = PROTOS.clone().requires_grad_(True)
        t = ops.normalize(w)
        both = ops.assigned_prototypes(f, t)
        loss_fn(both[:1], both[1:]).backward()
        with torch.no_grad():
            w2 = ops.normalize(w - 0.1 * w.grad)
        before = float(PROTOS[0] @ PROTOS[1])
        after = float(w2[0] @ w2[1])
        assert sign * (after - before) < -1e-3, (sign, before, after)
        assert torch.all(w.grad[2] == 0), "prototype 2 is selected by no mask: no gradient"


def test_straight_through_keeps_the_hard_value_and_adds_the_assignment_gradient():
    f = t32([[0.8, 0.6]])  # selects prototype 0 (cos 0.8); prototype 1 is next (cos 0.6)
    partner = t32([[0.0, 1.0]])  # the pair partner sits on prototype 1
    hard_w = PROTOS.clone().requires_grad_(True)
    st_w = PROTOS.clone().requires_grad_(True)
    hard = ops.assigned_prototypes(f, hard_w)
    st = ops.assigned_prototypes(f, st_w, straight_through=True, temperature=0.1)
    assert torch.equal(hard, st), "forward values must be the hard selection (eq. 4) exactly"
    ops.loss_pull(hard, partner).backward()
    ops.loss_pull(st, partner).backward()
    # Hard: only the selected prototype 0 moves. Straight-through: the same gradient on prototype 0,
    # plus one that brings prototype 1 (the partner's) towards the mask, so it can take the mask over.
    assert torch.all(hard_w.grad[1:] == 0)
    assert float(st_w.grad[1] @ f[0]) < 0, "descent must raise prototype 1's cosine with the mask"


def _three_tight_clusters(n_per=50, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[:3]
    x = np.concatenate([c + 0.02 * rng.normal(size=(n_per, 8)) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return torch.tensor(x, dtype=torch.float32), centres


def test_kmeanspp_seeds_one_prototype_per_separated_cluster_and_kmeans_finds_the_means():
    x, centres = _three_tight_clusters()
    seeds = ops.kmeanspp_sphere(x, 3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(seeds.norm(dim=1), torch.ones(3), atol=ATOL32)
    cluster_of_seed = sorted(int(np.argmax(centres @ s.numpy())) for s in seeds)
    assert cluster_of_seed == [0, 1, 2]
    refined = ops.spherical_kmeans(x, seeds, iterations=5)
    for c in range(3):
        members = x[50 * c : 50 * (c + 1)]
        mean_dir = ops.normalize(members.sum(0, keepdim=True))[0]
        assert float(refined[int(np.argmax(refined.numpy() @ centres[c]))] @ mean_dir) > 1 - 1e-5


def test_spherical_kmeans_keeps_an_empty_cluster_centre():
    x, _ = _three_tight_clusters()
    far = ops.normalize(torch.ones(1, 8) * torch.tensor([0, 0, 0, 0, 1, 1, 1, 1.0]))
    centres = torch.cat([x[:1], x[50:51], x[100:101], far])
    out = ops.spherical_kmeans(x, centres, iterations=3)
    assert torch.equal(out[3], far[0])


def test_assign_all_in_chunks_equals_one_product():
    g = torch.Generator().manual_seed(0)
    x = ops.normalize(torch.randn(1000, 16, generator=g))
    t = ops.normalize(torch.randn(7, 16, generator=g))
    assert torch.equal(ops.assign_all(x, t, chunk=64), (x @ t.T).argmax(1))


# -------------------------------------------------------------------------------- pair sampling


def test_pair_sampler_draws_same_label_distinct_masks_and_never_unmatched():
    labels = np.array([0, 0, 0, -1, 1, 1, -1, 2, 3, 3])
    s = ops.PairSampler.from_labels(labels)
    rng = np.random.default_rng(0)
    i, k = s.positive(5000, rng)
    assert i.shape == k.shape == (5000,)
    assert np.all(labels[i] == labels[k]) and np.all(i != k) and np.all(labels[i] >= 0)
    # Label 2 has a single mask: it can never be in a same-label pair.
    assert 7 not in set(i) | set(k)
    # Every ordered pair of track 0 is drawn (the partner is uniform over the other members).
    pairs0 = {(a, b) for a, b in zip(i, k, strict=True) if labels[a] == 0}
    assert pairs0 == {(a, b) for a in range(3) for b in range(3) if a != b}
    i, k = s.negative(5000, rng)
    assert i.shape == k.shape == (5000,)
    assert np.all(labels[i] != labels[k]) and np.all(labels[i] >= 0) and np.all(labels[k] >= 0)


def test_pair_sampler_memory_is_linear_in_masks_and_batches_are_fixed_size():
    # 10^6 masks: an M×M matrix would be 10^12 entries; the sampler holds O(M) arrays and returns
    # exactly the requested number of pairs.
    m = 1_000_000
    labels = np.random.default_rng(0).integers(-1, 20_000, size=m)
    s = ops.PairSampler.from_labels(labels)
    held = sum(a.nbytes for a in (s.labelled, s.label_of, s.order, s.start, s.count, s.pos_anchor))
    assert held < 64 * m
    rng = np.random.default_rng(1)
    for draw in (s.positive, s.negative):
        i, k = draw(4096, rng)
        assert i.shape == k.shape == (4096,)


def test_pair_sampler_reports_missing_pair_kinds():
    assert not ops.PairSampler.from_labels(np.array([-1, -1])).has_positive
    one_each = ops.PairSampler.from_labels(np.array([0, 1, 2]))
    assert not one_each.has_positive and one_each.has_negative
    one_track = ops.PairSampler.from_labels(np.array([4, 4, -1]))
    assert one_track.has_positive and not one_track.has_negative


# ----------------------------------------------------------------------------------- index maps


def test_paint_index_map_hand_case():
    seg = np.array([[-1, 0, 0], [1, 1, -1], [2, 2, 2]], np.int32)
    got = paint_index_map(seg, np.array([5, 0, 7], np.int32))
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [[-1, 5, 5], [0, 0, -1], [7, 7, 7]])


def test_paint_index_map_equals_pixel_loop_reference():
    rng = np.random.default_rng(0)
    seg = rng.integers(-1, 40, size=(37, 53)).astype(np.int32)
    idx = rng.integers(0, 128, size=40).astype(np.int32)
    ref = np.full(seg.shape, -1, np.int64)
    for y in range(seg.shape[0]):
        for x in range(seg.shape[1]):
            if seg[y, x] >= 0:
                ref[y, x] = idx[seg[y, x]]
    np.testing.assert_array_equal(paint_index_map(seg, idx), ref)


def test_paint_index_map_refuses_a_segmentation_of_another_frame():
    seg = np.array([[0, 3]], np.int32)
    with pytest.raises(ValueError, match=r"mask indices in \[0, 3\].*2 masks"):
        paint_index_map(seg, np.array([1, 2]))
    with pytest.raises(ValueError, match="segmentation"):
        paint_index_map(np.array([[-2, 0]]), np.array([1]))
