"""`sim` features backend: CLIP-like mask embeddings simulated from a synthetic scene's ground truth.

The anchor space (the simulated model's "weights", fixed by `sim_anchor_seed`): a common direction c
and, for every name, anchor(name) = normalise(√a·c + √(1−a)·u_name) with u_name a random unit vector
seeded by the name, so two categories' anchors have cosine ≈ a (`sim_anchor_cosine`, ~0.75: CLIP
embeddings of different objects are alike). A part's anchor has cosine p (`sim_part_cosine`) with its
object's (p·anchor(object) + √(1−p²)·u_part), a subpart's likewise with its part's: a part's embedding
is what CLIP gives for a crop of that part. "background" (table, walls) has its own anchor.

A mask's embedding mixes the anchors of what it covers, weighted by area, on the ground-truth layer of
its level (a subpart mask sees subparts, falling back to the part, the object, then background), then
gets the view's noise of scale σ = sim_noise + sim_occlusion_gain·(occluded fraction of the objects it
covers, area-weighted) + sim_blur_gain·(frame blur in px): it drifts toward one random entity of the
scene by |N(0, σ)| (past 0.5 the crop reads as that entity, the confusion that flips which query wins)
plus isotropic noise of norm σ. That is the cross-view inconsistency the paper's codebook sets out to
fix. Text queries map to their category's anchor plus a small fixed offset (`sim_text_noise`); a query
naming no category gets its own anchor, related to nothing in the scene beyond the common direction.

That is `sim_mode: anchor`. `sim_mode: crop` (backends/sim_crop.py) computes each mask's embedding
from its rendered crop instead, with no per-view noise: the same anchors mixed with a fixed descriptor
of the crop, so occlusion, blur and viewpoint move embeddings through what the crop shows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from ccl.features.config import FeaturesConfig
from ccl.features.ops import l2_normalize, normalize_query
from ccl.synthetic.gt import LEVEL_LAYERS, GroundTruth, require_gt, require_seed

STREAM = 0xFEA7  # RNG stream of the view noise (the seed is the workflow's)


def check(cfg: FeaturesConfig, scene=None) -> None:
    if scene is None:
        return
    if cfg.sim_mode != "crop":
        require_gt(scene, "features")
        return
    fix = (
        "features.sim_mode = 'crop' embeds each mask's crop of the scene's rendered images with its "
        "ground-truth layers: use it on a synthetic scene (source: synthetic) as rule synthetic_scene "
        "builds it, or set features.sim_mode: anchor"
    )
    path = require_gt(scene, "features", fix=fix)
    from ccl.features.backends.sim_crop import crop_layers_missing
    from ccl.io import open_h5_for_read

    with open_h5_for_read(path, kind="gt", format_versions=(1,)) as f:
        missing = [k for name in scene.frame_names for k in crop_layers_missing(f, name)]
    missing += [str(cam.image_path) for cam in scene.cameras if not cam.image_path.is_file()]
    if missing:
        raise ValueError(
            f"{path}: scene {scene.name!r} lacks rendered layers that features.sim_mode = 'crop' needs: "
            f"{missing[:4]}{' …' if len(missing) > 4 else ''} ({len(missing)} missing). Rebuild the "
            "synthetic scene (delete its folder and rerun rule synthetic_scene), or set features.sim_mode: anchor"
        )


class AnchorSpace:
    """Deterministic anchors by name: the same config gives the same vectors in every process."""

    def __init__(self, cfg: FeaturesConfig):
        self.cfg = cfg
        self.dim = cfg.sim_dim
        self.common = self._unit("common")
        self._cache: dict[tuple, np.ndarray] = {}

    def _unit(self, *key: str) -> np.ndarray:
        digest = hashlib.sha256(json.dumps(key).encode()).digest()
        words = np.frombuffer(digest[:16], dtype=np.uint32).tolist()
        v = np.random.default_rng([self.cfg.sim_anchor_seed, *words]).standard_normal(self.dim)
        return v / np.linalg.norm(v)

    @staticmethod
    def _shared(base: np.ndarray, own: np.ndarray, cos: float) -> np.ndarray:
        """Two vectors made this way from one `base` have cosine ≈ `cos` with each other."""
        v = np.sqrt(cos) * base + np.sqrt(1.0 - cos) * own
        return v / np.linalg.norm(v)

    @staticmethod
    def _near(base: np.ndarray, own: np.ndarray, cos: float) -> np.ndarray:
        """A vector with cosine ≈ `cos` to `base` (a unit vector)."""
        v = cos * base + np.sqrt(1.0 - cos**2) * own
        return v / np.linalg.norm(v)

    def _get(self, key: tuple, make) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def category(self, name: str) -> np.ndarray:
        name = normalize_query(name)
        return self._get(
            ("category", name),
            lambda: self._shared(self.common, self._unit("category", name), self.cfg.sim_anchor_cosine),
        )

    def background(self) -> np.ndarray:
        return self._get(
            ("background",),
            lambda: self._shared(self.common, self._unit("background"), self.cfg.sim_anchor_cosine),
        )

    def part(self, category: str, part: str) -> np.ndarray:
        c, p = normalize_query(category), normalize_query(part)
        return self._get(
            ("part", c, p),
            lambda: self._near(self.category(c), self._unit("part", c, p), self.cfg.sim_part_cosine),
        )

    def subpart(self, category: str, part: str, subpart: str) -> np.ndarray:
        c, p, s = normalize_query(category), normalize_query(part), normalize_query(subpart)
        return self._get(
            ("subpart", c, p, s),
            lambda: self._near(self.part(c, p), self._unit("subpart", c, p, s), self.cfg.sim_part_cosine),
        )

    def text(self, query: str) -> np.ndarray:
        q = normalize_query(query)
        v = self.category(q) + self.cfg.sim_text_noise * self._unit("text", q)
        return v / np.linalg.norm(v)


class _Entities:
    """The scene's anchor table: row 0 background, then every object, part and subpart."""

    def __init__(self, gt: GroundTruth, anchors: AnchorSpace):
        vecs = [anchors.background()]
        obj_of = [-1]
        luts: dict[str, dict[int, int]] = {"whole_id": {}, "part_id": {}, "subpart_id": {}}
        for obj in gt.objects:
            cat = gt.categories[int(obj["category_id"])]
            luts["whole_id"][int(obj["id"])] = len(vecs)
            vecs.append(anchors.category(cat))
            obj_of.append(int(obj["id"]))
            for part in obj.get("parts", []):
                pid = int(part["id"])
                luts["part_id"][pid] = len(vecs)
                vecs.append(anchors.part(cat, part["name"]))
                obj_of.append(int(obj["id"]))
                for sub in part.get("subparts", []):
                    sid = int(sub["id"])
                    if sid == pid:  # an undivided part: its subpart is the part itself
                        luts["subpart_id"][sid] = luts["part_id"][pid]
                        continue
                    luts["subpart_id"][sid] = len(vecs)
                    vecs.append(anchors.subpart(cat, part["name"], sub["name"]))
                    obj_of.append(int(obj["id"]))
        self.vectors = np.stack(vecs).astype(np.float64)  # [E, D]
        self.object_of = np.asarray(obj_of, dtype=np.int64)  # [E], -1 background
        self._luts = {k: _dense_lut(v) for k, v in luts.items()}

    def per_pixel(self, layer_name: str, ids: np.ndarray, fallback: np.ndarray) -> np.ndarray:
        """Entity row of every pixel of a layer; ids absent from the hierarchy (or -1) take `fallback`."""
        lut = self._luts[layer_name]
        ent = np.full(ids.shape, -1, dtype=np.int64)
        ok = (ids >= 0) & (ids < len(lut))
        ent[ok] = lut[ids[ok]]
        return np.where(ent >= 0, ent, fallback)


