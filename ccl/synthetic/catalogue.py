"""The objects of the synthetic scene, each a distinct category named like LERF-OVS queries.

Every object is built in its own frame (standing on z = 0, around the z axis, ~0.1-0.3 units tall),
from spheres/ellipsoids, boxes and capped cylinders, grouped into parts and subparts; `place_objects`
puts the first n of them on the table in slots, with a seeded shuffle, yaw and jitter.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ccl.synthetic.geometry import Material, ObjectSpec, PartSpec, PlacedObject, SubpartSpec, prim
from ccl.synthetic.ops import rot_x, rot_y, rot_z


def _one(name: str, prims) -> PartSpec:
    """A part without subdivision (its single subpart shares its name and id)."""
    return PartSpec(name, [SubpartSpec(name, list(prims))])


def red_mug() -> ObjectSpec:
    red = Material((0.78, 0.08, 0.07), kind="band", color2=(0.95, 0.93, 0.88), freq=18.0, specular=1.5)
    coffee = Material((0.23, 0.12, 0.05), variation=0.04, specular=2.0)
    handle_mat = Material((0.72, 0.07, 0.06), specular=1.5)
    body = prim("cylinder", (0, 0, 0.09), (0.075, 0.075, 0.09), red)
    top = prim("cylinder", (0, 0, 0.1805), (0.064, 0.064, 0.0015), coffee)
    handle = []
    for a in np.linspace(-np.pi / 2, np.pi / 2, 11):
        handle.append(
            prim("sphere", (0.075 + 0.045 * np.cos(a), 0, 0.095 + 0.05 * np.sin(a)), 0.015, handle_mat)
        )
    parts = [
        PartSpec("body", [SubpartSpec("cup wall", [body]), SubpartSpec("coffee", [top])]),
        _one("handle", handle),
    ]
    return ObjectSpec("red mug", parts)


def teddy_bear() -> ObjectSpec:
    fur = Material((0.55, 0.34, 0.17), freq=90.0, variation=0.14, specular=0.2)
    tan = Material((0.85, 0.68, 0.45), freq=60.0, variation=0.08, specular=0.2)
    dark = Material((0.30, 0.17, 0.08), freq=90.0, variation=0.1, specular=0.2)
    head = [
        SubpartSpec("face", [prim("sphere", (0, 0, 0.215), 0.06, fur)]),
        SubpartSpec(
            "ears",
            [
                prim("sphere", (0.0, -0.047, 0.265), 0.022, dark),
                prim("sphere", (0.0, 0.047, 0.265), 0.022, dark),
            ],
        ),
        SubpartSpec("snout", [prim("sphere", (0.055, 0, 0.205), (0.022, 0.026, 0.02), tan)]),
    ]
    body = [
        SubpartSpec("torso", [prim("sphere", (0, 0, 0.095), (0.065, 0.075, 0.09), fur)]),
        SubpartSpec(
            "arms",
            [
                prim("sphere", (0.015, -0.075, 0.12), (0.025, 0.025, 0.045), dark),
                prim("sphere", (0.015, 0.075, 0.12), (0.025, 0.025, 0.045), dark),
            ],
        ),
        SubpartSpec(
            "legs",
            [
                prim("sphere", (0.045, -0.042, 0.03), (0.045, 0.03, 0.03), dark),
                prim("sphere", (0.045, 0.042, 0.03), (0.045, 0.03, 0.03), dark),
            ],
        ),
    ]
    return ObjectSpec("teddy bear", [PartSpec("head", head), PartSpec("body", body)])


def green_apple() -> ObjectSpec:
    skin = Material((0.50, 0.78, 0.18), freq=70.0, variation=0.12, specular=1.8)
    stalk = Material((0.35, 0.22, 0.10), specular=0.1)
    leaf = Material((0.15, 0.45, 0.10), variation=0.05, specular=0.5)
    fruit = prim("sphere", (0, 0, 0.065), 0.065, skin)
    stem = [
        SubpartSpec("stalk", [prim("cylinder", (0, 0, 0.137), (0.006, 0.006, 0.014), stalk)]),
        SubpartSpec(
            "leaf", [prim("sphere", (0.024, 0, 0.142), (0.026, 0.011, 0.004), leaf, rot=rot_y(-0.3))]
        ),
    ]
    return ObjectSpec("green apple", [_one("fruit", [fruit]), PartSpec("stem", stem)])


def blue_book() -> ObjectSpec:
    cover = Material((0.12, 0.22, 0.70), freq=40.0, variation=0.06, specular=0.8)
    paper = Material((0.93, 0.91, 0.84), kind="stripes", color2=(0.80, 0.78, 0.72), freq=320.0, specular=0.2)
    covers = [
        SubpartSpec("back cover", [prim("box", (0, 0, 0.004), (0.11, 0.08, 0.004), cover)]),
        SubpartSpec("front cover", [prim("box", (0, 0, 0.048), (0.11, 0.08, 0.004), cover)]),
        SubpartSpec("spine", [prim("box", (-0.107, 0, 0.026), (0.004, 0.08, 0.026), cover)]),
    ]
    pages = prim("box", (0.002, 0, 0.026), (0.104, 0.076, 0.018), paper)
    return ObjectSpec("blue book", [PartSpec("cover", covers), _one("pages", [pages])])


def yellow_rubber_duck() -> ObjectSpec:
    yellow = Material((0.97, 0.83, 0.10), freq=30.0, variation=0.05, specular=1.8)
    orange = Material((0.95, 0.45, 0.05), specular=1.5)
    black = Material((0.03, 0.03, 0.03), specular=2.0)
    body = prim("sphere", (-0.01, 0, 0.05), (0.08, 0.06, 0.05), yellow)
    tail = prim("sphere", (-0.08, 0, 0.075), (0.02, 0.025, 0.02), yellow)
    head = [
        SubpartSpec("head", [prim("sphere", (0.04, 0, 0.125), 0.042, yellow)]),
        SubpartSpec("beak", [prim("sphere", (0.085, 0, 0.118), (0.026, 0.02, 0.008), orange)]),
        SubpartSpec(
            "eyes",
            [
                prim("sphere", (0.07, -0.022, 0.142), 0.008, black),
                prim("sphere", (0.07, 0.022, 0.142), 0.008, black),
            ],
        ),
    ]
    return ObjectSpec("yellow rubber duck", [_one("body", [body, tail]), PartSpec("head", head)])


def toy_elephant() -> ObjectSpec:
    grey = Material((0.56, 0.57, 0.62), freq=50.0, variation=0.08, specular=0.6)
    pink = Material((0.80, 0.60, 0.62), freq=50.0, variation=0.05, specular=0.4)
    legs = [
        prim("cylinder", (x, y, 0.032), (0.019, 0.019, 0.032), grey)
        for x in (-0.05, 0.05)
        for y in (-0.032, 0.032)
    ]
    body = [
        SubpartSpec("torso", [prim("sphere", (0, 0, 0.105), (0.085, 0.06, 0.055), grey)]),
        SubpartSpec("legs", legs),
    ]
    head = [
        SubpartSpec("head", [prim("sphere", (0.095, 0, 0.145), 0.045, grey)]),
        SubpartSpec(
            "ears",
            [
                prim("sphere", (0.08, -0.048, 0.15), (0.01, 0.038, 0.035), pink, rot=rot_x(0.4)),
                prim("sphere", (0.08, 0.048, 0.15), (0.01, 0.038, 0.035), pink, rot=rot_x(-0.4)),
            ],
        ),
        SubpartSpec(
            "trunk", [prim("cylinder", (0.145, 0, 0.1), (0.012, 0.012, 0.045), grey, rot=rot_y(0.35))]
        ),
    ]
    return ObjectSpec("toy elephant", [PartSpec("body", body), PartSpec("head", head)])


def tea_in_a_glass() -> ObjectSpec:
    glass = Material((0.80, 0.87, 0.92), freq=20.0, variation=0.04, specular=3.0)
    tea = Material((0.66, 0.34, 0.07), kind="stripes", color2=(0.55, 0.26, 0.04), freq=60.0, specular=2.5)
    return ObjectSpec(
        "tea in a glass",
        [
            _one("glass", [prim("cylinder", (0, 0, 0.075), (0.048, 0.048, 0.075), glass)]),
            _one("tea", [prim("cylinder", (0, 0, 0.052), (0.0505, 0.0505, 0.047), tea)]),
        ],
    )


def rubics_cube() -> ObjectSpec:
    stickers = Material((1.0, 1.0, 1.0), kind="rubik", specular=1.0)
    return ObjectSpec("rubics cube", [_one("cube", [prim("box", (0, 0, 0.045), 0.045, stickers)])])


# Catalogue order: the first `n_objects` are used (the most distinctive first).
CATALOGUE = (
    green_apple,
    red_mug,
    teddy_bear,
    blue_book,
    yellow_rubber_duck,
    toy_elephant,
    tea_in_a_glass,
    rubics_cube,
)

OBJECT_SIZE = 1.25  # every catalogue object is scaled by this on the table
PLACE_RADIUS = 0.45  # object centres lie within this distance of the table centre
PLACE_GAP = 0.02  # least clearance between two objects' footprints


def place_objects(n_objects: int, rng: np.random.Generator) -> list[PlacedObject]:
    """The first `n_objects` of the catalogue on the table, with global ids (objects 0..n-1 first).

    Positions are drawn at random in a disc (largest footprint first) and redrawn until no two
    footprints come closer than PLACE_GAP; each object also gets a random yaw.
    """
    specs = [make() for make in CATALOGUE[:n_objects]]
    yaws = rng.uniform(0, 2 * np.pi, n_objects)
    rots = [rot_z(y) for y in yaws]
    radii = OBJECT_SIZE * np.array([spec.footprint(r) for spec, r in zip(specs, rots, strict=True)])
    positions = _scatter(radii, rng)
    next_id = n_objects
    placed = []
    for i, spec in enumerate(specs):
        position = np.array([positions[i, 0], positions[i, 1], 0.0])
        parts, prims = [], []
        for part in spec.parts:
            part_id = next_id
            next_id += 1
            undivided = len(part.subparts) == 1 and part.subparts[0].name == part.name
            subs = []
            for sub in part.subparts:
                if undivided:
                    sub_id = part_id
                else:
                    sub_id = next_id
                    next_id += 1
                subs.append((sub_id, sub.name))
                for p in sub.prims:
                    prims.append(
                        replace(
                            p.placed(rots[i], position, OBJECT_SIZE),
                            object_index=i,
                            part_id=part_id,
                            subpart_id=sub_id,
                        )
                    )
            parts.append((part_id, part.name, subs))
        placed.append(
            PlacedObject(
                index=i,
                category=spec.category,
                category_id=i,
                position=position,
                yaw=float(yaws[i]),
                parts=parts,
                prims=prims,
            )
        )
    return placed


def _scatter(
    radii: np.ndarray, rng: np.random.Generator, *, tries: int = 400, restarts: int = 200
) -> np.ndarray:
    """[n, 2] centres in the placement disc whose discs of `radii` (+ gap) do not overlap."""
    order = np.argsort(-radii, kind="stable")
    for _ in range(restarts):
        pos = np.zeros((len(radii), 2))
        done: list[int] = []
        for i in order:
            for _ in range(tries):
                r = PLACE_RADIUS * np.sqrt(rng.uniform())
                a = rng.uniform(0, 2 * np.pi)
                p = np.array([r * np.cos(a), r * np.sin(a)])
                if all(np.linalg.norm(p - pos[j]) >= radii[i] + radii[j] + PLACE_GAP for j in done):
                    pos[i] = p
                    done.append(i)
                    break
            else:
                break
        if len(done) == len(radii):
            return pos
    raise RuntimeError(
        f"cannot place {len(radii)} objects of footprints {radii} in a disc of radius {PLACE_RADIUS}"
    )
