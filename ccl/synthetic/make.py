"""`make_scene`: build the synthetic scene folder (docs/contracts.md, "Scene folder" and "gt.h5")."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ccl.config import as_params, config_source
from ccl.io.atomic import atomic_directory
from ccl.synthetic import cameras as cam_ops
from ccl.synthetic import ops
from ccl.synthetic.catalogue import place_objects
from ccl.synthetic.config import SyntheticConfig
from ccl.synthetic.geometry import ROLE_OBJECT, ROLE_OCCLUDER
from ccl.synthetic.labels import frame_label
from ccl.synthetic.render import SceneGeometry, occluder_primitives, room_primitive

log = logging.getLogger(__name__)

GT_FORMAT_VERSION = 1
SCENE_FORMAT_VERSION = 1
# Independent random streams, so that e.g. changing n_views does not move the objects.
STREAM_LAYOUT, STREAM_CAMERAS, STREAM_OCCLUDERS, STREAM_BLUR, STREAM_POINTS = range(1, 6)


@dataclass(frozen=True)
class FrameRender:
    """One rendered view: the image and its ground-truth layers."""

    image: np.ndarray  # [H, W, 3] uint8 (motion blur applied)
    whole_id: np.ndarray  # [H, W] int32, -1 = background/table/occluder
    part_id: np.ndarray  # [H, W] int32, -1 = none
    subpart_id: np.ndarray  # [H, W] int32, -1 = none
    category_id: np.ndarray  # [H, W] int32, -1 = none
    depth: np.ndarray  # [H, W] float32, camera z, inf = no hit
    occluded_fraction: np.ndarray  # [n_objects] float32
    blur: float  # motion-blur length in pixels, 0 = sharp
    points_xyz: np.ndarray  # [H·W, 3] float64, centre-ray hit points (nan where no hit)
    points_rgb: np.ndarray  # [H·W, 3] float64 in [0, 1], their sharp colours


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


def render_frame(
    geo: SceneGeometry, cam: cam_ops.OrbitCamera, *, cfg: SyntheticConfig, blur: float, blur_angle: float
) -> FrameRender:
    """Cast the pixel-centre rays (GT layers) and the supersampled rays (colours) of one camera."""
    h, w = cam.height, cam.width
    o_c, d_c = cam_ops.pixel_rays(cam, np.array([[0.5, 0.5]]))
    o_s, d_s = cam_ops.pixel_rays(cam, cam_ops.sample_offsets(cfg.supersample))
    o, d = np.concatenate([o_c, o_s]), np.concatenate([d_c, d_s])
    hits = geo.cast(o, d, alone=True)
    colors = geo.shade(o, d, hits, highlights=cfg.highlights, shadows=cfg.shadows)
    n_c = h * w
    centre = hits.prim[:n_c]
    on_object = centre >= 0
    on_object[on_object] = geo.role[centre[on_object]] == ROLE_OBJECT

    def layer(values: np.ndarray) -> np.ndarray:
        out = np.full(n_c, -1, np.int32)
        out[on_object] = values[centre[on_object]]
        return out.reshape(h, w)

    whole = layer(geo.object_index)
    category_of_object = np.array([obj.category_id for obj in geo.objects], np.int64)
    category = np.where(whole >= 0, category_of_object[np.maximum(whole, 0)], -1).astype(np.int32)

    alone = hits.alone[:, :n_c].sum(axis=1)
    visible = np.bincount(whole[whole >= 0], minlength=len(geo.objects))
    occluded = np.where(alone > 0, 1.0 - visible / np.maximum(alone, 1), 0.0).clip(0.0, 1.0)

    sharp = colors[n_c:].reshape(-1, h, w, 3).mean(axis=0)
    img = sharp
    if blur > 0:
        import cv2

        img = cv2.filter2D(sharp, -1, ops.line_kernel(blur, blur_angle), borderType=cv2.BORDER_REFLECT)
    t_c = hits.t[:n_c]
    xyz = np.where(
        np.isfinite(t_c)[:, None], o_c + np.where(np.isfinite(t_c), t_c, 0.0)[:, None] * d_c, np.nan
    )
    return FrameRender(
        image=np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8),
        whole_id=whole,
        part_id=layer(geo.part_id),
        subpart_id=layer(geo.subpart_id),
        category_id=category,
        depth=t_c.reshape(h, w).astype(np.float32),
        occluded_fraction=occluded.astype(np.float32),
        blur=float(blur),
        points_xyz=xyz,
        points_rgb=colors[:n_c],
    )


@dataclass(frozen=True)
class ScenePlan:
    """Everything a scene's files are rendered from, drawn from the seed (no I/O)."""

    cfg: SyntheticConfig
    seed: int
    geometry: SceneGeometry
    cameras: list[cam_ops.OrbitCamera]  # [n_views]
    blur_px: np.ndarray  # [n_views] float64, motion-blur length per frame, 0 = sharp
    blur_angle: np.ndarray  # [n_views] float64, radians

    @property
    def categories(self) -> list[str]:  # category id = index
        return [obj.category for obj in self.geometry.objects]


