"""`sim` features with `sim_mode: crop`: a mask's embedding computed from the crop the real backend gives CLIP.

The crop is `ccl.features.ops.masked_crop` of the rendered image, exactly what `open_clip` encodes: the
mask applied (everything outside it black), cut to the mask's box, padded square, resized to
`crop_size`. Its embedding mixes two things, with no random draw anywhere (CLIP is a fixed function of
its input):

- identity: the anchors (`AnchorSpace`, the same as `sim_mode: anchor`) of what the mask's pixels show
  on the ground-truth layer of its level, each weighted by the share of the square crop its visible
  pixels fill (n_e / side², side = the padded square's side in image pixels);
- appearance: a fixed descriptor of the crop, weighted by the rest of the crop (1 − Σ n_e / side² =
  the black padding and masked-out pixels' share). The descriptor is the crop seen at ViT-B-16's patch
  grid (crop_size / 16 cells a side, area-averaged), normalised with CLIP's preprocessing mean and std,
  projected to `sim_dim` by a Gaussian matrix seeded by `sim_anchor_seed` (a random projection keeps
  the cosines of the vectors it maps, so crops that look alike get alike descriptors), L2-normalised.

embedding = normalise(Σ_e (n_e / side²)·anchor_e + (1 − Σ_e n_e / side²)·descriptor(crop)).

So what a crop shows moves its embedding the way it moves CLIP's: an occluder cuts pixels out of the
mask (less identity, a crop that looks different), motion blur smears the crop's colours, a highlight
or another viewpoint changes its appearance and how much of the square the object fills. The run's seed
plays no part. docs/features_sim.md states the principle behind every number here.
"""

from __future__ import annotations

import logging

import numpy as np

from ccl.features.ops import l2_normalize, mask_boxes, masked_crop
from ccl.synthetic.gt import LEVEL_LAYERS

log = logging.getLogger(__name__)

# OpenAI CLIP's preprocessing (open_clip's OPENAI_DATASET_MEAN / _STD, which ViT-B-16 laion2b uses).
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])
PATCH_PX = 16  # ViT-B-16: the image is read as patches of 16 px
PROJECTION_KEY = 0xC809  # the descriptor projection's stream of sim_anchor_seed


def crop_layers_missing(gt_file, frame_name: str) -> list[str]:
    """Ground-truth layers a crop-driven embedding needs that `frame_name` of an open gt.h5 lacks."""
    if frame_name not in gt_file:
        return [f"{frame_name}/*"]
    return [f"{frame_name}/{k}" for k in LEVEL_LAYERS if k not in gt_file[frame_name]]


class CropDescriptor:
    """The fixed appearance descriptor: crop → patch grid → CLIP-normalised → seeded projection."""

    def __init__(self, *, crop_size: int, dim: int, seed: int):
        self.grid = max(1, crop_size // PATCH_PX)
        n_in = self.grid * self.grid * 3
        rng = np.random.default_rng([int(seed), PROJECTION_KEY])
        self.projection = rng.standard_normal((n_in, dim)) / np.sqrt(dim)  # [G·G·3, D]

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """[B, S, S, 3] uint8 crops → [B, D] float64 unit descriptors."""
        import cv2

        cells = np.stack(
            [cv2.resize(c, (self.grid, self.grid), interpolation=cv2.INTER_AREA) for c in crops]
        ).astype(np.float64)
        x = (cells / 255.0 - CLIP_MEAN) / CLIP_STD  # [B, G, G, 3]
        d = x.reshape(len(crops), -1) @ self.projection
        return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


def crop_embeddings(
    image: np.ndarray,
    segmentation: np.ndarray,
    levels: np.ndarray,
    entity_by_level: np.ndarray,
    entity_vectors: np.ndarray,
    descriptor: CropDescriptor,
    crop_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of a frame's masks → ([M, D] float32 unit rows, [M] float64 identity share Σ n_e / side²).

    `image` [H, W, 3] uint8; `segmentation` [H, W] int32 (-1 = no mask); `levels` [M] (0 subpart,
    1 part, 2 whole); `entity_by_level` [3, H, W] int64, the entity row each pixel shows on each level's
    layer; `entity_vectors` [E, D] unit anchors.
    """
    m = len(levels)
    n_ent = len(entity_vectors)
    boxes = mask_boxes(segmentation, m)
    inside = segmentation >= 0
    lab = segmentation[inside].astype(np.int64)
    ys, xs = np.nonzero(inside)
    lev = np.clip(np.asarray(levels, np.int64), 0, len(LEVEL_LAYERS) - 1)[lab]
    ent = entity_by_level[lev, ys, xs]
    counts = np.bincount(lab * n_ent + ent, minlength=m * n_ent).reshape(m, n_ent).astype(np.float64)
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) + 1  # the padded square
    share = counts / np.maximum(side, 1)[:, None].astype(np.float64) ** 2  # [M, E]
    identity = share.sum(axis=1)  # [M] ≤ 1
    crops = np.stack([masked_crop(image, segmentation == i, boxes[i], crop_size) for i in range(m)])
    desc = descriptor(crops)
    out = share @ entity_vectors + (1.0 - identity)[:, None] * desc
    return l2_normalize(out), identity
