"""Scene description types: materials, primitives, and the labelled hierarchy of objects."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ccl.synthetic.ops import SHAPES

# What a primitive belongs to (its `role`): an object's subpart, an occluder, or the room (table, wall).
ROLE_OBJECT, ROLE_OCCLUDER, ROLE_ROOM = 0, 1, 2


@dataclass(frozen=True)
class Material:
    """Procedural albedo and specularity of a primitive.

    kind: "flat" (colour with smooth variation), "stripes" (colour2 bands along local z), "band" (one
    colour2 band round local z = 0), "rubik" (stickers), "room" (wooden table, tiled floor, papered wall).
    """

    color: tuple[float, float, float]
    kind: str = "flat"
    color2: tuple[float, float, float] = (0.0, 0.0, 0.0)
    freq: float = 25.0  # spatial frequency of the variation, 1/scene units
    variation: float = 0.08  # relative brightness variation of "flat"
    specular: float = 1.0  # multiplies config `highlights`


@dataclass(frozen=True)
class Primitive:
    shape: int  # ops.SHAPES value
    center: np.ndarray  # [3] float64, world
    rot: np.ndarray  # [3, 3] float64, local -> world
    scale: np.ndarray  # [3] float64, half extents (radii) along the local axes
    material: Material
    role: int = ROLE_OBJECT
    object_index: int = -1  # index into the scene's objects, -1 for occluders and the room
    part_id: int = -1
    subpart_id: int = -1

    def placed(self, rot: np.ndarray, offset: np.ndarray, size: float = 1.0) -> Primitive:
        """The same primitive after the similarity x -> rot @ (size · x) + offset."""
        return Primitive(
            shape=self.shape,
            center=rot @ (size * self.center) + offset,
            rot=rot @ self.rot,
            scale=size * self.scale,
            material=self.material,
            role=self.role,
            object_index=self.object_index,
            part_id=self.part_id,
            subpart_id=self.subpart_id,
        )

    def bounding_radius(self) -> float:
        """Radius of a sphere about `center` containing the primitive."""
        s = np.asarray(self.scale, float)
        return float(s.max()) if self.shape == SHAPES["sphere"] else float(np.linalg.norm(s))


def prim(shape: str, center, scale, material: Material, rot: np.ndarray | None = None) -> Primitive:
    """A primitive in an object's own frame (the object stands on z = 0 around the z axis)."""
    scale = np.broadcast_to(np.asarray(scale, float), (3,)).copy()
    return Primitive(
        shape=SHAPES[shape],
        center=np.asarray(center, float),
        rot=np.eye(3) if rot is None else np.asarray(rot, float),
        scale=scale,
        material=material,
    )


@dataclass
class SubpartSpec:
    name: str
    prims: list[Primitive]


@dataclass
class PartSpec:
    name: str
    subparts: list[SubpartSpec]  # a part without subdivision has one subpart named like the part


@dataclass
class ObjectSpec:
    """One object of the catalogue in its own frame; `category` is its text query."""

    category: str
    parts: list[PartSpec]

    def footprint(self, rot: np.ndarray) -> float:
        """Radius about the z axis of the object's extent on the table once turned by `rot` [3, 3].

        Each primitive's support in 16 horizontal directions: exact for boxes and cylinders' bounding
        boxes, for ellipsoids their own support.
        """
        angles = np.arange(16) * np.pi / 8
        dirs = np.stack([np.cos(angles), np.sin(angles), np.zeros(16)], axis=1)  # [16, 3]
        reach = 0.0
        for part in self.parts:
            for sub in part.subparts:
                for p in sub.prims:
                    axes = (rot @ p.rot) * p.scale  # columns: local axes scaled to half extents
                    proj = dirs @ axes  # [16, 3]
                    if p.shape == SHAPES["sphere"]:
                        ext = np.sqrt((proj**2).sum(axis=1))
                    else:
                        ext = np.abs(proj).sum(axis=1)
                    reach = max(reach, float((dirs @ (rot @ p.center) + ext).max()))
        return reach


@dataclass
class PlacedObject:
    """An object on the table with its global ids (ids are unique over all levels)."""

    index: int  # = its whole id, and its row in occluded_fraction
    category: str
    category_id: int
    position: np.ndarray  # [3] float64
    yaw: float
    parts: list[tuple[int, str, list[tuple[int, str]]]]  # (part id, name, [(subpart id, name)])
    prims: list[Primitive] = field(default_factory=list)

    def bounds(self) -> tuple[np.ndarray, float]:
        """A bounding sphere (center [3], radius) of all its primitives."""
        centers = np.stack([p.center for p in self.prims])
        c = 0.5 * (centers.min(axis=0) + centers.max(axis=0))
        r = max(float(np.linalg.norm(p.center - c)) + p.bounding_radius() for p in self.prims)
        return c, r

    def hierarchy(self) -> dict:
        """The contract's JSON form: {id, name, category_id, parts: [{id, name, subparts: [{id, name}]}]}."""
        return {
            "id": self.index,
            "name": self.category,
            "category_id": self.category_id,
            "parts": [
                {"id": pid, "name": pname, "subparts": [{"id": sid, "name": sname} for sid, sname in subs]}
                for pid, pname, subs in self.parts
            ],
        }
