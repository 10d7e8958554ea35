"""Random initialisation of a scene without points: inside the region the cameras look at, never at
the cameras (Gaussians there are haze in front of held-out views that training never removes)."""

from __future__ import annotations

import numpy as np

from ccl.splat.model import MIN_VIEWS, NEAR_FRACTION, VIEW_HALF_ANGLE_DEG, random_points_in_view


def _orbit(n=12, radius=2.0, height=1.0):
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    centers = np.stack([radius * np.cos(a), radius * np.sin(a), np.full(n, height)], 1)
    forwards = -centers / np.linalg.norm(centers, axis=1, keepdims=True)  # at the origin
    return centers, forwards


def _in_view_count(xyz, centers, forwards):
    rel = xyz[:, None, :] - centers[None]
    r = np.linalg.norm(rel, axis=2)
    along = np.einsum("mcd,cd->mc", rel, forwards)
    return (along >= np.cos(np.deg2rad(VIEW_HALF_ANGLE_DEG)) * r - 1e-6).sum(1), r


def test_orbit_points_surround_the_subject_and_keep_away_from_the_cameras():
    centers, forwards = _orbit()
    xyz, rgb = random_points_in_view(centers, forwards, 4000, np.random.default_rng(0))
    assert xyz.shape == (4000, 3) and rgb.dtype == np.uint8
    views, r = _in_view_count(xyz.astype(np.float64), centers, forwards)
    subject_distance = np.sqrt(5.0)
    assert r.min() > NEAR_FRACTION * subject_distance - 1e-5  # never at a camera
    assert (views >= MIN_VIEWS).all()
    assert np.median(np.linalg.norm(xyz, axis=1)) < 0.6 * subject_distance  # around the orbit's centre
    # the box spanned by the camera centres and one orbit radius ahead of each (the former draw) puts
    # many more points close to some camera
    rng = np.random.default_rng(0)
    ahead = centers + forwards * 2.0
    box = rng.uniform(np.minimum(centers, ahead).min(0), np.maximum(centers, ahead).max(0), size=(4000, 3))
    _, r_box = _in_view_count(box, centers, forwards)
    near_new = (r.min(1) < 0.5 * subject_distance).mean()
    near_box = (r_box.min(1) < 0.5 * subject_distance).mean()
    assert near_new < 0.5 * near_box, (near_new, near_box)


def test_forward_facing_points_lie_in_front_of_the_cameras():
    x = np.linspace(-0.5, 0.5, 5)
    centers = np.stack([x, np.zeros(5), np.zeros(5)], 1)
    forwards = np.tile([0.0, 0.0, 1.0], (5, 1))  # parallel axes: no nearest point to look at
    xyz, _ = random_points_in_view(centers, forwards, 2000, np.random.default_rng(1))
    views, r = _in_view_count(xyz.astype(np.float64), centers, forwards)
    assert (xyz[:, 2] > 0).all() and (views >= MIN_VIEWS).all()
    assert r.min() > 0.2  # NEAR_FRACTION x (2 x the cameras' spread of 0.5)


def test_the_draw_is_seeded():
    centers, forwards = _orbit(6)
    a = random_points_in_view(centers, forwards, 300, np.random.default_rng(5))
    b = random_points_in_view(centers, forwards, 300, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