def _dense_lut(mapping: dict[int, int]) -> np.ndarray:
    lut = np.full(max(mapping, default=-1) + 1, -1, dtype=np.int64)
    for k, v in mapping.items():
        lut[k] = v
    return lut


class SimEncoder:
    def __init__(self, cfg: FeaturesConfig, *, scene=None, seed: int = 0, load_image=None):
        self.cfg, self.scene = cfg, scene
        self.seed = require_seed(seed, "features")
        self.dim = cfg.sim_dim
        self.anchors = AnchorSpace(cfg)
        self.load_image = load_image
        self.gt = None
        self.descriptor = None
        if scene is not None:
            self.gt = GroundTruth(require_gt(scene, "features"), scene.frame_names)
            self.entities = _Entities(self.gt, self.anchors)
            if cfg.sim_mode == "crop":
                from ccl.features.backends.sim_crop import CropDescriptor

                self.descriptor = CropDescriptor(
                    crop_size=cfg.crop_size, dim=cfg.sim_dim, seed=cfg.sim_anchor_seed
                )

    def model_info(self) -> dict[str, Any]:
        return {
            "backend": "sim",
            "simulated": True,
            "dim": self.dim,
            "ground_truth": None if self.gt is None else str(self.gt.path),
            "anchor_seed": self.cfg.sim_anchor_seed,
            "sim_mode": self.cfg.sim_mode,
        }

    def encode_frame(self, frame_index: int, camera, masks) -> np.ndarray:
        assert self.gt is not None, "a text-only sim encoder cannot embed masks"
        m = masks.n_masks
        if m == 0:
            return np.zeros((0, self.dim), np.float32)
        gt = self.gt.frame(camera.name)
        seg = masks.segmentation
        ent_whole = self.entities.per_pixel(
            "whole_id", gt.whole_id, np.zeros_like(gt.whole_id, dtype=np.int64)
        )
        ent_part = self.entities.per_pixel("part_id", gt.part_id, ent_whole)
        ent_sub = self.entities.per_pixel("subpart_id", gt.subpart_id, ent_part)
        by_level = np.stack([ent_sub, ent_part, ent_whole])  # [3, H, W], index = mask level
        if self.descriptor is not None:
            from ccl.features.backends.sim_crop import crop_embeddings

            image = self._image(camera)
            feats, _ = crop_embeddings(
                image, seg, masks.level, by_level, self.entities.vectors, self.descriptor, self.cfg.crop_size
            )
            return feats
        inside = seg >= 0
        lev = np.clip(masks.level.astype(np.int64), 0, len(LEVEL_LAYERS) - 1)[seg[inside]]
        ys, xs = np.nonzero(inside)
        ent = by_level[lev, ys, xs]
        n_ent = len(self.entities.vectors)
        counts = np.bincount(seg[inside].astype(np.int64) * n_ent + ent, minlength=m * n_ent)
        weights = counts.reshape(m, n_ent).astype(np.float64)
        weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1.0)
        mixed = weights @ self.entities.vectors  # [M, D]
        occ_of_entity = np.zeros(n_ent)
        objs = self.entities.object_of
        has = (objs >= 0) & (objs < len(gt.occluded_fraction))
        occ_of_entity[has] = gt.occluded_fraction[objs[has]]
        sigma = self.cfg.sim_noise + self.cfg.sim_occlusion_gain * (weights @ occ_of_entity)
        sigma = sigma + self.cfg.sim_blur_gain * gt.blur
        rng = np.random.default_rng([self.seed, STREAM, int(frame_index)])
        # The view's confusion: each crop drifts toward one random entity of the scene by a half-normal
        # amount of scale sigma (past 0.5 it looks more like that entity than like itself), plus
        # isotropic noise of norm sigma.
        drift = np.minimum(np.abs(rng.standard_normal(m)) * sigma, 1.0)
        distractor = self.entities.vectors[rng.integers(0, n_ent, size=m)]
        isotropic = l2_normalize(rng.standard_normal((m, self.dim))).astype(np.float64)
        out = (1.0 - drift)[:, None] * mixed + drift[:, None] * distractor + sigma[:, None] * isotropic
        return l2_normalize(out)

    def _image(self, camera) -> np.ndarray:
        """The rendered frame [H, W, 3] uint8, read as the open_clip backend reads it."""
        if self.load_image is not None:
            return self.load_image(camera)
        from ccl.scene import SceneLoadConfig, load_image

        return load_image(camera, cfg=SceneLoadConfig())

    def encode_text(self, queries: Sequence[str]) -> np.ndarray:
        if len(queries) == 0:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalize(np.stack([self.anchors.text(q) for q in queries]))

    def close(self) -> None:
        if self.gt is not None:
            self.gt.close()


def build(cfg: FeaturesConfig, *, scene=None, device: str = "cpu", seed: int = 0, load_image=None):
    return SimEncoder(cfg, scene=scene, seed=seed, load_image=load_image)
