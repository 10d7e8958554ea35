"""ccl.splat.model and strategy helpers: SH colours, initialisation, checks, the MCMC CPU twins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ccl.splat.model import (
    SH_C0,
    Gaussians,
    check_finite_gaussians,
    init_gaussians,
    knn_mean_distance,
    random_points_in_view,
    rgb_to_sh0,
    sh_to_rgb,
)

# float32 SH evaluation of unit directions: a few ulps of values of order 1
ATOL_F32 = 1e-5


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_colours_match_gsplat_torch_reference(degree):
    from gsplat.cuda._torch_impl import _spherical_harmonics

    gen = torch.Generator().manual_seed(degree)
    n, k = 50, (degree + 1) ** 2
    means = torch.randn(n, 3, generator=gen)
    center = torch.tensor([0.3, -2.0, 1.0])
    sh = torch.randn(n, k, 3, generator=gen)
    ours = sh_to_rgb(sh[:, :1], sh[:, 1:], means, center)
    ref = (_spherical_harmonics(degree, means - center, sh) + 0.5).clamp_min(0)
    torch.testing.assert_close(ours, ref, atol=ATOL_F32, rtol=0)


def test_rgb_to_sh0_round_trip():
    rgb = np.random.default_rng(0).uniform(0, 1, (10, 3)).astype(np.float32)
    sh0 = torch.from_numpy(rgb_to_sh0(rgb))
    back = sh_to_rgb(sh0, torch.zeros(10, 0, 3), torch.zeros(10, 3), torch.ones(3))
    np.testing.assert_allclose(back.numpy(), rgb, atol=1e-6)
    assert math.isclose(float(SH_C0 * sh0[0, 0, 0] + 0.5), float(rgb[0, 0]), abs_tol=1e-6)


def test_knn_mean_distance_matches_brute_force_in_small_chunks():
    pts = np.random.default_rng(1).normal(size=(300, 3)).astype(np.float32)
    d2 = ((pts[:, None] - pts[None]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    want = np.sqrt(np.sort(d2, axis=1)[:, :3].mean(1))
    got = knn_mean_distance(pts, chunk_bytes=4 * 300 * 7)  # 7 rows per chunk
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_init_gaussians_at_points_with_point_colours():
    rng = np.random.default_rng(2)
    xyz = rng.normal(size=(40, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    g = init_gaussians(xyz, rgb, sh_degree=2, init_opacity=0.1, init_scale=0.5)
    assert len(g) == 40 and g.sh_degree == 2 and g.shN.shape == (40, 8, 3)
    np.testing.assert_array_equal(g.means.numpy(), xyz)
    torch.testing.assert_close(g.opacity_logits.sigmoid(), torch.full((40,), 0.1))
    np.testing.assert_allclose(g.log_scales.exp()[:, 0].numpy(), 0.5 * knn_mean_distance(xyz), rtol=1e-5)
    colour = sh_to_rgb(g.sh0, g.shN, g.means, torch.zeros(3))
    np.testing.assert_allclose(colour.numpy(), rgb / 255.0, atol=1e-5)


def test_coincident_points_get_a_positive_scale():
    xyz = np.zeros((5, 3), dtype=np.float32)
    xyz[3:] = 1.0
    g = init_gaussians(xyz, np.zeros((5, 3), np.uint8), sh_degree=0, init_opacity=0.1, init_scale=1.0)
    assert torch.isfinite(g.log_scales).all()
    check_finite_gaussians(g, where="init")


def test_random_points_cover_orbit_and_forward_views():
    rng = np.random.default_rng(3)
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    centers = np.stack([2 * np.cos(angles), 2 * np.sin(angles), np.ones(8)], 1)
    forwards = -centers / np.linalg.norm(centers, axis=1, keepdims=True)
    xyz, rgb = random_points_in_view(centers, forwards, 500, rng)
    assert xyz.shape == (500, 3) and rgb.shape == (500, 3) and rgb.dtype == np.uint8
    assert (np.abs(xyz[:, :2]) <= 2.0 + 1e-5).all()  # inside the orbit's box
    assert (np.linalg.norm(xyz[:, :2], axis=1) < 1.0).any()  # and around its centre, where the objects are


def _gaussians(n=4):
    return init_gaussians(
        np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32),
        np.zeros((n, 3), np.uint8),
        sh_degree=1,
        init_opacity=0.5,
        init_scale=1.0,
    )


def test_check_finite_names_tensor_and_gaussian():
    g = _gaussians()
    g.means[2, 1] = float("nan")
    with pytest.raises(
        ValueError, match=r"'means' holds NaN values in 1 of 4 Gaussians \(first: Gaussian 2\)"
    ):
        check_finite_gaussians(g, where="x.safetensors")
    g = _gaussians()
    g.shN[1, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="'shN' holds infinite"):
        check_finite_gaussians(g, where="x.safetensors")


def test_check_finite_refuses_zero_scales_and_quaternions():
    g = _gaussians()
    g.log_scales[3, 0] = -float("inf")
    with pytest.raises(ValueError, match="zero scale.*Gaussian 3"):
        check_finite_gaussians(g, where="x")
    g = _gaussians()
    g.quats[0] = 0
    with pytest.raises(ValueError, match="Gaussian 0 has an all-zero quaternion"):
        check_finite_gaussians(g, where="x")


def test_param_dict_round_trip_uses_strategy_names():
    g = _gaussians()
    p = g.param_dict()
    assert set(p) == {"means", "quats", "scales", "opacities", "sh0", "shN"}
    back = Gaussians.from_param_dict(p)
    for k, v in g.tensors().items():
        assert torch.equal(getattr(back, k), v)


def _relocation_reference(opacities, scales, ratios, binoms):
    """A literal transcription of gsplat's CUDA kernel (RelocationCUDA.cu), one Gaussian at a time."""
    new_o, new_s = [], []
    for o, s, n in zip(opacities.tolist(), scales.tolist(), ratios.tolist(), strict=True):
        no = 1 - (1 - o) ** (1 / n)
        denom = 0.0
        for i in range(1, n + 1):
            for k in range(i):
                denom += float(binoms[i - 1, k]) * ((-1) ** k / math.sqrt(k + 1)) * no ** (k + 1)
        new_o.append(no)
        new_s.append([o / denom * x for x in s])
    return torch.tensor(new_o, dtype=torch.float64), torch.tensor(new_s, dtype=torch.float64)


