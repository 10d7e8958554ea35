"""Tracks (paper 3.3, step 1): a track label per mask, from propagating the first frame's masks.

`track_masks(scene, masks_path, *, cfg, out_path, device, seed)` writes results/{scene}/tracks/{scale}.h5
(docs/contracts.md "Tracks"); backends `sam2` (video predictor) and `sim` (synthetic scenes).
"""

from ccl.io.tracks_h5 import FrameTracks
from ccl.tracks.config import TracksConfig
from ccl.tracks.ops import iou_matrix, match_labels
from ccl.tracks.track import track_masks

__all__ = ["FrameTracks", "TracksConfig", "iou_matrix", "match_labels", "track_masks"]
