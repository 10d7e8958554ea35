"""`render_transmittance`: the light the field lets through to a point, measured with probe Gaussians through
the rasterizer's gradient, against the product of (1 - alpha) of the Gaussians in front, worked out by hand;
the CPU twin against the dense reference; points not drawn get 0."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ccl.scene import Camera
from ccl.splat.model import Gaussians
from ccl.splat.render import PROBE_OPACITY, render_transmittance

FOCAL, W, H = 40.0, 40, 30


def _camera():
    # at (0, 0, -3) looking down +z (OpenCV: world_to_camera = translation by +3 in z)
    w2c = np.eye(4)
    w2c[2, 3] = 3.0
    K = np.array([[FOCAL, 0, W / 2], [0, FOCAL, H / 2], [0, 0, 1]])
    return Camera(
        name="frame_00000", image_path="frame_00000.png", width=W, height=H, K=K, world_to_camera=w2c
    )


# a faint wide blob at depth 1 (opacity 0.3) and an opaque one at depth 3.5, both on the optical axis
BLOBS = [((0.0, 0.0, -2.0), 0.5, 0.3), ((0.0, 0.0, 0.5), 0.5, 0.99)]  # (centre, scale, opacity)


def _field(dtype=torch.float64):
    means = torch.tensor([c for c, _, _ in BLOBS], dtype=dtype)
    log_scales = torch.tensor([[math.log(s)] * 3 for _, s, _ in BLOBS], dtype=dtype)
    op = torch.tensor([o for _, _, o in BLOBS], dtype=dtype)
    quats = torch.tensor([[1.0, 0, 0, 0]] * len(BLOBS), dtype=dtype)
    sh = torch.zeros(len(BLOBS), 1, 3, dtype=dtype)
    return Gaussians(means, quats, log_scales, torch.logit(op), sh, sh[:, :0])


def _by_hand(point) -> float:
    """The field's transmittance at `point` as a probe reads it: at each pixel centre, the product over the
    blobs in front of the point (by camera depth) of 1 - alpha (the blobs sit on the axis, so their 2D
    covariance is (FOCAL * scale / depth)^2 + the rasterizer's 0.3 px^2 dilation), averaged with the
    probe's own alphas (its covariance the dilation alone; pixels where it is below 1/255 skipped)."""
    x, y, z = point[0], point[1], point[2] + 3.0
    pu, pv = W / 2 + FOCAL * x / z, H / 2 + FOCAL * y / z  # where the point projects, in pixels
    num = den = 0.0
    for row in range(H):
        for col in range(W):
            u, v = col + 0.5, row + 0.5
            a = PROBE_OPACITY * math.exp(-0.5 * ((u - pu) ** 2 + (v - pv) ** 2) / 0.3)
            if a < 1 / 255:
                continue
            t = 1.0
            for (_, _, cz), s, o in BLOBS:
                d = cz + 3.0
                if d < z:
                    var = (FOCAL * s / d) ** 2 + 0.3
                    t *= 1.0 - o * math.exp(-0.5 * ((u - W / 2) ** 2 + (v - H / 2) ** 2) / var)
            num, den = num + a * t, den + a
    return num / den


POINTS = [
    (0.0, 0.0, -2.5),  # in front of both: 1
    (0.0, 0.0, -1.0),  # behind the faint blob only: 0.7
    (0.3, 0.2, -1.0),  # the same, off the axis, where the blob is fainter
    (0.0, 0.0, 1.5),  # behind the opaque blob: about 0.01
    (-0.4, 0.1, 1.5),
]


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_transmittance_is_the_light_left_by_the_gaussians_in_front(backend):
    got = render_transmittance(
        _field(), _camera(), torch.tensor(POINTS, dtype=torch.float64), backend=backend
    )
    want = [_by_hand(p) for p in POINTS]
    assert want[0] == 1.0 and abs(want[1] - 0.7) < 1e-3 and want[3] < 0.02  # the cases are what they say
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


def test_cpu_twin_matches_the_reference_and_float32():
    pts = torch.tensor(POINTS, dtype=torch.float64)
    cpu = render_transmittance(_field(), _camera(), pts, backend="cpu")
    ref = render_transmittance(_field(), _camera(), pts, backend="reference")
    np.testing.assert_allclose(cpu.numpy(), ref.numpy(), atol=1e-9)
    f32 = render_transmittance(_field(torch.float32), _camera(), pts.float())
    assert f32.dtype == torch.float32
    np.testing.assert_allclose(f32.numpy(), cpu.numpy(), atol=1e-4)


def test_points_not_drawn_have_none_and_probes_do_not_dim_each_other():
    pts = torch.tensor([(0.0, 0.0, -4.0), (5.0, 0.0, 0.0), (0.0, 0.0, -2.5)], dtype=torch.float64)
    got = render_transmittance(_field(), _camera(), pts).numpy()
    assert got[0] == 0.0 and got[1] == 0.0  # behind the camera; off the image
    # fifty probes stacked on one ray in front of the faint blob: each still reads 1
    stack = torch.tensor([(0.0, 0.0, -2.9 + 0.01 * k) for k in range(50)], dtype=torch.float64)
    np.testing.assert_allclose(render_transmittance(_field(), _camera(), stack).numpy(), 1.0, atol=1e-9)
    assert render_transmittance(_field(), _camera(), torch.zeros(0, 3, dtype=torch.float64)).shape == (0,)
