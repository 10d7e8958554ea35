"""`gaussian_view_votes` (`ccl query3d --select views`) reads a Gaussian's class where it lies on the first
surface a view draws: faint wide blobs near the camera, which pull the rendered expected depth far in front
of an object, do not keep the object's Gaussians from their votes (the tests' tiny field, where the
expected depth made `--select views` choose nothing for "red mug"), and a Gaussian behind the object's
surface still gets none."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ccl.host_tensor_guard import host_tensors_fail_on_meeting_the_device
from ccl.scene import Camera
from ccl.splat.checkpoint import LanguageField
from ccl.splat.decoder import build_decoder
from ccl.splat.model import Gaussians

WALL, HIDDEN, BLOB = 1, 2, 0  # classes: the object's surface, Gaussians behind it, the faint blobs


def _camera(name="frame_00000", x=0.0):
    # at (x, 0, -3) looking down +z (OpenCV: world_to_camera = translation by (-x, 0, 3))
    w2c = np.eye(4)
    w2c[:3, 3] = (-x, 0.0, 3.0)
    K = np.array([[40.0, 0, 20.0], [0, 40.0, 15.0], [0, 0, 1]])
    return Camera(name=name, image_path=f"{name}.png", width=40, height=30, K=K, world_to_camera=w2c)


def _field(blobs: bool) -> tuple[LanguageField, np.ndarray]:
    """An opaque wall of small Gaussians at z = 0 (depth 3), small Gaussians of another class 0.3 behind it
    and, with `blobs`, four faint wide ones 0.4 in front of the camera (each drawn over the whole wall);
    each Gaussian's feature the one-hot code of its class, decoded back exactly. -> (field, [G] class)."""
    gx, gy = np.meshgrid(np.arange(-0.6, 0.61, 0.04), np.arange(-0.45, 0.46, 0.04))
    wall = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], axis=1)
    hidden = wall[::7] + (0.0, 0.0, 0.3)
    parts = [(wall, 0.03, 0.99, WALL), (hidden, 0.03, 0.99, HIDDEN)]
    if blobs:
        near = np.array([(-0.1, -0.1, -2.6), (0.1, -0.1, -2.6), (-0.1, 0.1, -2.6), (0.1, 0.1, -2.6)])
        parts.append((near, 0.6, 0.1, BLOB))
    xyz = np.concatenate([p for p, *_ in parts])
    cls = np.concatenate([np.full(len(p), k) for p, _, _, k in parts])
    scale = np.concatenate([np.full(len(p), s) for p, s, _, _ in parts])
    opacity = np.concatenate([np.full(len(p), o) for p, _, o, _ in parts])
    n = len(xyz)
    sh = torch.zeros(n, 1, 3)
    g = Gaussians(
        torch.tensor(xyz, dtype=torch.float32), torch.tensor([[1.0, 0, 0, 0]] * n),
        torch.tensor(np.log(scale)[:, None].repeat(3, axis=1), dtype=torch.float32),
        torch.logit(torch.tensor(opacity, dtype=torch.float32)), sh, sh[:, :0],
    )  # fmt: skip
    codes = torch.eye(3)
    dec = build_decoder(3, 3, 3)
    with torch.no_grad():
        dec[0].weight.copy_(10 * codes)
        dec[0].bias.zero_()
        dec[2].weight.copy_(torch.eye(3))
        dec[2].bias.zero_()
    return LanguageField(g, codes[torch.from_numpy(cls)], dec, {}), cls


CAMERAS = [_camera("frame_00000"), _camera("frame_00001", x=0.2)]


def _votes(field):
    from ccl.query.view import gaussian_view_votes

    with host_tensors_fail_on_meeting_the_device():  # every tensor made on the device of the field's
        return gaussian_view_votes(field, CAMERAS).classes


@pytest.mark.parametrize("blobs", [False, True])
def test_the_wall_gets_its_votes_through_faint_blobs_and_what_hides_behind_it_none(blobs):
    from ccl.query.view import VOTE_DEPTH_TOL
    from ccl.splat.render import render_channels

    field, cls = _field(blobs)
    votes = _votes(field)
    wall, hidden = cls == WALL, cls == HIDDEN
    uv, z = CAMERAS[0].project(field.gaussians.means.numpy().astype(np.float64))
    inside = (uv[:, 0] >= 1) & (uv[:, 0] < 39) & (uv[:, 1] >= 1) & (uv[:, 1] < 29)
    assert (wall & inside).sum() > 500 and (hidden & inside).sum() > 50
    # every wall Gaussian in view is voted its own class, by both views; the hidden ones get no vote
    np.testing.assert_array_equal(votes[wall & inside, WALL], 2.0)
    assert votes[wall].sum() == votes[wall, WALL].sum()
    assert votes[hidden].sum() == 0
    assert votes[cls == BLOB].sum() == 0  # around the camera: drawn in front of it, not on a surface
    if blobs:  # the case where the expected depth fails: the blobs pull it well in front of the wall
        with torch.no_grad():
            out = render_channels(field.gaussians, CAMERAS[0], rgb=False, features=field.features)
        depth = out.depth[0, 10:20, 12:28, 0]
        assert float(depth.max()) < (3.0 - 0.03) / (1.0 + VOTE_DEPTH_TOL) - 0.2
        assert float(out.alpha[0, 10:20, 12:28, 0].min()) > 0.99


def test_a_denser_veil_in_front_takes_the_votes():
    """Blobs letting less than half the light through are the first surface: the wall behind is hidden."""
    field, cls = _field(True)
    g = field.gaussians
    veil = torch.from_numpy(cls == BLOB)
    near = g.means.clone()
    near[veil, 2] = -2.0  # a metre from the camera: their front is in front of it, they are drawn
    opacity = g.opacity_logits.clone()
    opacity[veil] = math.log(0.5 / 0.5) + 3.0  # opacity 0.95 each
    field = LanguageField(
        Gaussians(near, g.quats, g.log_scales, opacity, g.sh0, g.shN), field.features, field.decoder, {}
    )
    votes = _votes(field)
    assert votes[cls == WALL].sum() == 0 and votes[cls == HIDDEN].sum() == 0
    assert (votes[cls == BLOB, BLOB] > 0).all()
