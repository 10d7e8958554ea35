"""The colour field: loss, training that improves PSNR, resume = uninterrupted run, divergence stop."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ccl.scene import SceneLoadConfig, load_image, load_scene
from ccl.splat.checkpoint import load_rgb_field, load_train_state, partial_path
from ccl.splat.config import RgbConfig
from ccl.splat.diagnostics import evaluate_rgb
from ccl.splat.losses import psnr, rgb_loss, ssim
from ccl.splat.train_rgb import fit_rgb, initial_gaussians
from ccl.splat.trainer import TrainingDiverged, load_views, split_views, view_order

# A short schedule on the tiny scene (8 views of 64x48): densification inside the window, so that
# resuming must restore the strategy's running statistics as well as Adam's moments.
SHORT = RgbConfig(
    iterations=40,
    holdout_every=4,
    sh_degree=1,
    refine_start_iter=10,
    refine_every=10,
    reset_every=1000,
    checkpoint_every=10,
    lr_sh0=1e-2,
)


# one thread: bit-for-bit reproducible training (see tests/conftest.py), and faster on a busy CPU
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_scene_dir):
    scene = load_scene(tiny_scene_dir, source="synthetic", cfg=SceneLoadConfig(), name="tiny")
    images = [load_image(c, cfg=SceneLoadConfig()) for c in scene.cameras]
    keep = slice(None, None, 4)  # 1 000 of the scene's points: fast, and still covering the views
    return scene, images, scene.points_xyz[keep], scene.points_rgb[keep]


def _fit(tiny, cfg=SHORT, **kw):
    scene, images, xyz, rgb = tiny
    return fit_rgb(scene.cameras, images, points_xyz=xyz, points_rgb=rgb, cfg=cfg, seed=0, **kw)


# --- losses ---------------------------------------------------------------------------------------------


def _ssim_2d_window(img, ref):
    """3DGS's SSIM with the full 11x11 window (the separable version must equal it)."""
    x, y = img.permute(2, 0, 1)[None], ref.permute(2, 0, 1)[None]
    g = torch.exp(-((torch.arange(11, dtype=x.dtype) - 5) ** 2) / (2 * 1.5**2))
    g = g / g.sum()
    w = (g[:, None] * g[None]).expand(3, 1, 11, 11)

    def blur(t):
        return F.conv2d(t, w, padding=5, groups=3)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    return (((2 * mx * my + 1e-4) * (2 * sxy + 9e-4)) / ((mx**2 + my**2 + 1e-4) * (sxx + syy + 9e-4))).mean()


def test_ssim_separable_equals_the_2d_window_and_losses_are_sane():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(30, 40, 3, generator=gen, dtype=torch.float64)
    b = (a + 0.2 * torch.rand(30, 40, 3, generator=gen, dtype=torch.float64)).clamp(0, 1)
    torch.testing.assert_close(ssim(a, b), _ssim_2d_window(a, b), rtol=1e-12, atol=1e-12)
    assert float(ssim(a, a)) == pytest.approx(1.0)
    assert float(rgb_loss(a, a, ssim_lambda=0.2)) == pytest.approx(0.0, abs=1e-12)
    assert float(rgb_loss(a, b, ssim_lambda=0.0)) == pytest.approx(float((a - b).abs().mean()))
    assert psnr(torch.full((4, 4, 3), 0.5), torch.full((4, 4, 3), 0.6)) == pytest.approx(20.0)


def test_split_and_view_order():
    assert split_views(10, 4) == ([1, 2, 3, 5, 6, 7, 9], [0, 4, 8])
    assert split_views(3, 0) == ([0, 1, 2], [])
    epoch = [view_order(s, 7, seed=3) for s in range(7)]
    assert sorted(epoch) == list(range(7))  # every training view once per epoch
    assert [view_order(s, 7, seed=3) for s in range(7, 14)] != epoch  # a fresh order each epoch


# --- training -------------------------------------------------------------------------------------------


