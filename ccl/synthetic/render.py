"""Analytic ray casting of the synthetic scene (numpy, vectorised over rays).

`cast` finds the nearest primitive along every ray, testing each object's primitives only on the rays
that pass its bounding sphere; `shade` turns hits into colours (procedural albedo, Lambertian light
from one direction plus ambient, shadows, mild specular highlights).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ccl.synthetic import ops
from ccl.synthetic.geometry import ROLE_OCCLUDER, ROLE_ROOM, Material, PlacedObject, Primitive

LIGHT_DIR = ops.normalize(np.array([0.45, 0.3, 1.0]))  # towards the light
AMBIENT = 0.38
SHININESS = 40.0
TABLE_RADIUS = 1.4  # the wooden round table; the floor beyond it is tiled
ROOM_RADIUS, ROOM_HEIGHT = 4.0, 3.0
SHADOW_OFFSET = 1e-4
# Occluders stand between the objects (within ~0.6 of the centre) and the cameras: from this radius
# to this fraction of the orbit radius.
OCCLUDER_RADII = (0.68, 0.75)


@dataclass(frozen=True)
class Group:
    """Primitives tested together, behind one bounding sphere (None = test every ray)."""

    first: int  # index of its first primitive in the scene's flat list
    prims: tuple[Primitive, ...]
    center: np.ndarray | None  # [3]
    radius: float
    object_index: int  # -1 unless the group is one object
    casts_shadow: bool


@dataclass(frozen=True)
class Hits:
    t: np.ndarray  # [N] float64, ray parameter (= camera depth for primary rays), inf = nothing hit
    prim: np.ndarray  # [N] int64, index into the scene's primitives, -1 = nothing hit
    normal_local: np.ndarray  # [N, 3] float64, the hit primitive's unit-space normal
    alone: np.ndarray | None  # [n_objects, N] bool: the ray hits object i when all else is removed


class SceneGeometry:
    """All primitives of a scene (objects, occluders, room) in one flat list plus their groups."""

    def __init__(self, objects: list[PlacedObject], occluders: list[Primitive], room: Primitive):
        self.objects = objects
        self.groups: list[Group] = []
        self.prims: list[Primitive] = []
        for obj in objects:
            c, r = obj.bounds()
            self._add(obj.prims, c, r, obj.index, True)
        for occ in occluders:
            self._add([occ], occ.center, occ.bounding_radius(), -1, True)
        self._add([room], None, 0.0, -1, False)
        bounded = [g for g in self.groups if g.center is not None]
        if bounded:
            lo = np.min([g.center - g.radius for g in bounded], axis=0)
            hi = np.max([g.center + g.radius for g in bounded], axis=0)
            self.all_center = 0.5 * (lo + hi)
            self.all_radius = max(
                float(np.linalg.norm(g.center - self.all_center)) + g.radius for g in bounded
            )
        else:
            self.all_center, self.all_radius = np.zeros(3), 0.0
        n = len(self.prims)
        self.center = np.stack([p.center for p in self.prims])  # [P, 3]
        self.rot = np.stack([p.rot for p in self.prims])  # [P, 3, 3]
        self.scale = np.stack([p.scale for p in self.prims])  # [P, 3]
        self.role = np.array([p.role for p in self.prims], np.int64)  # [P]
        self.object_index = np.array([p.object_index for p in self.prims], np.int64)  # [P]
        self.part_id = np.array([p.part_id for p in self.prims], np.int64)  # [P]
        self.subpart_id = np.array([p.subpart_id for p in self.prims], np.int64)  # [P]
        assert len(self.center) == n

    def _add(self, prims, center, radius, object_index, casts_shadow):
        self.groups.append(
            Group(len(self.prims), tuple(prims), center, float(radius), object_index, casts_shadow)
        )
        self.prims.extend(prims)

    def cast(self, o: np.ndarray, d: np.ndarray, *, alone: bool = False, shadow: bool = False) -> Hits:
        """Nearest hit of every ray o + t·d (t > 0). `shadow`: only shadow casters are tested."""
        n = len(o)
        best_t = np.full(n, np.inf)
        best_prim = np.full(n, -1, np.int64)
        best_n = np.zeros((n, 3))
        alone_mask = np.zeros((len(self.objects), n), bool) if alone else None
        shared_origin = bool(n) and bool((o == o[0]).all())  # a camera's primary rays: cone test
        # Two-level culling: the sphere round all bounded groups, then each group's own sphere.
        near_all = self._near(o, d, self.all_center, self.all_radius, shared_origin, ops.ray_dots(o, d))
        sub = np.flatnonzero(near_all)
        o_sub, d_sub = o[sub], d[sub]
        dots = ops.ray_dots(o_sub, d_sub)
        for g in self.groups:
            if shadow and not g.casts_shadow:
                continue
            if g.center is None:  # every ray: no gathers
                for k, p in enumerate(g.prims):
                    t, nl = self._intersect(p, o, d)
                    upd = t < best_t
                    best_t[upd] = t[upd]
                    best_prim[upd] = g.first + k
                    best_n[upd] = nl[upd]
                continue
            idx = sub[self._near(o_sub, d_sub, g.center, g.radius, shared_origin, dots)]
            if idx.size == 0:
                continue
            o_g, d_g = o[idx], d[idx]
            for k, p in enumerate(g.prims):
                t, nl = self._intersect(p, o_g, d_g)
                if alone_mask is not None and g.object_index >= 0:
                    alone_mask[g.object_index, idx] |= np.isfinite(t)
                upd = t < best_t[idx]
                sel = idx[upd]
                best_t[sel] = t[upd]
                best_prim[sel] = g.first + k
                best_n[sel] = nl[upd]
        return Hits(best_t, best_prim, best_n, alone_mask)

    @staticmethod
    def _near(o, d, center, radius, shared_origin, dots) -> np.ndarray:
        """[N] bool: rays passing the bounding sphere (cone test for rays from one camera)."""
        if len(o) == 0:
            return np.zeros(0, bool)
        if shared_origin:
            return ops.cone_sphere_hits(o[0], d, dots[1], center, radius)
        return ops.ray_sphere_hits(o, d, center, radius, dots)

    @staticmethod
    def _intersect(p: Primitive, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One primitive in its unit space: (t [N], unit-space normal [N, 3])."""
        ol = ((o - p.center) @ p.rot) / p.scale
        dl = (d @ p.rot) / p.scale
        return ops.INTERSECT[p.shape](ol, dl)

    def shade(
        self, o: np.ndarray, d: np.ndarray, hits: Hits, *, highlights: float, shadows: bool
    ) -> np.ndarray:
        """Colours [N, 3] float64 in [0, 1] of the hits (rays that hit nothing are black)."""
        n = len(o)
        color = np.zeros((n, 3))
        hit = hits.prim >= 0
        if not hit.any():
            return color
        p_w = o + np.where(hit, hits.t, 0.0)[:, None] * d
        albedo = np.zeros((n, 3))
        normal = np.zeros((n, 3))
        spec_k = np.zeros(n)
        order = np.argsort(hits.prim, kind="stable")
        bounds = np.searchsorted(hits.prim[order], np.arange(len(self.prims) + 1))
        for k, p in enumerate(self.prims):
            m = order[bounds[k] : bounds[k + 1]]
            if m.size == 0:
                continue
            nl = hits.normal_local[m]
            pl = ((p_w[m] - p.center) @ p.rot) / p.scale
            nw = ops.normalize((nl / p.scale) @ p.rot.T)
            normal[m] = nw
            albedo[m] = albedo_of(p.material, pl, nl, p_w[m], phase=0.37 * k)
            spec_k[m] = p.material.specular
        ndotl = np.clip(normal @ LIGHT_DIR, 0.0, None)
        lit = np.ones(n)
        if shadows:
            cand = np.flatnonzero(hit & (ndotl > 0))
            if cand.size:
                origin = p_w[cand] + SHADOW_OFFSET * normal[cand]
                dirs = np.broadcast_to(LIGHT_DIR, origin.shape)
                blocked = self.cast(origin, np.ascontiguousarray(dirs), shadow=True).prim >= 0
                lit[cand[blocked]] = 0.0
        view = -ops.normalize(d)
        half = ops.normalize(view + LIGHT_DIR)
        spec = highlights * spec_k * np.clip(np.einsum("ij,ij->i", normal, half), 0.0, None) ** SHININESS
        color = (
            albedo * (AMBIENT + (1.0 - AMBIENT) * (ndotl * lit))[:, None]
            + (spec * lit * (ndotl > 0))[:, None]
        )
        color[~hit] = 0.0
        return np.clip(color, 0.0, 1.0)