def plan_scene(cfg: SyntheticConfig, seed: int) -> ScenePlan:
    """Objects, occluders, cameras and blur of the scene `cfg` and `seed` describe."""
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise ValueError(
            f"seed = {seed!r}: expected a non-negative integer (top-level `seed` in {config_source()})"
        )
    seed = int(seed)
    objects = place_objects(cfg.n_objects, _rng(seed, STREAM_LAYOUT))
    occluders = occluder_primitives(
        cfg.occluders, 1.1 * cfg.orbit_height, cfg.orbit_radius, _rng(seed, STREAM_OCCLUDERS)
    )
    blur_rng = _rng(seed, STREAM_BLUR)
    blurred = blur_rng.random(cfg.n_views) < cfg.motion_blur_frames
    scale = blur_rng.uniform(0.6, 1.0, cfg.n_views)
    blur_px = np.where(blurred & (cfg.motion_blur > 0), cfg.motion_blur * scale, 0.0)
    return ScenePlan(
        cfg=cfg,
        seed=seed,
        geometry=SceneGeometry(objects, occluders, room_primitive()),
        cameras=cam_ops.orbit_cameras(cfg, _rng(seed, STREAM_CAMERAS)),
        blur_px=blur_px,
        blur_angle=blur_rng.uniform(0.0, np.pi, cfg.n_views),
    )


def make_scene(out_dir: str | os.PathLike, *, cfg: SyntheticConfig, seed: int) -> Path:
    """Build the synthetic scene folder at `out_dir` (replaced if it exists), atomically.

    The folder is built beside `out_dir` under a temporary name and renamed when complete. The same
    seed and config give byte-identical images and ground-truth arrays.
    """
    plan = plan_scene(cfg, seed)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    geo = plan.geometry
    log.info(
        "synthetic scene: %d objects, %d occluders, %d views of %dx%d, seed %d",
        len(geo.objects),
        int((geo.role == ROLE_OCCLUDER).sum()),
        cfg.n_views,
        cfg.width,
        cfg.height,
        plan.seed,
    )
    with atomic_directory(out_dir) as tmp:
        _write_folder(tmp, plan)
    log.info("wrote %s", out_dir)
    return out_dir


def _write_folder(root: Path, plan: ScenePlan) -> None:
    import cv2

    from ccl.io import write_h5
    from ccl.io.h5 import put_array
    from ccl.runlog import progress

    cfg, geo, cams = plan.cfg, plan.geometry, plan.cameras
    (root / "images").mkdir()
    (root / "labels").mkdir()
    names = [c.name for c in cams]
    eval_frames = set(names[:: cfg.label_every])
    category_of_object = [plan.categories[obj.category_id] for obj in geo.objects]
    point_rng = _rng(plan.seed, STREAM_POINTS)
    pts_xyz, pts_rgb = [], []
    per_view = _points_per_view(cfg.n_points, cfg.n_views)
    visible_px = np.zeros(len(geo.objects), np.int64)  # pixels of each object over every view
    with write_h5(
        root / "gt.h5",
        kind="gt",
        format_version=GT_FORMAT_VERSION,
        params={**as_params(cfg), "seed": plan.seed},
        model={"backend": "ccl.synthetic", "simulated": True},
        frame_names=names,
    ) as f:
        f.attrs["categories"] = json.dumps(plan.categories)
        f.attrs["objects"] = json.dumps([obj.hierarchy() for obj in geo.objects])
        for i, cam in enumerate(progress(cams, desc="synthetic views", unit="view")):
            fr = render_frame(
                geo, cam, cfg=cfg, blur=float(plan.blur_px[i]), blur_angle=float(plan.blur_angle[i])
            )
            ok, png = cv2.imencode(".png", cv2.cvtColor(fr.image, cv2.COLOR_RGB2BGR))
            assert ok, "PNG encoding failed"
            (root / "images" / f"{cam.name}.png").write_bytes(png.tobytes())
            g = f.create_group(cam.name)
            for key in ("whole_id", "part_id", "subpart_id", "category_id", "depth", "occluded_fraction"):
                put_array(g, key, getattr(fr, key))
            g.create_dataset("blur", data=np.float32(fr.blur))
            visible_px += np.bincount(fr.whole_id[fr.whole_id >= 0], minlength=len(geo.objects))
            if cam.name in eval_frames:
                label = frame_label(f"{cam.name}.png", fr.whole_id, category_of_object)
                (root / "labels" / f"{cam.name}.json").write_text(json.dumps(label, indent=2) + "\n")
            xyz, rgb = _sample_points(fr, per_view[i], point_rng)
            pts_xyz.append(xyz)
            pts_rgb.append(rgb)
    xyz = np.concatenate(pts_xyz)
    xyz = xyz + point_rng.normal(0.0, cfg.point_noise, xyz.shape)
    _write_ply(root / "points3d.ply", xyz, np.concatenate(pts_rgb))
    _write_transforms(root / "transforms.json", cams, cfg)
    doc = _scene_json(plan)
    doc["never_visible_objects"] = never_visible_objects(visible_px, geo.objects, category_of_object, cfg)
    (root / "scene.json").write_text(json.dumps(doc, indent=2) + "\n")


