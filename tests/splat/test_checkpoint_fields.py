"""Checkpoints of the Gaussian fields: round trips, strict keys, and the bad files a user can hand over."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccl.io import save_safetensors
from ccl.splat.checkpoint import (
    LanguageField,
    fingerprint,
    load_language_field,
    load_rgb_field,
    load_train_state,
    partial_path,
    save_language_field,
    save_rgb_field,
    save_train_state,
)
from ccl.splat.decoder import build_decoder
from ccl.splat.model import init_gaussians

HEADER = {"config": {"iterations": 7}, "iteration": 7, "scene": "kitchen", "device": "cpu", "seed": 0}


def _gaussians(n=20, degree=1):
    rng = np.random.default_rng(0)
    return init_gaussians(
        rng.normal(size=(n, 3)).astype(np.float32),
        rng.integers(0, 256, (n, 3), dtype=np.uint8),
        sh_degree=degree,
        init_opacity=0.3,
        init_scale=1.0,
    )


def _language_field(n=20, n_classes=5):
    torch.manual_seed(0)
    return LanguageField(_gaussians(n), torch.randn(n, 8), build_decoder(8, 16, n_classes), {})


def test_rgb_round_trip_keeps_tensors_and_header(tmp_path):
    g = _gaussians(degree=2)
    path = save_rgb_field(tmp_path / "rgb.safetensors", g, header=HEADER)
    back, header = load_rgb_field(path, scene="kitchen")
    for k, v in g.tensors().items():
        assert torch.equal(getattr(back, k), v), k
    assert header["scene"] == "kitchen" and header["iteration"] == 7 and header["config"] == {"iterations": 7}
    assert header["format_version"] == 1 and header["kind"] == "rgb_field" and header["sh_degree"] == 2
    assert header["n_gaussians"] == 20 and header["device"] == "cpu"


def test_checkpoint_of_another_scene_is_refused_naming_both(tmp_path):
    path = save_rgb_field(tmp_path / "rgb.safetensors", _gaussians(), header=HEADER)
    with pytest.raises(ValueError, match="scene 'kitchen', but this run is for scene 'ramen'"):
        load_rgb_field(path, scene="ramen")
    lpath = save_language_field(tmp_path / "sp.safetensors", _language_field(), header=HEADER)
    with pytest.raises(ValueError, match="scene 'kitchen', but this run is for scene 'ramen'"):
        load_language_field(lpath, scene="ramen")


def _write_raw(path, tensors, header):
    return save_safetensors(path, tensors, {**HEADER, "kind": "rgb_field", "format_version": 1, **header})


def test_nan_parameters_in_a_checkpoint_are_refused(tmp_path):
    t = _gaussians().tensors()
    t["opacity_logits"] = t["opacity_logits"].clone()
    t["opacity_logits"][5] = float("nan")
    path = _write_raw(tmp_path / "rgb.safetensors", t, {})
    with pytest.raises(ValueError, match=r"rgb.safetensors.*'opacity_logits' holds NaN.*Gaussian 5"):
        load_rgb_field(path)


def test_zero_scales_in_a_checkpoint_are_refused(tmp_path):
    t = _gaussians().tensors()
    t["log_scales"] = t["log_scales"].clone()
    t["log_scales"][3] = -1000.0  # exp underflows to 0
    path = _write_raw(tmp_path / "rgb.safetensors", t, {})
    with pytest.raises(ValueError, match="zero scale.*Gaussian 3"):
        load_rgb_field(path)


def test_saving_nan_gaussians_is_refused(tmp_path):
    g = _gaussians()
    g.means[0, 0] = float("inf")
    with pytest.raises(ValueError, match="refusing to save.*'means' holds infinite"):
        save_rgb_field(tmp_path / "rgb.safetensors", g, header=HEADER)
    assert not (tmp_path / "rgb.safetensors").exists()


def test_missing_or_unexpected_tensors_are_named(tmp_path):
    t = _gaussians().tensors()
    del t["quats"]
    t["colors"] = torch.zeros(20, 3)
    path = _write_raw(tmp_path / "rgb.safetensors", t, {})
    with pytest.raises(ValueError, match=r"missing \['quats'\].*unexpected \['colors'\]"):
        load_rgb_field(path)


def test_wrong_shapes_and_wrong_kind_are_refused(tmp_path):
    t = _gaussians().tensors()
    t["sh0"] = t["sh0"][:, 0]
    with pytest.raises(ValueError, match=r"'sh0' has shape \[20, 3\], expected \[20, 1, 3\]"):
        load_rgb_field(_write_raw(tmp_path / "a.safetensors", t, {}))
    lpath = save_language_field(tmp_path / "sp.safetensors", _language_field(), header=HEADER)
    with pytest.raises(ValueError, match="holds a 'language_field' checkpoint, expected a 'rgb_field'"):
        load_rgb_field(lpath)
    with pytest.raises(ValueError, match="format_version 9"):
        load_rgb_field(_write_raw(tmp_path / "b.safetensors", _gaussians().tensors(), {"format_version": 9}))


def test_language_round_trip_rebuilds_the_decoder(tmp_path):
    lf = _language_field(n_classes=6)
    path = save_language_field(tmp_path / "sp.safetensors", lf, header={**HEADER, "scale": "sp"})
    back = load_language_field(path, scene="kitchen")
    assert back.n_classes == 6 and back.header["n_classes"] == 6 and back.header["feature_dim"] == 8
    assert torch.equal(back.features, lf.features)
    x = torch.randn(10, 8)
    torch.testing.assert_close(back.decoder(x), lf.decoder(x))
    for k, v in lf.gaussians.tensors().items():
        assert torch.equal(getattr(back.gaussians, k), v)


def test_language_decoder_keys_are_strict(tmp_path):
    lf = _language_field()
    from ccl.splat.decoder import decoder_tensors

    t = {**lf.gaussians.tensors(), "features": lf.features, **decoder_tensors(lf.decoder)}
    del t["decoder.2.bias"]
    path = save_safetensors(
        tmp_path / "sp.safetensors", t, {**HEADER, "kind": "language_field", "format_version": 1}
    )
    with pytest.raises(ValueError, match=r"missing \['decoder.2.bias'\]"):
        load_language_field(path)


def test_train_state_round_trip_restores_adam_and_rng(tmp_path):
    params = _gaussians().param_dict()
    opts = {k: torch.optim.Adam([p], lr=0.1, eps=1e-15) for k, p in params.items()}
    for p in params.values():
        p.grad = torch.ones_like(p)
    for o in opts.values():
        o.step()
    state = {"grad2d": torch.arange(20.0), "count": None, "scene_scale": 2.5}
    fp = fingerprint({"a": 1})
    path = partial_path(tmp_path / "rgb.safetensors")
    assert path.name == "rgb.partial.safetensors"
    torch.manual_seed(5)
    save_train_state(
        path, iteration=12, params=params, optimizers=opts, strategy_state=state,
        extra={"decoder.0.weight": torch.ones(2, 2)}, header={"fingerprint": fp},
    )  # fmt: skip
    expected_next = torch.rand(3)
    st = load_train_state(path, fingerprint=fp)
    assert (
        st.iteration == 12 and st.strategy_state["scene_scale"] == 2.5 and st.strategy_state["count"] is None
    )
    assert torch.equal(st.strategy_state["grad2d"], torch.arange(20.0))
    assert torch.equal(st.extra["decoder.0.weight"], torch.ones(2, 2))
    for k, p in params.items():
        assert torch.equal(st.params[k], p.detach())
        o = torch.optim.Adam([torch.nn.Parameter(st.params[k])], lr=0.1, eps=1e-15)
        o.load_state_dict(st.optimizers[k])
        got = o.state_dict()["state"][0]
        want = opts[k].state_dict()["state"][0]
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(got[key], want[key]), (k, key)
    torch.set_rng_state(st.rng_state)
    assert torch.equal(torch.rand(3), expected_next)
    # a state of another run (other fingerprint) is not resumed
    assert load_train_state(path, fingerprint=fingerprint({"a": 2})) is None
    # nor is a truncated file
    path.write_bytes(path.read_bytes()[:100])
    assert load_train_state(path, fingerprint=fp) is None
