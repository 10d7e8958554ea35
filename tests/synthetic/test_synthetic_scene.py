"""The synthetic scene folder: file set, determinism, GT hierarchy, camera model, labels, hard cases."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from ccl.io import open_h5_for_read
from ccl.synthetic import SyntheticConfig, make_scene
from ccl.synthetic.catalogue import OBJECT_SIZE, green_apple
from ccl.synthetic.ops import rot_z

# Small scenes that still show every object with some tens of pixels.
SMALL = SyntheticConfig(n_views=3, width=64, height=48, n_points=120, label_every=1)
GT_LAYERS = ("whole_id", "part_id", "subpart_id", "category_id")
# Label file keys of the released LERF-OVS files (tests/fixtures/lerf_ovs_labels).
LABEL_INFO_KEYS = {"name", "width", "height", "depth", "note"}
LABEL_OBJECT_KEYS = {"category", "group", "segmentation", "area", "layer", "bbox", "iscrowd", "note"}


def build(tmp_path: Path, name: str, cfg: SyntheticConfig = SMALL, seed: int = 0) -> Path:
    return make_scene(tmp_path / name / "scene", cfg=cfg, seed=seed)


def read_gt(scene: Path) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    with open_h5_for_read(scene / "gt.h5", kind="gt") as f:
        attrs = {k: f.attrs[k] for k in f.attrs}
        frames = {name: {k: f[name][k][()] for k in f[name]} for name in json.loads(f.attrs["frame_names"])}
    return attrs, frames


def gl_to_cv_world_to_camera(c2w_gl) -> np.ndarray:
    """The consumer's conversion: OpenGL camera-to-world -> OpenCV world-to-camera."""
    return np.linalg.inv(np.asarray(c2w_gl) @ np.diag([1.0, -1.0, -1.0, 1.0]))


def test_folder_has_the_contract_file_set(tiny_scene_dir):
    root = Path(tiny_scene_dir)
    n = 8  # tests/conftest.py TINY_SYNTHETIC
    assert {p.name for p in root.iterdir()} == {
        "images",
        "labels",
        "transforms.json",
        "points3d.ply",
        "gt.h5",
        "scene.json",
    }
    names = [f"frame_{i:05d}" for i in range(n)]
    assert sorted(p.name for p in (root / "images").iterdir()) == [f"{s}.png" for s in names]
    img = cv2.imread(str(root / "images" / "frame_00000.png"), cv2.IMREAD_UNCHANGED)
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    # label_every = 5 by default: frames 0 and 5.
    assert sorted(p.name for p in (root / "labels").iterdir()) == ["frame_00000.json", "frame_00005.json"]

    tf = json.loads((root / "transforms.json").read_text())
    assert {"fl_x", "fl_y", "cx", "cy", "w", "h"} <= set(tf) and tf["ply_file_path"] == "points3d.ply"
    assert (tf["w"], tf["h"], tf["cx"], tf["cy"]) == (64, 48, 32.0, 24.0)
    assert [fr["file_path"] for fr in tf["frames"]] == [f"images/{s}.png" for s in names]
    assert all(np.asarray(fr["transform_matrix"]).shape == (4, 4) for fr in tf["frames"])

    ply = (root / "points3d.ply").read_text().splitlines()
    end = ply.index("end_header")
    assert ply[:end] == [
        "ply",
        "format ascii 1.0",
        f"element vertex {len(ply) - end - 1}",
        "property float x",
        "property float y",
        "property float z",
        "property uchar red",
        "property uchar green",
        "property uchar blue",
    ]
    assert len(ply) - end - 1 == SyntheticConfig().n_points

    attrs, frames = read_gt(root)
    assert json.loads(attrs["frame_names"]) == names
    categories = json.loads(attrs["categories"])
    assert len(categories) == len(set(categories)) == 8
    for fr in frames.values():
        for key in GT_LAYERS:
            assert fr[key].dtype == np.int32 and fr[key].shape == (48, 64)
        assert fr["depth"].dtype == np.float32 and fr["depth"].shape == (48, 64)
        assert fr["occluded_fraction"].dtype == np.float32 and fr["occluded_fraction"].shape == (8,)
        assert fr["blur"].dtype == np.float32 and fr["blur"].shape == ()

    scene = json.loads((root / "scene.json").read_text())
    assert scene["categories"] == categories and scene["seed"] == 0
    assert scene["params"]["width"] == 64 and scene["eval_frames"] == ["frame_00000", "frame_00005"]


