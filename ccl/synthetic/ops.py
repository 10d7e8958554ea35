"""Small pure functions of the synthetic scene: ray/shape intersections, rotations, procedural textures.

Shapes are intersected in their own unit space (unit sphere, cube [-1, 1]^3, cylinder x²+y² <= 1 with
|z| <= 1): a primitive maps a world ray o + t·d to o' + t·d' by an affine map, so the ray parameter t
is the same in both spaces and the nearest hit over primitives is a plain minimum of t. Directions are
not normalised (the renderer uses camera-forward component 1, so t is camera depth).
"""

from __future__ import annotations

import numpy as np

EPS_T = 1e-6  # smallest accepted ray parameter (self-intersection guard)


def rot_z(angle: float) -> np.ndarray:
    """[3, 3] rotation about +z by `angle` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def normalize(v: np.ndarray) -> np.ndarray:
    """Rows of `v` [..., 3] scaled to unit length (zero rows stay zero)."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def _first_positive(*ts: np.ndarray) -> np.ndarray:
    """Smallest candidate > EPS_T per ray, inf where none (candidates are inf when invalid)."""
    best = np.full(ts[0].shape, np.inf)
    for t in ts:
        best = np.where((t > EPS_T) & (t < best), t, best)
    return best


def intersect_sphere(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit sphere. o, d: [N, 3] -> (t [N], inf = miss; local normal [N, 3])."""
    a = np.einsum("ij,ij->i", d, d)
    hb = np.einsum("ij,ij->i", o, d)
    c = np.einsum("ij,ij->i", o, o) - 1.0
    disc = hb * hb - a * c
    ok = disc >= 0
    sq = np.sqrt(np.where(ok, disc, 0.0))
    t0 = np.where(ok, (-hb - sq) / a, np.inf)
    t1 = np.where(ok, (-hb + sq) / a, np.inf)
    t = _first_positive(t0, t1)
    p = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
    return t, p


def intersect_box(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cube [-1, 1]^3 by slabs. -> (t [N], local normal [N, 3])."""
    d = np.where(np.abs(d) < 1e-12, 1e-12, d)
    inv = 1.0 / d
    t1 = (-1.0 - o) * inv
    t2 = (1.0 - o) * inv
    tlo = np.minimum(t1, t2)
    thi = np.maximum(t1, t2)
    tmin = tlo.max(axis=1)
    tmax = thi.min(axis=1)
    hit = tmax >= np.maximum(tmin, EPS_T)
    entering = tmin > EPS_T
    t = np.where(hit, np.where(entering, tmin, tmax), np.inf)
    axis = np.where(entering, tlo.argmax(axis=1), thi.argmin(axis=1))
    rows = np.arange(len(o))
    normal = np.zeros_like(o)
    # The face normal points against the ray when entering, along it when leaving (camera inside).
    sign = -np.sign(d[rows, axis]) * np.where(entering, 1.0, -1.0)
    normal[rows, axis] = sign
    return t, normal


def intersect_cylinder(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Capped cylinder x²+y² <= 1, |z| <= 1. -> (t [N], local outward normal [N, 3]).

    A ray starting inside gets its exit point (used for the room, seen from within).
    """
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    hb = o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1]
    c = o[:, 0] ** 2 + o[:, 1] ** 2 - 1.0
    disc = hb * hb - a * c
    ok = (disc >= 0) & (a > 1e-18)
    sq = np.sqrt(np.where(ok, disc, 0.0))
    a_safe = np.where(a > 1e-18, a, 1.0)
    cand = []
    for sgn in (-1.0, 1.0):
        ts = np.where(ok, (-hb + sgn * sq) / a_safe, np.inf)
        z = o[:, 2] + np.where(np.isfinite(ts), ts, 0.0) * d[:, 2]
        cand.append(np.where(np.abs(z) <= 1.0, ts, np.inf))
    dz = np.where(np.abs(d[:, 2]) < 1e-12, 1e-12, d[:, 2])
    for cap in (-1.0, 1.0):
        tc = (cap - o[:, 2]) / dz
        x = o[:, 0] + tc * d[:, 0]
        y = o[:, 1] + tc * d[:, 1]
        cand.append(np.where(x * x + y * y <= 1.0, tc, np.inf))
    stack = np.stack(cand)  # [4, N]: side near, side far, bottom cap, top cap
    valid = stack > EPS_T
    masked = np.where(valid, stack, np.inf)
    which = masked.argmin(axis=0)
    t = masked.min(axis=0)
    p = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
    normal = np.zeros_like(o)
    side = which < 2
    normal[side, 0] = p[side, 0]
    normal[side, 1] = p[side, 1]
    normal[which == 2, 2] = -1.0
    normal[which == 3, 2] = 1.0
    return t, normal


def intersect_room(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The unit cylinder seen from inside (every origin inside it): exit point, inward normal.

    A third of `intersect_cylinder`'s work: from inside, the side's far root and the cap the ray
    heads for are the only candidates, and one of them is the exit.
    """
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    hb = o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1]
    c = o[:, 0] ** 2 + o[:, 1] ** 2 - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = np.where(a > 1e-18, (-hb + np.sqrt(np.maximum(hb * hb - a * c, 0.0))) / a, np.inf)
        up = d[:, 2] >= 0
        t_cap = np.where(np.abs(d[:, 2]) > 1e-18, (np.where(up, 1.0, -1.0) - o[:, 2]) / d[:, 2], np.inf)
    side = t_side < t_cap
    t = np.where(side, t_side, t_cap)
    normal = np.zeros_like(o)
    ts = t[side]
    normal[side, 0] = -(o[side, 0] + ts * d[side, 0])
    normal[side, 1] = -(o[side, 1] + ts * d[side, 1])
    normal[~side, 2] = np.where(up[~side], -1.0, 1.0)
    return t, normal


SHAPES = {"sphere": 0, "box": 1, "cylinder": 2, "room": 3}
INTERSECT = {0: intersect_sphere, 1: intersect_box, 2: intersect_cylinder, 3: intersect_room}


def ray_sphere_hits(
    o: np.ndarray, d: np.ndarray, center: np.ndarray, radius: float, dots: tuple | None = None
) -> np.ndarray:
    """[N] bool: does the ray's forward half-line pass within `radius` of `center` (bounding test).

    `dots` = ray_dots(o, d), precomputed once when many spheres are tested against the same rays.
    """
    oo, dd, od = ray_dots(o, d) if dots is None else dots
    center = np.asarray(center, float)
    hb = od - d @ center
    c = oo - 2.0 * (o @ center) + center @ center - radius * radius
    disc = hb * hb - dd * c
    # Hit if the discriminant is non-negative and the far root is ahead of the origin.
    return (disc >= 0) & (np.sqrt(np.maximum(disc, 0.0)) > hb)


def cone_sphere_hits(
    origin: np.ndarray, d: np.ndarray, dd: np.ndarray, center: np.ndarray, radius: float
) -> np.ndarray:
    """`ray_sphere_hits` for rays sharing one `origin` [3] (a camera's primary rays); dd = d·d [N].

    Fast path: the ray passes within `radius` iff the angle to the centre is small enough,
    (d·oc)² >= |d|² (|oc|² - r²) with d·oc > 0; a camera inside the sphere hits it with every ray.
    """
    oc = np.asarray(center, float) - origin
    k = oc @ oc - radius * radius
    if k <= 0:
        return np.ones(len(d), bool)
    dot = d @ oc
    return (dot > 0) & (dot * dot >= dd * k)


def ray_dots(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(o·o, d·d, o·d), each [N], for `ray_sphere_hits`."""
    return np.einsum("ij,ij->i", o, o), np.einsum("ij,ij->i", d, d), np.einsum("ij,ij->i", o, d)


# --- procedural textures: albedo [M, 3] in [0, 1] from positions --------------------------------------


def wobble(p: np.ndarray, freq: float, phase: float = 0.0) -> np.ndarray:
    """Smooth deterministic noise in [-1, 1] of positions p [M, 3] (a sum of three plane waves)."""
    a1 = np.array([0.80, 0.53, 0.27])
    a2 = np.array([-0.41, 0.77, -0.49])
    a3 = np.array([0.23, -0.36, 0.90])
    s = (
        np.sin(freq * (p @ a1) + phase)
        + np.sin(1.73 * freq * (p @ a2) + 2.1 * phase + 1.3)
        + np.sin(2.91 * freq * (p @ a3) + 0.7 * phase + 2.6)
    )
    return s / 3.0


def mix(c1: np.ndarray, c2: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-row blend of two colours [3] by weight w [M] (0 -> c1, 1 -> c2)."""
    w = np.clip(w, 0.0, 1.0)[:, None]
    return (1.0 - w) * np.asarray(c1)[None] + w * np.asarray(c2)[None]


def wood(p_xy: np.ndarray, dark: np.ndarray, light: np.ndarray, freq: float) -> np.ndarray:
    """Wood-like grain on a plane: warped stripes along y with fine streaks. p_xy [M, 2]."""
    x, y = p_xy[:, 0], p_xy[:, 1]
    warp = 0.35 * np.sin(1.7 * y + 0.5) + 0.15 * np.sin(4.3 * y + 1.1 * x)
    rings = 0.5 + 0.5 * np.sin(freq * (x + warp))
    streak = 0.5 + 0.5 * np.sin(9.0 * freq * (x + 0.3 * warp) + 3.0 * np.sin(2.3 * y))
    return mix(dark, light, 0.65 * rings + 0.35 * streak**3)


def checker(u: np.ndarray, v: np.ndarray, c1: np.ndarray, c2: np.ndarray, cells: float) -> np.ndarray:
    """Checkerboard of `cells` squares per unit of (u, v)."""
    k = (np.floor(u * cells) + np.floor(v * cells)).astype(np.int64) % 2
    return mix(c1, c2, k.astype(float))


# Rubik's cube sticker colours, by face (-x, +x, -y, +y, -z, +z).
RUBIK_COLORS = np.array(
    [
        [0.95, 0.45, 0.05],
        [0.80, 0.05, 0.05],
        [0.05, 0.55, 0.15],
        [0.05, 0.25, 0.80],
        [0.95, 0.90, 0.10],
        [0.95, 0.95, 0.95],
    ]
)


def rubik(p_local: np.ndarray, n_local: np.ndarray) -> np.ndarray:
    """3×3 coloured stickers with black gaps on each face of the unit cube."""
    axis = np.abs(n_local).argmax(axis=1)
    face = 2 * axis + (n_local[np.arange(len(axis)), axis] > 0)
    col = RUBIK_COLORS[face]
    others = np.stack(
        [p_local[np.arange(len(axis)), (axis + 1) % 3], p_local[np.arange(len(axis)), (axis + 2) % 3]]
    )
    cell = (others + 1.0) * 1.5  # [0, 3] per coordinate
    frac = cell - np.floor(cell)
    gap = ((frac < 0.08) | (frac > 0.92)).any(axis=0)
    return np.where(gap[:, None], 0.05, col)


def shoelace_area(poly: np.ndarray) -> float:
    """Area of a simple polygon [K, 2] by the shoelace formula (absolute value)."""
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def line_kernel(length: float, angle: float) -> np.ndarray:
    """Normalised linear motion-blur kernel of `length` pixels at `angle` radians (odd square size)."""
    size = int(np.ceil(length)) | 1
    k = np.zeros((size, size), np.float64)
    c = (size - 1) / 2.0
    n = max(4 * size, 8)
    for s in np.linspace(-length / 2.0, length / 2.0, n):
        x, y = c + s * np.cos(angle), c + s * np.sin(angle)
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        for dx, dy, w in (
            (0, 0, (1 - fx) * (1 - fy)),
            (1, 0, fx * (1 - fy)),
            (0, 1, (1 - fx) * fy),
            (1, 1, fx * fy),
        ):
            if 0 <= x0 + dx < size and 0 <= y0 + dy < size:
                k[y0 + dy, x0 + dx] += w
    return k / k.sum()
