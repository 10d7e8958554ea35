"""Spatial cleaning of a 3D selection (`ccl query3d --clean components`): the selection is split into
connected pieces and a piece is kept only when the query is read on it as strongly as on the selection's
main body, at every scale of the field.

Why (bench/selection_quality.py on the synthetic scene; README, `ccl query3d`): a codebook can draw two
objects with one prototype at one scale (at `wp` the Rubik's cube is drawn as "tea in a glass"), so a
query read at that scale selects both; smaller wrong clusters (a few Gaussians of the apple in "red mug", of
the cube in "teddy bear") sit as far from the object. Each such piece is disjoint in space from the
object and is read as something else at the other scale (relevance 0.19-0.27 where the object's body
reads 0.57-0.65), so pieces are compared by their relevance averaged over the scales.

Plain numpy on the host (the means and relevances arrive here as numpy arrays).
"""

from __future__ import annotations

import numpy as np

# a link: two selected Gaussians whose voxels (edge CLEAN_LINK × the field's median largest radius)
# touch, faces, edges or corners (26-neighbourhood)
CLEAN_LINK = 1.5
# a piece is kept when its mean support is at least this share of the main body's (the piece that
# holds the most support): on the synthetic scene the wrong pieces are at <= 0.68, the object's at 1
CLEAN_KEEP = 0.8
_NEIGHBOURS = np.array(
    [(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if (i, j, k) > (0, 0, 0)],
    dtype=np.int64,
)  # 13 offsets: each touching pair of voxels is found once


def link_voxel(log_scales: np.ndarray) -> float:
    """The voxel edge the cleaning links a field's Gaussians at: CLEAN_LINK × the median of each Gaussian's
    largest radius (`log_scales` [G, 3], the field's log radii)."""
    return CLEAN_LINK * float(np.median(np.exp(np.asarray(log_scales).max(axis=1))))


def voxel_components(xyz: np.ndarray, voxel: float) -> np.ndarray:
    """[P] int64: a label per point of `xyz` [P, 3], equal for points linked by a chain of touching
    voxels of edge `voxel` (26-neighbourhood); labels are 0..C-1."""
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    if not voxel > 0:
        raise ValueError(f"voxel: expected > 0, got {voxel}")
    if len(xyz) == 0:
        return np.zeros(0, np.int64)
    cell = np.floor((xyz - xyz.min(axis=0)) / voxel).astype(np.int64)
    for d in range(3):  # gaps of empty voxels shrunk to one along each axis: the same voxels touch
        u, inv = np.unique(cell[:, d], return_inverse=True)
        cell[:, d] = np.r_[0, np.cumsum(np.minimum(np.diff(u), 2))][inv.reshape(-1)]
    span = cell.max(axis=0) + 3  # room for the -1/+1 neighbours without wrapping
    if float(np.prod(span.astype(np.float64))) >= 2.0**62:
        raise ValueError(f"voxel {voxel}: {span.tolist()} voxels a side, too many to number in int64")
    # one int64 key per voxel, the neighbour at offset (a, b, c) at key + (a·span1 + b)·span2 + c
    keys, of_point = np.unique(
        ((cell[:, 0] + 1) * span[1] + (cell[:, 1] + 1)) * span[2] + (cell[:, 2] + 1), return_inverse=True
    )  # sorted
    of_point = of_point.reshape(-1)
    src, dst = [], []
    for a, b, c in _NEIGHBOURS:
        k = keys + (a * span[1] + b) * span[2] + c
        at = np.minimum(np.searchsorted(keys, k), len(keys) - 1)
        hit = keys[at] == k
        src.append(np.nonzero(hit)[0])
        dst.append(at[hit])
    i, j = np.concatenate(src), np.concatenate(dst)
    label = np.arange(len(keys))
    while True:  # min-label propagation over the links, with pointer jumping
        m = np.minimum(label[i], label[j])
        new = label.copy()
        np.minimum.at(new, i, m)
        np.minimum.at(new, j, m)
        new = new[new]
        if np.array_equal(new, label):
            break
        label = new
    return np.unique(label[of_point], return_inverse=True)[1].reshape(-1).astype(np.int64)


def keep_supported_components(
    selected: np.ndarray, xyz: np.ndarray, support: np.ndarray, *, voxel: float, keep: float = CLEAN_KEEP
) -> np.ndarray:
    """`selected` [G] bool less the pieces (voxel_components of the selected means `xyz` [G, 3]) whose mean
    `support` [G] is below `keep` × that of the main body, the piece with the largest summed support."""
    selected = np.asarray(selected, dtype=bool).reshape(-1)
    support = np.asarray(support, dtype=np.float64).reshape(-1)
    if not (len(selected) == len(support) == len(xyz)):
        raise ValueError(
            f"selected {selected.shape}, support {support.shape}, xyz {np.shape(xyz)}: lengths differ"
        )
    idx = np.nonzero(selected)[0]
    if len(idx) == 0:
        return selected.copy()
    label = voxel_components(np.asarray(xyz)[idx], voxel)
    total = np.bincount(label, weights=support[idx])
    mean = total / np.bincount(label)
    kept = mean >= keep * mean[int(np.argmax(total))]
    out = np.zeros_like(selected)
    out[idx[kept[label]]] = True
    return out
