"""Index maps a language field can represent exactly: the teacher of the language-training tests."""

from __future__ import annotations

import numpy as np
import torch


def quadrant_teacher(scene, xyz: np.ndarray, rgb: np.ndarray, *, n_classes: int = 4):
    """Frozen geometry at the points `xyz` and a view's index map per camera of `scene`: (gaussians, maps).

    Every Gaussian gets one of 4 classes by the quadrant of its (x, y); a view's index map is the class
    whose one-hot channel (of `n_classes`) dominates the alpha-blended render, −1 where none reaches 0.5.
    """
    from ccl.splat.model import init_gaussians
    from ccl.splat.render import render_channels

    g = init_gaussians(xyz, rgb, sh_degree=0, init_opacity=0.9, init_scale=1.0)
    # the sparse points on the walls get huge Gaussians that would fill whole views: cap the scales
    g.log_scales.clamp_(max=float(torch.quantile(g.log_scales[:, 0], 0.9)))
    med = np.median(xyz, axis=0)
    cls = torch.from_numpy((xyz[:, 0] > med[0]) * 2 + (xyz[:, 1] > med[1])).long()
    onehot = torch.nn.functional.one_hot(cls, n_classes).float()
    maps = []
    with torch.no_grad():
        for cam in scene.cameras:
            w = render_channels(g, cam, rgb=False, features=onehot).colors[0]
            m = w.argmax(-1)
            m[w.max(-1).values < 0.5] = -1
            maps.append(m.numpy().astype(np.int64))
    return g, maps