def test_mcmc_relocation_twin_matches_the_kernel_formula():
    from gsplat.strategy import MCMCStrategy

    from ccl.splat.strategy import compute_relocation_torch

    binoms = MCMCStrategy().initialize_state()["binoms"]
    gen = torch.Generator().manual_seed(0)
    opac = torch.rand(30, generator=gen, dtype=torch.float64) * 0.9 + 0.05
    scales = torch.rand(30, 3, generator=gen, dtype=torch.float64)
    ratios = torch.randint(1, 12, (30,), generator=gen)
    got_o, got_s = compute_relocation_torch(opac, scales, ratios, binoms.double())
    want_o, want_s = _relocation_reference(opac, scales, ratios, binoms.double())
    torch.testing.assert_close(got_o, want_o, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(got_s, want_s, rtol=1e-7, atol=1e-10)
    # one copy leaves the Gaussian unchanged
    o1, s1 = compute_relocation_torch(opac, scales, torch.ones(30, dtype=torch.int64), binoms.double())
    torch.testing.assert_close(o1, opac)
    torch.testing.assert_close(s1, scales)


def test_default_strategy_resets_opacities_every_reset_every_steps():
    """gsplat 1.5.3's own reset never fires (operator precedence); ours does, as 3DGS specifies."""
    from ccl.splat.config import RgbConfig
    from ccl.splat.strategy import build_strategy, step_post_backward

    g = _gaussians(6)
    g.opacity_logits[:] = 3.0
    params = g.param_dict()
    opts = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    cfg = RgbConfig(reset_every=5, refine_start_iter=100, refine_stop_iter=200, prune_opa=0.01)
    strategy, state = build_strategy(cfg, scene_scale=1.0)
    means2d = torch.zeros(1, 6, 2, requires_grad=True)
    means2d.grad = torch.zeros(1, 6, 2)
    info = {"means2d": means2d, "radii": torch.ones(1, 6, 2, dtype=torch.int32), "width": 8, "height": 8,
            "n_cameras": 1, "gaussian_ids": None}  # fmt: skip
    step_post_backward(strategy, params, opts, state, 4, info, means_lr=0.0)
    assert (params["opacities"].sigmoid() > 0.9).all()
    step_post_backward(strategy, params, opts, state, 5, info, means_lr=0.0)
    torch.testing.assert_close(params["opacities"].sigmoid(), torch.full((6,), 0.02))


def test_strategy_refuses_a_gsplat_other_than_the_one_whose_internals_it_patches(monkeypatch):
    import gsplat

    from ccl.splat.config import RgbConfig
    from ccl.splat.strategy import GSPLAT_VERSION, _cpu_twins, build_strategy

    assert GSPLAT_VERSION == "1.5.3" and gsplat.__version__ == GSPLAT_VERSION  # the pinned install
    build_strategy(RgbConfig(), scene_scale=1.0)
    monkeypatch.setattr(gsplat, "__version__", "1.6.0")
    want = r"internals of gsplat 1\.5\.3 .* but gsplat 1\.6\.0 is installed .*: pip install gsplat==1\.5\.3"
    for strategy in ("default", "mcmc"):
        with pytest.raises(RuntimeError, match=want):
            build_strategy(RgbConfig(strategy=strategy), scene_scale=1.0)
    with pytest.raises(RuntimeError, match=want), _cpu_twins(True):
        pass
