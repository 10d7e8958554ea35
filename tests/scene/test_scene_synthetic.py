"""The embedded synthetic scene, as ccl.synthetic writes it, loads through ccl.scene with cameras that
agree with its ground-truth depth: the two stages share one camera convention."""

from __future__ import annotations

import h5py
import numpy as np

from ccl.scene import SceneLoadConfig, load_image, load_scene


def test_synthetic_scene_cameras_agree_with_its_depth(tiny_scene_dir, tmp_path):
    scene = load_scene(tiny_scene_dir, source="synthetic", cfg=SceneLoadConfig())
    assert len(scene.cameras) >= 2 and len(scene.points_xyz) > 0
    a, b = scene.cameras[0], scene.cameras[1]
    with h5py.File(tiny_scene_dir / "gt.h5", "r") as f:
        depth_a, depth_b = f[a.name]["depth"][()], f[b.name]["depth"][()]
    assert depth_a.shape == (a.height, a.width)
    assert load_image(a, cfg=SceneLoadConfig()).shape == (a.height, a.width, 3)

    # Every pixel centre of view a with its depth → world → view b: where b sees the same surface, the
    # depths agree. A flipped axis or a half-pixel shift would break this for most pixels.
    jj, ii = np.mgrid[0 : a.height, 0 : a.width]
    ok = np.isfinite(depth_a)
    uv1 = np.stack([ii[ok] + 0.5, jj[ok] + 0.5, np.ones(ok.sum())], 1)
    cam_pts = (uv1 @ np.linalg.inv(a.K).T) * depth_a[ok][:, None]
    world = cam_pts @ a.camera_to_world[:3, :3].T + a.camera_to_world[:3, 3]
    uv, z = b.project(world)
    inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < b.width) & (uv[:, 1] >= 0) & (uv[:, 1] < b.height)
    assert inside.mean() > 0.3
    col, row = uv[inside, 0].astype(int), uv[inside, 1].astype(int)
    rel = np.abs(depth_b[row, col] - z[inside]) / z[inside]
    assert np.median(rel) < 0.01
    assert (rel < 0.03).mean() > 0.6  # the rest: occlusions and depth edges


def test_synthetic_points_lie_on_visible_surfaces(tiny_scene_dir):
    scene = load_scene(tiny_scene_dir, source="synthetic", cfg=SceneLoadConfig())
    cam = scene.cameras[0]
    with h5py.File(tiny_scene_dir / "gt.h5", "r") as f:
        depth = f[cam.name]["depth"][()]
    uv, z = cam.project(scene.points_xyz)
    inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
    d = depth[uv[inside, 1].astype(int), uv[inside, 0].astype(int)]
    # Most points lie on the surface seen at their pixel; the rest are hidden (behind it) or on
    # silhouette edges, which at 64x48 are many pixels (measured: ~72% on, ~7% in front).
    assert np.mean(np.abs(z[inside] - d) < 0.03 * d) > 0.6
    assert np.mean(z[inside] < d - 0.05 * d) < 0.15
