"""`sim` tracks backend: propagation simulated from a synthetic scene's ground truth.

A seed mask's identity is the ground-truth id that covers most of it, on the layer of its level
(subpart, part or whole); a whole-level mask of the background (table, walls: SAM segments them at that
level) follows the background, as SAM2 follows any region it is given. Its propagated mask on a later
frame is that identity's visible region, with the
two failures of video propagation: drift (the track is lost for good from a random frame on: the
probability of having lost it grows with the frame distance, 1 - (1 - sim_drift_rate)^d) and identity
errors (with probability sim_swap_rate per frame the track jumps to the nearest other id of its layer,
and follows that one from then on). Matching the frame's masks to these regions by IoU is then the same
code as for SAM2, so split, merged and eroded masks fail to match as they would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ccl.synthetic.gt import GroundTruth, majority_id, require_gt, require_seed
from ccl.tracks.backends import Seed
from ccl.tracks.config import TracksConfig

STREAM = 0x7A11  # RNG stream of this backend (the seed is the workflow's)
LOST = -2  # identity of a track after drift lost it


def check(cfg: TracksConfig, scene) -> None:
    require_gt(scene, "tracks")


def build(cfg: TracksConfig, *, scene, device: str, seed: int, load_image=None) -> SimPropagator:
    return SimPropagator(cfg, scene=scene, seed=seed)


class SimPropagator:
    def __init__(self, cfg: TracksConfig, *, scene, seed: int):
        self.cfg, self.scene, self.seed = cfg, scene, require_seed(seed, "tracks")
        self.gt = GroundTruth(require_gt(scene, "tracks"), scene.frame_names)
        self._paths: dict[int, dict[int, int]] = {}  # track → {frame: identity (BACKGROUND = -1)}
        self._lost_at: dict[int, int] = {}

    def model_info(self) -> dict[str, Any]:
        return {
            "backend": "sim",
            "simulated": True,
            "ground_truth": str(self.gt.path),
            "drift_rate": self.cfg.sim_drift_rate,
            "swap_rate": self.cfg.sim_swap_rate,
        }

    def close(self) -> None:
        self.gt.close()

    def propagate(self, seeds: Sequence[Seed], start_frame: int) -> Iterator[tuple[int, np.ndarray]]:
        cams = self.scene.cameras
        for s in seeds:
            if s.track_id not in self._paths:
                self._start_track(s)
        for t in range(start_frame, len(cams)):
            gt = self.gt.frame(cams[t].name)
            h, w = gt.whole_id.shape
            out = np.zeros((len(seeds), h, w), dtype=bool)
            for j, s in enumerate(seeds):
                if t < s.frame_index:
                    continue
                if t == s.frame_index:
                    out[j] = s.mask  # the conditioning frame gives back its input mask
                    continue
                ident = self._identity(s, t)
                if ident != LOST:
                    out[j] = gt.region(s.level, ident)
            yield t, out

    def _start_track(self, s: Seed) -> None:
        gt = self.gt.frame(self.scene.cameras[s.frame_index].name)
        self._paths[s.track_id] = {s.frame_index: majority_id(gt.layer(s.level), s.mask)}
        rng = np.random.default_rng([self.seed, STREAM, s.track_id, 0])
        p = self.cfg.sim_drift_rate
        self._lost_at[s.track_id] = s.frame_index + int(rng.geometric(p)) if p > 0 else 1 << 62

    def _identity(self, s: Seed, t: int) -> int:
        """The id track `s` follows on frame t (BACKGROUND: the background; LOST: nothing any more)."""
        path = self._paths[s.track_id]
        if t >= self._lost_at[s.track_id]:
            return LOST
        last = max(f for f in path if f <= t)
        for f in range(last + 1, t + 1):  # frames are visited in order; this fills any gap
            ident = path[f - 1]
            rng = np.random.default_rng([self.seed, STREAM, s.track_id, f])
            if ident >= 0 and rng.random() < self.cfg.sim_swap_rate:
                ident = _nearest_other(self.gt.frame(self.scene.cameras[f].name).layer(s.level), ident, ident)
            path[f] = ident
        return path[t]


def _nearest_other(layer: np.ndarray, ident: int, default: int) -> int:
    """The id of `layer` whose centroid is nearest to `ident`'s (its neighbour), `default` if none."""
    ids = layer.reshape(-1)
    present = np.unique(ids[ids >= 0])
    if ident not in present or present.size < 2:
        return default
    ys, xs = np.indices(layer.shape).reshape(2, -1)
    inside = ids >= 0
    slot = np.searchsorted(present, ids[inside])
    n = np.bincount(slot, minlength=present.size).astype(np.float64)
    cy = np.bincount(slot, weights=ys[inside], minlength=present.size) / n
    cx = np.bincount(slot, weights=xs[inside], minlength=present.size) / n
    k = int(np.searchsorted(present, ident))
    d = (cy - cy[k]) ** 2 + (cx - cx[k]) ** 2
    d[k] = np.inf
    return int(present[int(d.argmin())])