def test_training_lowers_the_loss_and_raises_psnr(tiny):
    scene, images, xyz, rgb = tiny
    train_idx, test_idx = split_views(len(scene.cameras), SHORT.holdout_every)
    views = load_views(scene.cameras, images, device="cpu")
    g0 = initial_gaussians(scene.cameras, xyz, rgb, cfg=SHORT, seed=0)
    before = evaluate_rgb(g0, views, train_idx, test_idx, cfg=SHORT)
    g, after = _fit(tiny)
    assert after.psnr_train > before.psnr_train + 3.0, (before.psnr_train, after.psnr_train)
    assert after.psnr_heldout > before.psnr_heldout + 2.0, (before.psnr_heldout, after.psnr_heldout)
    assert set(after.psnr_heldout_per_view) == {scene.cameras[i].name for i in test_idx}
    assert after.n_gaussians == len(g) and after.resumed_from == 0

    def loss(gs):
        from ccl.splat.render import render_channels

        with torch.no_grad():
            return np.mean([
                float(rgb_loss(render_channels(gs, scene.cameras[i]).colors[0],
                               views.images[i].float() / 255, ssim_lambda=0.2))
                for i in train_idx
            ])  # fmt: skip

    assert loss(g) < 0.8 * loss(g0)


def test_interrupted_run_resumes_to_the_same_result(tiny, tmp_path):
    state = partial_path(tmp_path / "rgb.safetensors")
    g_full, m_full = _fit(tiny, state_path=state, fingerprint="run-a")

    class Killed(Exception):
        pass

    def kill_at_25(step):
        if step == 25:
            raise Killed

    state2 = partial_path(tmp_path / "b" / "rgb.safetensors")
    with pytest.raises(Killed):
        _fit(tiny, state_path=state2, fingerprint="run-a", callback=kill_at_25)
    assert load_train_state(state2, fingerprint="run-a").iteration == 20  # the last periodic checkpoint
    g_res, m_res = _fit(tiny, state_path=state2, fingerprint="run-a")
    assert m_res.resumed_from == 20
    assert len(g_res) == len(g_full)  # densification after the resume made the same choices
    for k, v in g_full.tensors().items():
        torch.testing.assert_close(getattr(g_res, k), v, rtol=0, atol=0, msg=k)
    assert m_res.psnr_heldout == m_full.psnr_heldout


