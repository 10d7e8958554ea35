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
