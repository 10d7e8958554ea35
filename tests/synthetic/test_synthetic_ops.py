"""Ray casting primitives: each intersection against ray marching, each fast path against its reference."""

from __future__ import annotations

import numpy as np
import pytest

from ccl.synthetic import ops

# Ray marching resolves the first hit to within its step; float64 closed forms are far more exact.
MARCH_STEP = 1e-3

INSIDE = {
    "sphere": lambda p: (p**2).sum(-1) <= 1.0,
    "box": lambda p: (np.abs(p) <= 1.0).all(-1),
    "cylinder": lambda p: (p[..., 0] ** 2 + p[..., 1] ** 2 <= 1.0) & (np.abs(p[..., 2]) <= 1.0),
}


def random_rays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rays from outside the unit shapes aimed near the origin (about half of them hit)."""
    rng = np.random.default_rng(seed)
    o = ops.normalize(rng.normal(size=(n, 3))) * rng.uniform(2.0, 4.0, (n, 1))
    target = rng.uniform(-1.3, 1.3, (n, 3))
    d = (target - o) * rng.uniform(0.5, 2.0, (n, 1))  # unnormalised on purpose: t is a ray parameter
    return o, d


def march(o: np.ndarray, d: np.ndarray, inside) -> np.ndarray:
    """First ray parameter t at which the ray is inside (world steps of MARCH_STEP), inf if never."""
    out = np.full(len(o), np.inf)
    for i in range(len(o)):
        speed = np.linalg.norm(d[i])
        ts = np.arange(0.0, 10.0 / speed, MARCH_STEP / speed)
        ins = inside(o[i] + ts[:, None] * d[i])
        if ins.any():
            out[i] = ts[ins.argmax()]
    return out


@pytest.mark.parametrize("shape", ["sphere", "box", "cylinder"])
def test_intersection_matches_ray_marching(shape):
    o, d = random_rays(60, seed=len(shape))
    t, normal = ops.INTERSECT[ops.SHAPES[shape]](o, d)
    ref = march(o, d, INSIDE[shape])
    hit = np.isfinite(ref)
    assert 5 <= hit.sum() <= len(o) - 5  # hits and misses are both exercised
    np.testing.assert_array_equal(np.isfinite(t), hit)
    tol = 1.5 * MARCH_STEP / np.linalg.norm(d[hit], axis=1)
    assert (np.abs(t[hit] - ref[hit]) <= tol).all()
    # Hits from outside: the normal faces the incoming ray.
    assert (np.einsum("ij,ij->i", normal[hit], d[hit]) < 0).all()


def test_sphere_closed_form():
    o = np.array([[0.0, 0.0, -5.0]])
    d = np.array([[0.0, 0.0, 2.0]])
    t, n = ops.intersect_sphere(o, d)
    assert t[0] == pytest.approx(2.0) and np.allclose(n[0], [0, 0, -1])


def test_room_fast_path_matches_cylinder_from_inside():
    rng = np.random.default_rng(0)
    o = rng.uniform(-0.6, 0.6, (500, 3))
    d = rng.normal(size=(500, 3))
    d[:5, :2] = 0.0  # straight up or down
    d[5:10, 2] = 0.0  # horizontal
    t_room, n_room = ops.intersect_room(o, d)
    t_cyl, n_cyl = ops.intersect_cylinder(o, d)
    np.testing.assert_allclose(t_room, t_cyl, rtol=1e-12)
    p = o + t_room[:, None] * d
    side = np.abs(np.abs(p[:, 2]) - 1.0) > 1e-9
    # Inward normals: the opposite of the cylinder's outward ones.
    np.testing.assert_allclose(n_room[side], -n_cyl[side], atol=1e-12)
    np.testing.assert_allclose(n_room[~side], -n_cyl[~side], atol=1e-12)


def test_cone_fast_path_matches_general_bounding_test():
    rng = np.random.default_rng(1)
    origin = np.array([1.5, -0.3, 0.9])
    d = rng.normal(size=(4000, 3))
    o = np.broadcast_to(origin, d.shape)
    dots = ops.ray_dots(o, d)
    for center, radius in [((0.0, 0.0, 0.1), 0.3), ((0.2, -0.1, 0.5), 0.05), ((1.4, -0.3, 0.9), 0.5)]:
        center = np.asarray(center)
        fast = ops.cone_sphere_hits(origin, d, dots[1], center, radius)
        ref = ops.ray_sphere_hits(o, d, center, radius, dots)
        np.testing.assert_array_equal(fast, ref)
        assert 0 < ref.sum()


def test_bounding_test_never_misses_a_primitive_hit():
    rng = np.random.default_rng(2)
    for _ in range(5):
        rot = ops.rot_z(rng.uniform(0, 6)) @ ops.rot_x(rng.uniform(0, 6))
        scale = rng.uniform(0.05, 0.3, 3)
        center = rng.uniform(-0.5, 0.5, 3)
        o, d = random_rays(400, seed=int(rng.integers(1000)))
        o = o * 0.5
        ol = ((o - center) @ rot) / scale
        dl = (d @ rot) / scale
        t, _ = ops.intersect_box(ol, dl)
        near = ops.ray_sphere_hits(o, d, center, float(np.linalg.norm(scale)))
        assert not (np.isfinite(t) & ~near).any()


def test_line_kernel_and_shoelace():
    k = ops.line_kernel(4.0, 0.0)
    assert k.sum() == pytest.approx(1.0) and k.shape == (5, 5)
    assert (k[2] > 0).sum() == 5 and k[[0, 1, 3, 4]].sum() == pytest.approx(0.0)
    square = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 3.0], [0.0, 3.0]])
    assert ops.shoelace_area(square) == 6.0