def albedo_of(
    mat: Material, p_local: np.ndarray, n_local: np.ndarray, p_world: np.ndarray, phase: float
) -> np.ndarray:
    """Procedural albedo [M, 3] of a material at hit points (local = the primitive's unit space)."""
    base = np.asarray(mat.color, float)
    if mat.kind == "flat":
        return base[None] * (1.0 + mat.variation * ops.wobble(p_world, mat.freq, phase))[:, None]
    if mat.kind == "stripes":
        w = (0.5 + 0.5 * np.sin(mat.freq * p_world[:, 2] + 0.3 * ops.wobble(p_world, 40.0, phase))) ** 2
        return ops.mix(base, mat.color2, w)
    if mat.kind == "band":
        w = (np.abs(p_local[:, 2]) < 0.18) & (np.abs(n_local[:, 2]) < 0.5)
        out = ops.mix(base, mat.color2, w.astype(float))
        return out * (1.0 + 0.04 * ops.wobble(p_world, mat.freq, phase))[:, None]
    if mat.kind == "rubik":
        return ops.rubik(p_local, n_local)
    if mat.kind == "room":
        return room_albedo(p_local, n_local, p_world)
    raise ValueError(f"unknown material kind {mat.kind!r}")


def room_albedo(p_local: np.ndarray, n_local: np.ndarray, p_world: np.ndarray) -> np.ndarray:
    """The room seen from inside: a wooden round table on a tiled floor, papered wall, plain ceiling."""
    out = np.empty((len(p_local), 3))
    floor = n_local[:, 2] > 0.5  # the room's normals point inwards
    ceiling = n_local[:, 2] < -0.5
    wall = ~(floor | ceiling)
    r = np.linalg.norm(p_world[:, :2], axis=1)
    table = floor & (r < TABLE_RADIUS)
    tiles = floor & ~table
    out[table] = ops.wood(p_world[table, :2], np.array([0.45, 0.27, 0.13]), np.array([0.74, 0.53, 0.31]), 9.0)
    out[tiles] = ops.checker(
        p_world[tiles, 0], p_world[tiles, 1], np.array([0.62, 0.62, 0.58]), np.array([0.38, 0.38, 0.40]), 2.0
    )
    ang = np.arctan2(p_world[wall, 1], p_world[wall, 0])
    stripes = 0.5 + 0.5 * np.sin(36.0 * ang + 0.5 * np.sin(3.0 * p_world[wall, 2]))
    out[wall] = ops.mix(np.array([0.62, 0.70, 0.66]), np.array([0.82, 0.84, 0.74]), stripes)
    out[ceiling] = 0.9
    return out


