"""The embedded synthetic scene: objects on a table, ray cast analytically, with ground-truth layers.

`make_scene(out_dir, cfg=SyntheticConfig(...), seed=0)` writes the scene folder of docs/contracts.md
("Scene folder", "gt.h5"): images, transforms.json, points3d.ply, gt.h5, LERF-OVS labels, scene.json.
"""

from ccl.synthetic.config import SyntheticConfig
from ccl.synthetic.make import GT_FORMAT_VERSION, FrameRender, ScenePlan, make_scene, plan_scene, render_frame

__all__ = [
    "GT_FORMAT_VERSION",
    "FrameRender",
    "ScenePlan",
    "SyntheticConfig",
    "make_scene",
    "plan_scene",
    "render_frame",
]
