"""The embedded synthetic scene: objects on a table, ray cast analytically, with ground-truth layers.

`make_scene(out_dir, cfg=SyntheticConfig(...), seed=0)` writes the scene folder of docs/contracts.md
("Scene folder", "gt.h5"): images, transforms.json, points3d.ply, gt.h5, LERF-OVS labels, scene.json.
`GroundTruth(require_gt(scene, stage), scene.frame_names)` reads gt.h5 back for the `sim` backends.
`export_layout(scene_dir, out_root, layout="lerf_ovs" | "3dovs", name=...)` writes the scene in a
benchmark's release layout (COLMAP model, JPEG images, the benchmark's labels) for `source: colmap` runs.
"""

from ccl.synthetic.config import SyntheticConfig
from ccl.synthetic.export import EXPORT_LAYOUTS, export_layout
from ccl.synthetic.gt import (
    BACKGROUND,
    LEVEL_LAYERS,
    WHOLE_LEVEL,
    GroundTruth,
    GtFrame,
    gt_path,
    majority_id,
    require_gt,
    require_seed,
)
from ccl.synthetic.make import GT_FORMAT_VERSION, FrameRender, ScenePlan, make_scene, plan_scene, render_frame

__all__ = [
    "BACKGROUND",
    "EXPORT_LAYOUTS",
    "GT_FORMAT_VERSION",
    "LEVEL_LAYERS",
    "FrameRender",
    "GroundTruth",
    "GtFrame",
    "ScenePlan",
    "SyntheticConfig",
    "WHOLE_LEVEL",
    "export_layout",
    "gt_path",
    "majority_id",
    "make_scene",
    "plan_scene",
    "render_frame",
    "require_gt",
    "require_seed",
]