def room_primitive() -> Primitive:
    """The room: one capped cylinder seen from inside (floor z = 0 is the table top)."""
    return Primitive(
        shape=ops.SHAPES["room"],
        center=np.array([0.0, 0.0, ROOM_HEIGHT / 2.0]),
        rot=np.eye(3),
        scale=np.array([ROOM_RADIUS, ROOM_RADIUS, ROOM_HEIGHT / 2.0]),
        material=Material((1.0, 1.0, 1.0), kind="room", specular=0.3),
        role=ROLE_ROOM,
    )


def occluder_primitives(n: int, top: float, orbit_radius: float, rng: np.random.Generator) -> list[Primitive]:
    """`n` thin poles (cylinders) and planks (boxes) standing on the table between cameras and objects."""
    out = []
    angles = rng.uniform(0, 2 * np.pi) + 2 * np.pi * (np.arange(n) + rng.uniform(-0.3, 0.3, n)) / max(n, 1)
    for i, a in enumerate(angles):
        r = rng.uniform(OCCLUDER_RADII[0], max(OCCLUDER_RADII[0] + 0.05, OCCLUDER_RADII[1] * orbit_radius))
        center = np.array([r * np.cos(a), r * np.sin(a), top / 2.0])
        if i % 2 == 0:
            mat = Material(
                (0.92, 0.92, 0.90), kind="stripes", color2=(0.25, 0.25, 0.28), freq=14.0, specular=0.5
            )
            out.append(
                Primitive(
                    ops.SHAPES["cylinder"],
                    center,
                    np.eye(3),
                    np.array([0.022, 0.022, top / 2.0]),
                    mat,
                    ROLE_OCCLUDER,
                )
            )
        else:
            mat = Material((0.35, 0.30, 0.40), freq=30.0, variation=0.1, specular=0.3)
            out.append(
                Primitive(
                    ops.SHAPES["box"],
                    center,
                    ops.rot_z(a + rng.uniform(-0.5, 0.5)),
                    np.array([0.012, 0.04, top / 2.0]),
                    mat,
                    ROLE_OCCLUDER,
                )
            )
    return out