def test_same_seed_gives_identical_files_and_another_seed_other_poses(tmp_path):
    a, b, c = build(tmp_path, "a"), build(tmp_path, "b"), build(tmp_path, "c", seed=1)
    for name in ("frame_00000.png", "frame_00001.png", "frame_00002.png"):
        assert (a / "images" / name).read_bytes() == (b / "images" / name).read_bytes()
    for rel in ("transforms.json", "points3d.ply", "labels/frame_00001.json", "scene.json"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    _, gt_a = read_gt(a)
    _, gt_b = read_gt(b)
    for frame in gt_a:
        for key, arr in gt_a[frame].items():
            np.testing.assert_array_equal(arr, gt_b[frame][key], err_msg=f"{frame}/{key}")
    poses_a = [fr["transform_matrix"] for fr in json.loads((a / "transforms.json").read_text())["frames"]]
    poses_c = [fr["transform_matrix"] for fr in json.loads((c / "transforms.json").read_text())["frames"]]
    assert not np.allclose(poses_a, poses_c)


def test_gt_hierarchy_is_consistent(tiny_scene_dir):
    attrs, frames = read_gt(Path(tiny_scene_dir))
    objects = json.loads(attrs["objects"])
    categories = json.loads(attrs["categories"])
    assert [o["id"] for o in objects] == list(range(len(objects)))
    part_of_sub, whole_of_part, cat_of_whole = {}, {}, {}
    part_ids, sub_ids = [], []
    for o in objects:
        assert categories[o["category_id"]] == o["name"]
        cat_of_whole[o["id"]] = o["category_id"]
        for p in o["parts"]:
            whole_of_part[p["id"]] = o["id"]
            part_ids.append(p["id"])
            assert p["subparts"], "every part lists at least itself as subpart"
            for s in p["subparts"]:
                part_of_sub[s["id"]] = p["id"]
                sub_ids.append(s["id"])
            if len(p["subparts"]) == 1:  # an undivided part is its own subpart
                assert p["subparts"][0]["id"] == p["id"]
    assert len(part_ids) == len(set(part_ids)) and len(sub_ids) == len(set(sub_ids))
    assert not set(part_ids) & set(cat_of_whole)

    seen_subparts = set()
    for name, fr in frames.items():
        on = fr["whole_id"] >= 0
        for key in GT_LAYERS:  # -1 exactly where no object is
            np.testing.assert_array_equal(fr[key] >= 0, on, err_msg=f"{name}/{key}")
        sub, part, whole, cat = (fr[k][on] for k in ("subpart_id", "part_id", "whole_id", "category_id"))
        np.testing.assert_array_equal(np.vectorize(part_of_sub.get)(sub), part)
        np.testing.assert_array_equal(np.vectorize(whole_of_part.get)(part), whole)
        np.testing.assert_array_equal(np.vectorize(cat_of_whole.get)(whole), cat)
        seen_subparts |= set(np.unique(sub).tolist())
        assert np.isfinite(fr["depth"][on]).all() and (fr["depth"][on] > 0).all()
    # Subparts really show up (not only whole objects): most of them are seen in some frame.
    assert len(seen_subparts) >= 0.7 * len(sub_ids)


def test_sphere_centre_projects_to_its_mask_centroid(tmp_path):
    """The camera model of transforms.json (OpenGL pose -> OpenCV, fl/cx/cy) matches the images."""
    cfg = replace(SMALL, n_objects=1, n_views=4, width=160, height=120)  # the green apple alone
    root = build(tmp_path, "apple", cfg, seed=3)
    tf = json.loads((root / "transforms.json").read_text())
    K = np.array([[tf["fl_x"], 0, tf["cx"]], [0, tf["fl_y"], tf["cy"]], [0, 0, 1]])
    scene = json.loads((root / "scene.json").read_text())
    apple = scene["objects"][0]
    fruit_part = next(p for p in apple["parts"] if p["name"] == "fruit")
    fruit = green_apple().parts[0].subparts[0].prims[0]  # a sphere in the apple's own frame
    center = rot_z(apple["yaw"]) @ (OBJECT_SIZE * fruit.center) + np.asarray(apple["position_xyz"])
    _, frames = read_gt(root)
    for fr_json in tf["frames"]:
        name = Path(fr_json["file_path"]).stem
        w2c = gl_to_cv_world_to_camera(fr_json["transform_matrix"])
        xyz_cam = w2c[:3, :3] @ center + w2c[:3, 3]
        uv = (K @ xyz_cam)[:2] / xyz_cam[2]
        mask = frames[name]["part_id"] == fruit_part["id"]
        assert mask.sum() > 80
        rows, cols = np.nonzero(mask)
        centroid = np.array([cols.mean(), rows.mean()]) + 0.5  # pixel centres at +0.5 (gsplat, instant-ngp)
        np.testing.assert_allclose(centroid, uv, atol=1.0, err_msg=name)
        # The nearest surface point of the sphere is at camera depth ~ |centre| - r along the view axis.
        r0, c0 = int(uv[1]), int(uv[0])
        assert abs(frames[name]["depth"][r0, c0] - (xyz_cam[2] - OBJECT_SIZE * fruit.scale[0])) < 0.01


def _fill(polys, shape) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, [np.round(np.asarray(p)).astype(np.int32) for p in polys], 1)
    return canvas.astype(bool)


