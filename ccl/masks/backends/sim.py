"""The `sim` backend: SAM-like masks from a synthetic scene's ground-truth layers (gt.h5).

Each level (subpart / part / whole) starts from the instance masks of the matching ground-truth layer
and is degraded the way SAM fails: masks are missed, cut in two along a random line, merged with a
touching mask of their level, and come as near-duplicate copies with eroded or dilated boundaries
(SAM emits one candidate per grid point on an object). Background regions (table, walls, occluders)
are offered at the whole level, as SAM segments them too. Predicted IoU and stability follow each
candidate's true IoU with the ground-truth mask it came from, plus noise, so the SAM filters and the
mask NMS that run next (the same code as for real SAM candidates) remove mostly the bad ones.

Deterministic per (seed, frame index, level). Every file it produces says `simulated: true`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ccl.config import config_source
from ccl.io.masks_h5 import LEVELS, LevelMasks
from ccl.masks.config import MasksConfig
from ccl.masks.ops import filter_candidates
from ccl.synthetic.gt import GroundTruth, require_gt, require_seed

_SALT = 0x6D61736B  # "mask": this stage's stream of the run's seed


def _rng(seed: int, frame_index: int, level_index: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), _SALT, int(frame_index), int(level_index)])
    )


def _real_scene_fix() -> str:
    """What require_gt tells the user of a scene without ground truth."""
    return (
        "The sim backend runs on synthetic scenes only: for this scene set masks.backend: sam "
        f"and masks.sam_checkpoint in {config_source()}"
    )


def check(cfg: MasksConfig, scene: Any, *, builders: Any = None) -> None:
    """The scene is synthetic: its gt.h5 is what the masks are simulated from."""
    require_gt(scene, "masks", fix=_real_scene_fix())


def build(
    cfg: MasksConfig, *, scene: Any, device: str, seed: int, load_image: Any = None, builders: Any = None
) -> SimBackend:
    """Masks simulated from `scene`'s ground truth (no model: `device`, `load_image` and `builders`
    are not used)."""
    return SimBackend(scene, cfg=cfg, seed=seed)


class SimBackend:
    def __init__(self, scene: Any, *, cfg: MasksConfig, seed: int):
        from ccl.io.hashing import file_sha256

        gt_path = require_gt(scene, "masks", fix=_real_scene_fix())
        self._gt = GroundTruth(gt_path, scene.frame_names)
        self.cfg, self.seed = cfg, require_seed(seed, "masks")
        self.model_info = {
            "backend": "sim",
            "model": "sim_sam",
            "simulated": True,
            "source": str(gt_path.absolute()),
            "source_sha256": file_sha256(gt_path),
        }

    def close(self) -> None:
        self._gt.close()

    def frame_levels(self, index: int, camera: Any) -> tuple[LevelMasks, LevelMasks, LevelMasks]:
        g = self._gt.read_frame(camera.name)
        layers = [_at_size(g.layer(li), camera.height, camera.width) for li in range(len(LEVELS))]
        candidates = simulate_levels(*layers, cfg=self.cfg, seed=self.seed, frame_index=index)
        return tuple(filter_candidates(c, self.cfg) for c in candidates)  # type: ignore[return-value]


def _at_size(ids: np.ndarray, height: int, width: int) -> np.ndarray:
    ids = np.asarray(ids, np.int32)
    if ids.shape == (height, width):
        return ids
    import cv2

    return cv2.resize(ids, (width, height), interpolation=cv2.INTER_NEAREST)


def simulate_levels(
    subpart_id: np.ndarray,
    part_id: np.ndarray,
    whole_id: np.ndarray,
    *,
    cfg: MasksConfig,
    seed: int,
    frame_index: int,
) -> tuple[LevelMasks, LevelMasks, LevelMasks]:
    """Unfiltered SAM-like candidates of one frame per level, from its [H, W] int ground-truth id layers."""
    out = []
    for li, ids in enumerate((subpart_id, part_id, whole_id)):
        rng = _rng(seed, frame_index, li)
        regions = _instances(ids)
        if li == len(LEVELS) - 1 and cfg.sim_background_masks:
            regions += _background_regions(whole_id, min_area=max(1, cfg.min_mask_region_area))
        out.append(_simulate_level(regions, rng=rng, cfg=cfg, shape=ids.shape))
    return tuple(out)  # type: ignore[return-value]


def _instances(ids: np.ndarray) -> list[np.ndarray]:
    return [ids == k for k in np.unique(ids[ids >= 0])]


def _background_regions(whole_id: np.ndarray, *, min_area: int) -> list[np.ndarray]:
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats((whole_id < 0).astype(np.uint8), connectivity=8)
    return [labels == i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area]


def _simulate_level(
    regions: list[np.ndarray], *, rng: np.random.Generator, cfg: MasksConfig, shape: tuple[int, int]
) -> LevelMasks:
    masks, pred_iou, stability = [], [], []
    for k, truth in enumerate(regions):
        if rng.random() < cfg.sim_miss_rate:
            continue
        r = rng.random()
        if r < cfg.sim_split_rate:
            pieces = _split(truth, rng)
        elif r < cfg.sim_split_rate + cfg.sim_merge_rate:
            pieces = [_merge(truth, regions, k, rng)]
        else:
            pieces = [truth]
        for piece in pieces:
            for _ in range(cfg.sim_duplicates):
                d = int(rng.integers(-cfg.sim_erode_px, cfg.sim_erode_px + 1)) if cfg.sim_erode_px else 0
                m = _morph(piece, d)
                if not m.any():
                    continue
                q = _iou(m, truth)
                noise = rng.normal(0.0, cfg.sim_score_noise, size=2)
                masks.append(m)
                # Scores follow quality but do not decide it: a half of a split mask still often passes.
                pred_iou.append(np.clip(0.7 + 0.3 * q + noise[0], 0.0, 1.0))
                stability.append(np.clip(0.8 + 0.2 * q - 0.02 * abs(d) + noise[1], 0.0, 1.0))
    if not masks:
        return LevelMasks.empty(*shape)
    return LevelMasks.from_masks(np.stack(masks), np.asarray(pred_iou), np.asarray(stability))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def _split(mask: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Cut along a random line through a random pixel of the mask; the mask itself if a side is empty."""
    ys, xs = np.nonzero(mask)
    i = int(rng.integers(len(ys)))
    theta = rng.uniform(0.0, np.pi)
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    side = (xx - xs[i]) * np.cos(theta) + (yy - ys[i]) * np.sin(theta) >= 0
    a, b = mask & side, mask & ~side
    return [a, b] if a.any() and b.any() else [mask]


def _merge(mask: np.ndarray, regions: list[np.ndarray], k: int, rng: np.random.Generator) -> np.ndarray:
    """The union with a random region of the level that touches `mask` (itself if none does)."""
    import cv2

    grown = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    touching = [j for j, r in enumerate(regions) if j != k and (r & grown).any()]
    if not touching:
        return mask
    return mask | regions[touching[int(rng.integers(len(touching)))]]


def _morph(mask: np.ndarray, d: int) -> np.ndarray:
    """Dilate (d > 0) or erode (d < 0) by |d| pixels with a 3×3 kernel."""
    if d == 0:
        return mask
    import cv2

    op = cv2.dilate if d > 0 else cv2.erode
    return op(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=abs(d)).astype(bool)
