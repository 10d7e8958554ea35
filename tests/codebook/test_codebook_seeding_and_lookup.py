"""Codebook initialisation and lookups on the inputs a scene can give: k-means++ seeds on separated
clusters for any random seed, on duplicate features, on nearly duplicate ones; prototype selection
defaults (hard, τ = 0.1); a frame without masks; a mask index one past the end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ccl.codebook import ops


def _unit(rows):
    x = torch.tensor(rows, dtype=torch.float32)
    return x / x.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("seed", range(12))
def test_kmeanspp_puts_one_seed_in_each_separated_cluster_for_any_seed(seed):
    g = torch.Generator().manual_seed(100 + seed)
    x = ops.normalize(torch.eye(4)[:3].repeat_interleave(20, 0) + 0.01 * torch.randn(60, 4, generator=g))
    seeds = ops.kmeanspp_sphere(x, 3, generator=torch.Generator().manual_seed(seed))
    assert sorted(int(s[:3].argmax()) for s in seeds) == [0, 1, 2]


@pytest.mark.parametrize("seed", range(12))
def test_kmeanspp_never_seeds_a_duplicate_while_a_distinct_feature_remains(seed):
    # two copies of one feature and one other at cos 0.5: D² sampling must take the other one second
    x = _unit([[1.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    seeds = ops.kmeanspp_sphere(x, 2, generator=torch.Generator().manual_seed(seed))
    assert not torch.equal(seeds[0], seeds[1])


def test_kmeanspp_on_identical_features_returns_as_many_seeds_as_asked():
    x = _unit([[0.6, 0.8]] * 4)  # e.g. one object seen four times with the same crop
    seeds = ops.kmeanspp_sphere(x, 3, generator=torch.Generator().manual_seed(0))
    assert seeds.shape == (3, 2) and torch.equal(seeds, x[:3])


def test_prototype_selection_is_hard_by_default_with_no_gradient_to_the_cosines():
    protos = _unit([[1.0, 0.0], [0.0, 1.0]])
    sims = torch.tensor([[0.8, 0.6]], requires_grad=True)
    assert not ops.select_prototypes(sims, protos).requires_grad
    assert ops.select_prototypes(sims, protos, straight_through=True).requires_grad


@pytest.mark.parametrize("temperature", [None, 0.5])
def test_straight_through_gradient_is_that_of_the_softmax_at_the_temperature(temperature):
    protos = _unit([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    f = _unit([[0.8, 0.6]]).requires_grad_(True)
    weights = torch.tensor([[1.0, -2.0]])
    kw = {} if temperature is None else {"temperature": temperature}
    (ops.assigned_prototypes(f, protos, straight_through=True, **kw) * weights).sum().backward()
    # d/dF of softmax(F·Tᵀ / τ) @ T, by hand: J = T diag(q) - T q qᵀ, scaled by 1/τ, then Tᵀ
    tau = 0.1 if temperature is None else temperature  # 0.1: the codebook config's default
    q = torch.softmax(f.detach() @ protos.T / tau, dim=1)[0]
    t = protos
    jac = (t.T @ (torch.diag(q) - q[:, None] * q[None, :]) @ t) / tau  # [D, D], d(q@T)/dF
    expected = weights[0] @ jac
    torch.testing.assert_close(f.grad[0], expected, rtol=1e-5, atol=1e-6)


def test_assign_all_of_no_masks_is_an_empty_index_vector():
    out = ops.assign_all(torch.zeros(0, 4), _unit([[1.0, 0, 0, 0]]))
    assert out.shape == (0,) and out.dtype == torch.int64


def test_paint_index_map_refuses_a_mask_index_one_past_the_end():
    with pytest.raises(
        ValueError, match=r"indices in \[0, 2\] but prototype_index has 2 masks \(valid: -1\.\.1\)"
    ):
        ops.paint_index_map(np.array([[0, 2]]), np.array([5, 6]))


def test_paint_index_map_refuses_a_flat_segmentation_naming_the_shapes():
    with pytest.raises(ValueError, match=r"expected segmentation \[H, W\].*got shapes \(2,\) and \(2,\)"):
        ops.paint_index_map(np.array([0, 1]), np.array([5, 6]))


def test_kmeanspp_with_as_many_masks_as_prototypes_takes_every_mask():
    x = _unit([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    seeds = ops.kmeanspp_sphere(x, 3, generator=torch.Generator().manual_seed(0))
    assert sorted(map(tuple, seeds.tolist())) == sorted(map(tuple, x.tolist()))


def test_kmeanspp_draws_only_from_its_generator():
    g = torch.Generator().manual_seed(0)
    x = ops.normalize(torch.randn(40, 6, generator=g))
    x = torch.cat([x, x[:1].repeat(5, 1)])  # duplicates: the uniform fallback draws too
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)  # the global RNG must not matter
        runs.append(ops.kmeanspp_sphere(x[-6:], 3, generator=torch.Generator().manual_seed(7)))
        runs.append(ops.kmeanspp_sphere(x, 8, generator=torch.Generator().manual_seed(7)))
    assert torch.equal(runs[0], runs[2]) and torch.equal(runs[1], runs[3])


def test_select_prototypes_straight_through_default_temperature_is_the_configs():
    protos = _unit([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    sims = torch.tensor([[0.8, 0.6, 0.9899]], requires_grad=True)
    (
        ops.select_prototypes(sims, protos, straight_through=True) * torch.tensor([[1.0, -2.0]])
    ).sum().backward()
    expected = torch.func.grad(
        lambda s: (torch.softmax(s / 0.1, dim=1) @ protos * torch.tensor([[1.0, -2.0]])).sum()
    )(sims.detach())
    torch.testing.assert_close(sims.grad, expected)


@pytest.mark.parametrize("chunk", [1, 2, 65536])
def test_one_lloyd_step_moves_each_centre_to_its_members_mean_direction(chunk):
    # float64, as a caller may hold features; centre 1 has a single member, centre 2 none
    x = torch.tensor(
        [[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.8, -0.6, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64
    )
    centres = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
    out = ops.spherical_kmeans(x, centres, iterations=1, chunk=chunk)
    # members of centre 0: rows 0-2, sum (2.6, 0, 0) -> (1, 0, 0); centre 1: row 3; centre 2 keeps its place
    assert torch.equal(
        out, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
    )
    tilted = torch.tensor([[0.6, 0.8, 0.0], [0.0, 0.6, 0.8], [0.0, -1.0, 0.0]], dtype=torch.float64)
    moved = ops.spherical_kmeans(x, tilted, iterations=1, chunk=chunk)
    # rows 0, 1 go to centre 0 (sum (1.8, 0.6, 0)); rows 2, 3 go to centre 2 and 1 (one member each)
    torch.testing.assert_close(
        moved[0], torch.tensor([1.8, 0.6, 0.0], dtype=torch.float64) / math.hypot(1.8, 0.6)
    )
    torch.testing.assert_close(moved[1], x[3])
    torch.testing.assert_close(moved[2], x[2])


def test_kmeanspp_fallback_among_duplicates_draws_from_its_generator():
    # A, A, B, B: after A and B are seeds, the third is a duplicate of either, chosen by the generator
    x = _unit([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    runs = []
    for global_seed in range(6):
        torch.manual_seed(global_seed)  # the global RNG must not matter
        runs.append(ops.kmeanspp_sphere(x, 3, generator=torch.Generator().manual_seed(3)))
    assert all(torch.equal(r, runs[0]) for r in runs)