def never_visible_objects(visible_px: np.ndarray, objects, category_of_object, cfg: SyntheticConfig) -> list:
    """Objects with no pixel in any view ([{id, category}]), each warned about: no label and so no query
    can test them (occluders this dense hide them from every camera)."""
    hidden = [
        {"id": int(obj.index), "category": category_of_object[i]}
        for i, obj in enumerate(objects)
        if visible_px[i] == 0
    ]
    for h in hidden:
        log.warning(
            "synthetic scene: object %d (%r) is visible in no view (synthetic.occluders = %d, n_views = %d): "
            "it gets no label and no query tests it; scene.json lists it under never_visible_objects. "
            "Lower synthetic.occluders or raise synthetic.n_views to see it",
            h["id"], h["category"], cfg.occluders, cfg.n_views,
        )  # fmt: skip
    return hidden


def _scene_json(plan: ScenePlan) -> dict:
    geo = plan.geometry
    names = [c.name for c in plan.cameras]
    objects = []
    for obj in geo.objects:
        center, radius = obj.bounds()
        objects.append(
            {
                **obj.hierarchy(),
                "center_xyz": center.tolist(),
                "radius": radius,
                "position_xyz": obj.position.tolist(),
                "yaw": obj.yaw,
            }
        )
    shape_names = {v: k for k, v in ops.SHAPES.items()}
    return {
        "format_version": SCENE_FORMAT_VERSION,
        "generator": "ccl.synthetic.make_scene",
        "seed": plan.seed,
        "params": as_params(plan.cfg),
        "categories": plan.categories,
        "objects": objects,
        "frames": names,
        "eval_frames": names[:: plan.cfg.label_every],
        "blurred_frames": [n for n, b in zip(names, plan.blur_px, strict=True) if b > 0],
        "occluders": [
            {"center_xyz": p.center.tolist(), "half_extents": p.scale.tolist(), "shape": shape_names[p.shape]}
            for p in geo.prims
            if p.role == ROLE_OCCLUDER
        ],
        "up": [0.0, 0.0, 1.0],
        "table_height": 0.0,
    }


def _points_per_view(n_points: int, n_views: int) -> np.ndarray:
    base = np.full(n_views, n_points // n_views)
    base[: n_points % n_views] += 1
    return base


def _sample_points(fr: FrameRender, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` of the frame's hit points with their colours: half on objects, half elsewhere (when available)."""
    valid = np.isfinite(fr.points_xyz[:, 0])
    obj = valid & (fr.whole_id.ravel() >= 0)
    rest = valid & ~obj
    n_obj = min(int(obj.sum()), n // 2)
    n_rest = min(int(rest.sum()), n - n_obj)
    pick = np.concatenate(
        [
            rng.choice(np.flatnonzero(obj), n_obj, replace=False),
            rng.choice(np.flatnonzero(rest), n_rest, replace=False),
        ]
    ).astype(np.int64)
    rgb = np.round(np.clip(fr.points_rgb[pick], 0, 1) * 255).astype(np.uint8)
    return fr.points_xyz[pick], rgb


def _write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """ASCII PLY with float x y z and uchar red green blue."""
    header = (
        "ply\nformat ascii 1.0\n"
        f"element vertex {len(xyz)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    lines = [
        f"{x:.6f} {y:.6f} {z:.6f} {r} {g} {b}"
        for (x, y, z), (r, g, b) in zip(xyz.tolist(), rgb.tolist(), strict=True)
    ]
    path.write_text(header + "\n".join(lines) + ("\n" if lines else ""))


def _write_transforms(path: Path, cams, cfg: SyntheticConfig) -> None:
    K = cams[0].K
    doc = {
        "camera_angle_x": float(np.deg2rad(cfg.fov_deg)),
        "fl_x": float(K[0, 0]),
        "fl_y": float(K[1, 1]),
        "cx": float(K[0, 2]),
        "cy": float(K[1, 2]),
        "w": int(cfg.width),
        "h": int(cfg.height),
        "ply_file_path": "points3d.ply",
        "frames": [
            {"file_path": f"images/{c.name}.png", "transform_matrix": c.camera_to_world_gl.tolist()}
            for c in cams
        ],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