def test_a_partial_checkpoint_with_nan_is_set_aside_and_training_starts_over(tiny, tmp_path, caplog):
    """A resumed state is checked for finite values: a bad one is renamed (never deleted) with a
    warning, and the run starts afresh to the result of an uninterrupted run."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from ccl.io.checkpoint import CHECKSUM_KEY, HEADER_KEY, tensors_sha256

    g_full, m_full = _fit(tiny, state_path=partial_path(tmp_path / "a" / "rgb.safetensors"), fingerprint="r")

    def stop(step):
        if step == 25:
            raise KeyboardInterrupt

    state = partial_path(tmp_path / "b" / "rgb.safetensors")
    with pytest.raises(KeyboardInterrupt):
        _fit(tiny, state_path=state, fingerprint="r", callback=stop)
    tensors = load_file(str(state))
    with safe_open(str(state), framework="pt") as f:
        meta = f.metadata()
    key = next(k for k in tensors if k.startswith("param.") and tensors[k].is_floating_point())
    tensors[key][0] = float("nan")
    # as a run that diverged would have written it: the checksum of these contents, so the finite-value
    # check, not the checksum, is what refuses it (a damaged file: tests/test_integrity.py)
    meta[CHECKSUM_KEY] = tensors_sha256(tensors, meta[HEADER_KEY])
    save_file(tensors, str(state), metadata=meta)

    g_res, m_res = _fit(tiny, state_path=state, fingerprint="r")
    assert m_res.resumed_from == 0
    aside = state.with_name(state.name.removesuffix(".safetensors") + ".rejected-1.safetensors")
    assert aside.is_file() and "non-finite values" in caplog.text and aside.name in caplog.text
    for k, v in g_full.tensors().items():
        torch.testing.assert_close(getattr(g_res, k), v, rtol=0, atol=0, msg=k)


def test_a_changed_config_does_not_resume(tiny, tmp_path, caplog):
    state = partial_path(tmp_path / "rgb.safetensors")

    def stop(step):
        if step == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(tiny, state_path=state, fingerprint="config-1", callback=stop)
    cfg = dataclasses.replace(SHORT, iterations=12)
    _, m = _fit(tiny, cfg=cfg, state_path=state, fingerprint="config-2")
    assert m.resumed_from == 0
    assert "another config" in caplog.text


def test_nan_loss_stops_keeps_last_good_checkpoint_and_says_so(tiny, tmp_path, monkeypatch):
    import ccl.splat.losses as losses

    calls = {"n": 0}
    real = losses.rgb_loss

    def poisoned(img, gt, *, ssim_lambda):
        calls["n"] += 1
        out = real(img, gt, ssim_lambda=ssim_lambda)
        return out * float("nan") if calls["n"] == 16 else out  # step 15

    monkeypatch.setattr(losses, "rgb_loss", poisoned)
    state = partial_path(tmp_path / "rgb.safetensors")
    with pytest.raises(TrainingDiverged, match=r"diverged at iteration 15: loss 'colour loss.*' is nan") as e:
        _fit(tiny, state_path=state, fingerprint="x")
    assert "last good checkpoint is kept" in str(e.value) and str(state) in str(e.value)
    assert e.value.iteration == 15 and e.value.checkpoint == state
    kept = load_train_state(state, fingerprint="x")
    assert kept.iteration == 10
    assert all(torch.isfinite(v).all() for v in kept.params.values())


def test_nan_before_any_checkpoint_says_nothing_was_kept(tiny, monkeypatch):
    import ccl.splat.losses as losses

    monkeypatch.setattr(losses, "rgb_loss", lambda img, gt, *, ssim_lambda: img.sum() * float("inf"))
    with pytest.raises(TrainingDiverged, match="iteration 0: loss .* is inf.*no checkpoint had been written"):
        _fit(tiny)


def test_mcmc_strategy_runs_on_the_cpu(tiny):
    cfg = dataclasses.replace(
        SHORT,
        strategy="mcmc",
        iterations=25,
        cap_max=1100,
        init_opacity=0.5,
        opacity_reg=0.01,
        scale_reg=0.01,
    )
    scene, images, xyz, rgb = tiny
    g, m = _fit(tiny, cfg=cfg)
    assert len(xyz) < len(g) <= 1100  # it grew (relocation and sampling ran through the CPU twins)
    assert math.isfinite(m.psnr_heldout)


def test_no_sparse_points_starts_from_random_gaussians(tiny):
    scene, images, _, _ = tiny
    cfg = dataclasses.replace(SHORT, iterations=5, init_random_points=300)
    g, m = fit_rgb(
        scene.cameras, images, points_xyz=np.zeros((0, 3), np.float32), points_rgb=np.zeros((0, 3), np.uint8),
        cfg=cfg, seed=0,
    )  # fmt: skip
    assert len(g) == 300 and math.isfinite(m.psnr_train)


def test_stage_entry_writes_field_and_metrics(tiny_scene_dir, tmp_path):
    from ccl.scene import write_manifest
    from ccl.splat import train_rgb

    manifest = write_manifest(
        tmp_path / "scene.json", name="tiny", entry={"source": "synthetic"}, source_dir=tiny_scene_dir,
        cfg=SceneLoadConfig(),
    )  # fmt: skip
    out = tmp_path / "gaussians" / "rgb.safetensors"
    cfg = dataclasses.replace(SHORT, iterations=12, checkpoint_every=5)
    m = train_rgb(out, manifest=manifest, scene_load=SceneLoadConfig(), cfg=cfg, seed=0, device="auto")
    g, header = load_rgb_field(out, scene="tiny")
    assert header["iteration"] == 12 and header["config"]["iterations"] == 12 and header["seed"] == 0
    assert header["device"] == "cpu" and header["format_version"] == 1 and len(g) == m.n_gaussians
    metrics = json.loads((tmp_path / "gaussians" / "rgb.metrics.json").read_text())
    assert metrics["psnr_heldout"] == pytest.approx(m.psnr_heldout) and metrics["scene"] == "tiny"
    n_points = len(load_scene(tiny_scene_dir, source="synthetic", cfg=SceneLoadConfig()).points_xyz)
    assert n_points > 0 and metrics["initialisation"]["source"] == "scene"  # what it started from
    assert metrics["initialisation"]["points"] == n_points
    assert not partial_path(out).exists()  # deleted on success
    with pytest.raises(ValueError, match="scene 'tiny', but this run is for scene 'other'"):
        load_rgb_field(out, scene="other")


def test_bad_config_and_images_are_refused(tiny):
    scene, images, xyz, rgb = tiny
    with pytest.raises(ValueError, match=r"rgb.strategy = 'fast'.*one of \('default', 'mcmc'\)"):
        _fit(tiny, cfg=dataclasses.replace(SHORT, strategy="fast"))
    bad = list(images)
    bad[2] = bad[2][:-1]
    with pytest.raises(ValueError, match=rf"frame {scene.cameras[2].name}: image is uint8 \[47, 64, 3\]"):
        fit_rgb(scene.cameras, bad, points_xyz=xyz, points_rgb=rgb, cfg=SHORT, seed=0)
