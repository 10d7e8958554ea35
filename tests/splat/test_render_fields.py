"""Render helpers: shapes, the prototype map = prototypes[class map], and the colour of a known field."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccl.scene import Camera
from ccl.splat.checkpoint import LanguageField
from ccl.splat.decoder import build_decoder
from ccl.splat.model import init_gaussians, rgb_to_sh0
from ccl.splat.render import render_class_map, render_prototype_features, render_rgb, resolve_device


def _camera(w=40, h=30, name="frame_00000"):
    # at (0, 0, -3) looking down +z at the origin (OpenCV: world_to_camera = translation by +3 in z)
    w2c = np.eye(4)
    w2c[2, 3] = 3.0
    K = np.array([[40.0, 0, w / 2], [0, 40.0, h / 2], [0, 0, 1]])
    return Camera(name=name, image_path=f"{name}.png", width=w, height=h, K=K, world_to_camera=w2c)


def _field(n_classes=3, feature_dim=8):
    """Two big opaque Gaussians side by side (left x < 0, right x > 0), features = one-hot-ish codes."""
    xyz = np.array([[-0.6, 0, 0], [0.6, 0, 0]], dtype=np.float32)
    rgb = np.array([[255, 0, 0], [0, 0, 255]], dtype=np.uint8)
    g = init_gaussians(xyz, rgb, sh_degree=0, init_opacity=0.99, init_scale=0.4)
    codes = torch.eye(feature_dim)[:2] * 5
    dec = build_decoder(feature_dim, n_classes, n_classes)
    with torch.no_grad():
        dec[0].weight.zero_()
        dec[0].weight[0, 0] = 1  # hidden 0 fires on the left code, hidden 1 on the right one
        dec[0].weight[1, 1] = 1
        dec[0].bias.zero_()
        dec[2].weight.copy_(torch.eye(n_classes)[:, :n_classes] * 3)
        dec[2].bias.copy_(torch.tensor([0.0, 0.0, 0.5])[:n_classes])  # class 2 where the feature is ~0
    return LanguageField(g, codes, dec, {})


def test_shapes_and_dtypes():
    cam, lf = _camera(), _field()
    img = render_rgb(lf.gaussians, cam)
    assert img.shape == (30, 40, 3) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
    cls = render_class_map(lf, cam)
    assert cls.shape == (30, 40) and cls.dtype == np.int64
    protos = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    feat = render_prototype_features(lf, protos, cam)
    assert feat.shape == (30, 40, 5) and feat.dtype == np.float32


def test_prototype_map_is_prototypes_of_class_map():
    cam, lf = _camera(), _field()
    protos = np.random.default_rng(1).normal(size=(3, 16)).astype(np.float32)
    np.testing.assert_array_equal(
        render_prototype_features(lf, protos, cam), protos[render_class_map(lf, cam)]
    )


def test_class_map_and_colours_follow_the_gaussians():
    cam, lf = _camera(), _field()
    cls = render_class_map(lf, cam)
    img = render_rgb(lf.gaussians, cam)
    row = 15
    # the left Gaussian (x = -0.6) projects at u = 20 - 40·0.6/3 = 12, the right one at u = 28
    assert cls[row, 12] == 0 and cls[row, 28] == 1
    assert cls[0, 0] == 2  # a corner no Gaussian reaches: feature 0 → the bias class
    assert img[row, 12, 0] > 0.8 and img[row, 12, 2] < 0.2
    assert img[row, 28, 2] > 0.8 and img[row, 28, 0] < 0.2
    white = render_rgb(lf.gaussians, cam, background=(1.0, 1.0, 1.0))
    assert (white[0, 0] > 0.95).all() and (img[0, 0] < 0.05).all()  # the corner is (almost) background
    np.testing.assert_allclose(white[row, 12], img[row, 12], atol=0.05)


def test_prototypes_of_another_codebook_are_refused():
    with pytest.raises(ValueError, match=r"prototypes have shape \[5, 4\], expected \[3, D\]"):
        render_prototype_features(_field(), np.zeros((5, 4), np.float32), _camera())


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        resolve_device("tpu")
    assert rgb_to_sh0(np.array([[0.5, 0.5, 0.5]])).shape == (1, 1, 3)