def test_label_polygons_match_whole_masks(tmp_path):
    # Occluders split some objects into pieces: one polygon per piece of >= 20 pixels.
    root = build(tmp_path, "labels", replace(SMALL, width=160, height=120, occluders=5))
    attrs, frames = read_gt(root)
    categories = json.loads(attrs["categories"])
    for label_path in sorted((root / "labels").glob("*.json")):
        label = json.loads(label_path.read_text())
        assert set(label["info"]) == LABEL_INFO_KEYS
        assert (root / "images" / label["info"]["name"]).is_file()
        assert (label["info"]["width"], label["info"]["height"], label["info"]["depth"]) == (160, 120, 3)
        whole = frames[label_path.stem]["whole_id"]
        by_category: dict[str, list] = {}
        for obj in label["objects"]:
            assert set(obj) == LABEL_OBJECT_KEYS and obj["iscrowd"] == 0
            poly = np.asarray(obj["segmentation"], float)
            assert poly.ndim == 2 and poly.shape[1] == 2 and len(poly) >= 3
            x, y = poly[:, 0], poly[:, 1]
            assert obj["area"] == pytest.approx(
                0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
            )
            assert obj["bbox"] == [x.min(), y.min(), x.max(), y.max()]
            by_category.setdefault(obj["category"], []).append(poly)
        visible = {categories[i] for i in np.unique(whole[whole >= 0]) if (whole == i).sum() >= 60}
        assert visible <= set(by_category), f"{label_path.name}: visible objects without a polygon"
        for category, polys in by_category.items():
            gt = whole == categories.index(category)
            n, _, stats, _ = cv2.connectedComponentsWithStats(gt.astype(np.uint8), connectivity=8)
            assert len(polys) == (stats[1:n, cv2.CC_STAT_AREA] >= 20).sum(), category
            filled = _fill(polys, whole.shape)
            iou = (gt & filled).sum() / (gt | filled).sum()
            assert iou > 0.9, f"{label_path.name}: {category} IoU {iou:.3f}"


