"""How good a trained field is: the records of `rgb.metrics.json` and `{scale}.metrics.json`, and the
measurements that fill them (colour PSNR per view, pixel accuracy of the decoded class map, and the
3D consistency of the index maps, the accuracy ceiling of any field trained on them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ccl.splat.config import RgbConfig
    from ccl.splat.trainer import Views


@dataclass(frozen=True)
class RgbMetrics:
    """What rgb.metrics.json holds."""

    psnr_heldout: float | None  # dB, mean over held-out views (None when holdout_every = 0)
    psnr_heldout_per_view: dict[str, float]  # frame name → dB
    psnr_train: float | None  # dB, mean over the training views
    n_gaussians: int
    iterations: int
    seconds: float  # wall time of this run (resumed runs: since the resume)
    resumed_from: int  # iteration a partial checkpoint was resumed from, 0 = fresh start
    heldout_views: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LanguageMetrics:
    """What `{scale}.metrics.json` holds. Accuracies are over pixels whose index map is not −1."""

    accuracy_all: float  # pixel accuracy over every view
    accuracy_train: float  # over the training views
    accuracy_heldout: float | None  # over the held-out views (None when holdout_every = 0)
    accuracy_per_view: dict[str, float]  # frame name → accuracy
    labelled_fraction: float  # share of pixels with a class (not −1), all views
    n_classes: int
    n_gaussians: int
    iterations: int
    seconds: float  # wall time of this run (resumed runs: since the resume)
    resumed_from: int  # iteration a partial checkpoint was resumed from, 0 = fresh start
    joint: bool
    psnr_heldout: float | None = None  # joint runs: colour PSNR on the held-out views
    # the best accuracy any 3D field could reach: share of labelled pixels agreeing with the majority
    # class of their voxel (pixels back-projected with the field's depth; see index_consistency)
    index_consistency: float | None = None
    consistency_voxel: float | None = None  # voxel edge, scene units (0.01 × the scene scale)
    heldout_views: list[str] = field(default_factory=list)


def evaluate_rgb(
    gaussians: Any, views: Views, train_idx: list[int], test_idx: list[int], *, cfg: RgbConfig
) -> RgbMetrics:
    """PSNR of the field on the held-out and the training views (run fields: iterations from `cfg`,
    seconds and resumed_from 0, for the caller to fill in)."""
    import torch

    from ccl.splat.losses import psnr
    from ccl.splat.render import render_channels

    g = gaussians.to(views.images[0].device)

    def view_psnr(i: int) -> float:
        with torch.no_grad():
            out = render_channels(g, views.cameras[i], background=cfg.background)
        return psnr(out.colors[0], views.images[i].to(torch.float32) / 255.0)

    held = {views.cameras[i].name: view_psnr(i) for i in test_idx}
    train = [view_psnr(i) for i in train_idx]
    return RgbMetrics(
        psnr_heldout=float(np.mean(list(held.values()))) if held else None,
        psnr_heldout_per_view=held,
        psnr_train=float(np.mean(train)) if train else None,
        n_gaussians=len(gaussians),
        iterations=cfg.iterations,
        seconds=0.0,
        resumed_from=0,
        heldout_views=list(held),
    )


def evaluate_language(
    lf: Any,
    cameras: Sequence[Any],
    index_maps: Sequence[np.ndarray],
    train_idx: list[int],
    test_idx: list[int],
) -> LanguageMetrics:
    """Pixel accuracy of the decoded class map against the index maps (pixels with −1 ignored); run
    fields (iterations, seconds, joint, ...) are left at their zero values for the caller to fill in."""
    from ccl.splat.render import render_class_map

    correct, total, per_view = {}, {}, {}
    for i, cam in enumerate(cameras):
        target = np.asarray(index_maps[i])
        mask = target >= 0
        pred = render_class_map(lf, cam)
        correct[i] = int((pred[mask] == target[mask]).sum())
        total[i] = int(mask.sum())
        if total[i]:
            per_view[cam.name] = correct[i] / total[i]

    def acc(idx: Sequence[int]) -> float | None:
        t = sum(total[i] for i in idx)
        return sum(correct[i] for i in idx) / t if t else None

    n_pixels = sum(np.asarray(m).size for m in index_maps)
    return LanguageMetrics(
        accuracy_all=acc(range(len(cameras))) or 0.0,
        accuracy_train=acc(train_idx) or 0.0,
        accuracy_heldout=acc(test_idx) if test_idx else None,
        accuracy_per_view=per_view,
        labelled_fraction=sum(total.values()) / max(n_pixels, 1),
        n_classes=lf.n_classes,
        n_gaussians=len(lf.gaussians),
        iterations=0,
        seconds=0.0,
        resumed_from=0,
        joint=False,
        heldout_views=[cameras[i].name for i in test_idx],
    )


def index_consistency(
    gaussians: Any, cameras: Sequence[Any], index_maps: Sequence[np.ndarray], *, voxel: float
) -> float | None:
    """How 3D-consistent the index maps are: the accuracy ceiling of any field with one class per point.

    Every labelled pixel that the field covers (alpha > 0.5) is back-projected with the field's
    rendered depth into a voxel of edge `voxel`; among the voxels seen from at least two views, the
    result is the share of pixels whose class is their voxel's majority class over all views. Maps that
    give one surface different classes in different views (an inconsistent codebook) cap the language
    field's accuracy at this value.
    """
    import torch

    from ccl.splat.render import render_channels

    ids, classes, views = [], [], []
    ones = torch.ones(len(gaussians), 1)
    for view, (cam, m) in enumerate(zip(cameras, index_maps, strict=True)):
        with torch.no_grad():
            out = render_channels(gaussians, cam, rgb=False, features=ones)
        z = out.depth[0, ..., 0].numpy()
        ok = (np.asarray(m) >= 0) & (out.alpha[0, ..., 0].numpy() > 0.5)
        v, u = np.nonzero(ok)
        zz = z[ok].astype(np.float64)
        k = cam.K
        xc = np.stack([(u + 0.5 - k[0, 2]) / k[0, 0] * zz, (v + 0.5 - k[1, 2]) / k[1, 1] * zz, zz], axis=1)
        rot, t = cam.world_to_camera[:3, :3], cam.world_to_camera[:3, 3]
        ids.append(np.floor(((xc - t) @ rot) / voxel).astype(np.int64))
        classes.append(np.asarray(m)[ok].astype(np.int64))
        views.append(np.full(len(zz), view, dtype=np.int64))
    if sum(len(c) for c in classes) == 0:
        return None
    _, vid = np.unique(np.concatenate(ids), axis=0, return_inverse=True)
    vid, cls, view = vid.reshape(-1), np.concatenate(classes), np.concatenate(views)
    # only voxels seen from at least two views say anything about consistency
    seen = np.unique(vid * len(cameras) + view) // len(cameras)
    multi = np.bincount(seen, minlength=vid.max() + 1) >= 2
    keep = multi[vid]
    if not keep.any():
        return None
    vid, cls = vid[keep], cls[keep]
    n = int(cls.max()) + 1
    pairs, counts = np.unique(vid * n + cls, return_counts=True)
    starts = np.flatnonzero(np.r_[True, np.diff(pairs // n) != 0])
    return float(np.maximum.reduceat(counts, starts).sum() / len(cls))
