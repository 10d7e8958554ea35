"""How right the track labels are, on a synthetic scene (the figure of issue 3; not a workflow step).

A mask stands for a ground-truth region: the id covering most of it on the layer of its level
(subpart, part or whole), or background (a thing in itself at the whole level, where SAM segments the
table and walls and SAM2 tracks them; nothing below it). A track stands for the region of its seed (the mask that
carries its label on the first frame it appears). On a frame, a mask and a track are the same thing
when their ground-truth regions there overlap with IoU > 0.5, whatever their levels (an apple's fruit
and the whole apple are one thing to a tracker; a mug's handle and the mug are not). A label k is
right when mask and track k are the same thing; -1 is right when the mask is the same thing as no track:
the label a tracker that knew the ground truth would give.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ccl.io.masks_h5 import open_masks
from ccl.io.tracks_h5 import read_tracks
from ccl.synthetic.gt import BACKGROUND, WHOLE_LEVEL, GroundTruth, gt_path, majority_id
from ccl.tracks.ops import iou_matrix

SAME_THING_IOU = 0.5
BACKGROUND_KEY = (WHOLE_LEVEL, BACKGROUND)  # the one background thing a track can follow


@dataclass(frozen=True)
class TrackAccuracy:
    right_fraction: float  # masks of frames 1.. whose label is right
    labelled_precision: float  # of the masks of frames 1.. with a label >= 0, the share that is right
    trackable_recall: (
        float  # of the masks of frames 1.. that are the same thing as some track, the share labelled right
    )
    n_masks: int  # masks of frames 1..
    n_labelled: int
    n_trackable: int
    n_tracks: int


def track_label_accuracy(
    scene, masks_path: str | os.PathLike, tracks_path: str | os.PathLike
) -> TrackAccuracy:
    path = gt_path(scene)
    if not path.is_file():
        raise ValueError(
            f"track_label_accuracy judges labels against a synthetic scene's ground truth, but scene "
            f"{scene.name!r} has no {path}: only synthetic scenes can be scored this way"
        )
    gt = GroundTruth(path, scene.frame_names)
    tracks = read_tracks(tracks_path)
    seeds: dict[int, tuple[int, int]] = {}  # track → (level, id) of its seed
    n = right = labelled = labelled_right = trackable = trackable_right = 0
    try:
        with open_masks(masks_path) as reader:
            for t, cam in enumerate(scene.cameras):
                fm = reader.read(cam.name)
                g = gt.frame(cam.name)
                labels = tracks.frames[cam.name].labels
                keys = [
                    (int(fm.level[i]), majority_id(g.layer(int(fm.level[i])), fm.segmentation == i))
                    for i in range(fm.n_masks)
                ]
                for i, k in enumerate(labels.tolist()):
                    if k >= 0 and k not in seeds:
                        seeds[k] = keys[i]
                if t == 0:
                    continue
                track_ids = sorted(k for k, key in seeds.items() if key[1] >= 0 or key == BACKGROUND_KEY)
                same = _same_thing(g, keys, [seeds[k] for k in track_ids])  # [M, T] bool
                for i, k in enumerate(labels.tolist()):
                    matches = {track_ids[j] for j in np.flatnonzero(same[i])}
                    ok = (k in matches) if k >= 0 else not matches
                    n += 1
                    right += ok
                    labelled += k >= 0
                    labelled_right += k >= 0 and ok
                    trackable += bool(matches)
                    trackable_right += bool(matches) and ok
    finally:
        gt.close()
    return TrackAccuracy(
        right_fraction=right / max(n, 1),
        labelled_precision=labelled_right / max(labelled, 1),
        trackable_recall=trackable_right / max(trackable, 1),
        n_masks=n,
        n_labelled=labelled,
        n_trackable=trackable,
        n_tracks=tracks.n_tracks,
    )


def _same_thing(g, mask_keys, track_keys) -> np.ndarray:
    """[M, T] bool: the ground-truth regions of mask i and track j overlap with IoU > 0.5 on this frame."""
    out = np.zeros((len(mask_keys), len(track_keys)), dtype=bool)
    if not track_keys:
        return out
    track_regions = np.stack([g.region(lv, v) for lv, v in track_keys])  # [T, H, W]
    for i, (lv, v) in enumerate(mask_keys):
        region = g.region(lv, v)
        if not region.any():
            continue
        region = region.astype(np.int32) - 1  # one mask: index 0 where the region is
        out[i] = iou_matrix(region, track_regions, 1)[0] > SAME_THING_IOU
    return out