def test_occluders_hide_objects_and_raise_occluded_fraction(tmp_path):
    cfg = replace(SMALL, n_views=4, width=96, height=72)
    plain = build(tmp_path, "plain", cfg)
    occl = build(tmp_path, "occl", replace(cfg, occluders=6))
    _, gt_p = read_gt(plain)
    _, gt_o = read_gt(occl)
    hidden = 0
    for name in gt_p:
        p, o = gt_p[name], gt_o[name]
        # Occluders only remove object pixels (the cameras and objects are the same).
        assert not ((o["whole_id"] >= 0) & (o["whole_id"] != p["whole_id"])).any()
        newly = (p["whole_id"] >= 0) & (o["whole_id"] < 0)
        hidden += newly.sum()
        assert (o["depth"][newly] < p["depth"][newly]).all()  # something nearer covers them
        assert (o["occluded_fraction"] >= p["occluded_fraction"] - 1e-6).all()
    assert hidden > 50
    total_p = sum(fr["occluded_fraction"].sum() for fr in gt_p.values())
    total_o = sum(fr["occluded_fraction"].sum() for fr in gt_o.values())
    assert total_o > total_p + 0.1


def test_occluded_fraction_against_objects_rendered_alone(tmp_path):
    """Reference: each object's pixel count when it is the only object (no other objects, no
    occluders), from a separate render."""
    from ccl.synthetic import plan_scene, render_frame
    from ccl.synthetic.render import SceneGeometry, room_primitive

    cfg = replace(SMALL, n_views=2, width=80, height=60, occluders=3)
    plan = plan_scene(cfg, 0)
    objects, cams, full = plan.geometry.objects, plan.cameras, plan.geometry
    for cam in cams:
        fr = render_frame(full, cam, cfg=cfg, blur=0.0, blur_angle=0.0)
        for obj in objects:
            alone_obj = replace(obj, index=0, prims=[replace(p, object_index=0) for p in obj.prims])
            alone = render_frame(
                SceneGeometry([alone_obj], [], room_primitive()), cam, cfg=cfg, blur=0.0, blur_angle=0.0
            )
            n_alone = (alone.whole_id == 0).sum()
            expect = 1.0 - (fr.whole_id == obj.index).sum() / n_alone if n_alone else 0.0
            assert fr.occluded_fraction[obj.index] == pytest.approx(expect, abs=1e-6), obj.category


def test_motion_blur_changes_images_only_and_is_recorded(tmp_path):
    sharp = build(tmp_path, "sharp")
    blurred = build(tmp_path, "blurred", replace(SMALL, motion_blur=4.0, motion_blur_frames=1.0))
    _, gt_s = read_gt(sharp)
    _, gt_b = read_gt(blurred)
    for name in gt_s:
        assert gt_s[name]["blur"] == 0.0
        assert 0.6 * 4.0 <= gt_b[name]["blur"] <= 4.0
        np.testing.assert_array_equal(gt_s[name]["whole_id"], gt_b[name]["whole_id"])
        a = cv2.imread(str(sharp / "images" / f"{name}.png")).astype(float)
        b = cv2.imread(str(blurred / "images" / f"{name}.png")).astype(float)
        # Blur lowers local contrast: the mean gradient magnitude drops.
        grad = lambda im: np.abs(np.diff(im, axis=0)).mean() + np.abs(np.diff(im, axis=1)).mean()  # noqa: E731
        assert grad(b) < 0.9 * grad(a)
    assert json.loads((blurred / "scene.json").read_text())["blurred_frames"] == list(gt_s)


def test_make_scene_replaces_an_old_folder_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    import ccl.synthetic.make as make

    out = tmp_path / "s" / "scene"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("from an older run")
    make_scene(out, cfg=SMALL, seed=0)
    assert not (out / "stale.txt").exists() and (out / "gt.h5").is_file()
    assert [p.name for p in out.parent.iterdir()] == ["scene"]  # no temporary siblings left

    def boom(*args, **kwargs):
        raise RuntimeError("killed mid-way")

    monkeypatch.setattr(make, "render_frame", boom)
    out2 = tmp_path / "t" / "scene"
    with pytest.raises(RuntimeError):
        make_scene(out2, cfg=SMALL, seed=0)
    assert not out2.exists() and list(out2.parent.iterdir()) == []


def test_bad_config_is_refused_with_the_key_named(tmp_path):
    from ccl.config import section

    with pytest.raises(ValueError, match="n_views"):
        make_scene(tmp_path / "x", cfg=replace(SMALL, n_views=1), seed=0)
    with pytest.raises(ValueError, match="seed"):
        make_scene(tmp_path / "x", cfg=SMALL, seed=-1)
    with pytest.raises(ValueError, match="n_veiws"):
        section(SyntheticConfig, {"n_veiws": 3})
    assert not (tmp_path / "x").exists()


def test_gt_file_records_kind_params_and_simulated_model(tiny_scene_dir):
    with open_h5_for_read(Path(tiny_scene_dir) / "gt.h5", kind="gt") as f:
        assert json.loads(f.attrs["params"])["n_views"] == 8
        assert json.loads(f.attrs["model"])["simulated"] is True
    with h5py.File(Path(tiny_scene_dir) / "gt.h5") as f:
        assert f.attrs["format_version"] == 1


def test_ccl_scene_loads_the_folder(tiny_scene_dir):
    from ccl.scene import SceneLoadConfig, load_image, load_scene

    root = Path(tiny_scene_dir)
    scene = load_scene(root, source="synthetic", cfg=SceneLoadConfig())
    tf = json.loads((root / "transforms.json").read_text())
    assert [c.name for c in scene.cameras] == [f"frame_{i:05d}" for i in range(8)]
    for cam, fr in zip(scene.cameras, tf["frames"], strict=True):
        assert (cam.width, cam.height) == (64, 48)
        np.testing.assert_allclose(cam.K, [[tf["fl_x"], 0, tf["cx"]], [0, tf["fl_y"], tf["cy"]], [0, 0, 1]])
        np.testing.assert_allclose(
            cam.world_to_camera, gl_to_cv_world_to_camera(fr["transform_matrix"]), atol=1e-9
        )
    assert scene.points_xyz.shape == (SyntheticConfig().n_points, 3) and scene.points_rgb.dtype == np.uint8
    img = load_image(scene.cameras[0], cfg=SceneLoadConfig())
    expect = cv2.cvtColor(cv2.imread(str(root / "images" / "frame_00000.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(img, expect)


@pytest.mark.parametrize(
    "change", [{"shadows": False}, {"highlights": 0.8}, {"supersample": 1}, {"supersample": 3}]
)
def test_appearance_options_change_images_but_not_the_ground_truth(tmp_path, change):
    cfg = replace(SMALL, n_views=2)
    base = build(tmp_path, "base", cfg)
    other = build(tmp_path, "other", replace(cfg, **change))
    _, gt_a = read_gt(base)
    _, gt_b = read_gt(other)
    for name in gt_a:
        for key in (*GT_LAYERS, "depth", "occluded_fraction"):
            np.testing.assert_array_equal(gt_a[name][key], gt_b[name][key], err_msg=f"{name}/{key}")
    a = cv2.imread(str(base / "images" / "frame_00000.png"))
    b = cv2.imread(str(other / "images" / "frame_00000.png"))
    assert (a != b).any()


def test_frame_label_gives_one_polygon_per_piece_and_skips_tiny_ones():
    from ccl.synthetic.labels import frame_label

    whole = np.full((30, 40), -1, np.int32)
    whole[2:8, 3:10] = 0  # piece 1 of object 0 (42 px)
    whole[15:25, 20:30] = 0  # piece 2 of object 0 (100 px)
    whole[27:29, 35:37] = 1  # object 1: 4 px, below the 20 px floor
    label = frame_label("frame_00003.png", whole, ["red mug", "blue book"])
    assert label["info"] == {"name": "frame_00003.png", "width": 40, "height": 30, "depth": 3, "note": ""}
    assert [o["category"] for o in label["objects"]] == ["red mug", "red mug"]
    assert [o["layer"] for o in label["objects"]] == [1.0, 2.0]
    boxes = sorted(o["bbox"] for o in label["objects"])
    assert boxes == [[3.0, 2.0, 9.0, 7.0], [20.0, 15.0, 29.0, 24.0]]
    filled = _fill([o["segmentation"] for o in label["objects"]], whole.shape)
    np.testing.assert_array_equal(filled, whole == 0)
