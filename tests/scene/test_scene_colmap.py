"""COLMAP models: our reader against known cameras and against pycolmap; supported models, undistortion
and the refusals of bad input."""

from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import pycolmap
import pytest
from scene_testkit import K_GT, POINT, H, W, gt_poses, make_colmap_scene, points, project, write_image

from ccl.scene import SceneLoadConfig, load_image, load_scene, ops
from ccl.scene.colmap import ColmapCamera, ColmapImage, ColmapTracks, read_model, write_model

CFG = SceneLoadConfig()
# Geometry is float64 end to end; 1e-9 px leaves room for the text format's 17-digit round trip.
PX_TOL = 1e-9


@pytest.mark.parametrize("fmt", ["txt", "bin"])
def test_known_point_projects_to_the_same_pixel(tmp_path, fmt):
    root = make_colmap_scene(tmp_path / "scene", fmt=fmt)
    scene = load_scene(root, source="colmap", cfg=CFG)

    assert scene.frame_names == ["frame_00001", "frame_00002", "frame_00003", "frame_00004"]
    assert scene.root == root.absolute() and scene.name == "scene"
    for cam, w2c in zip(scene.cameras, gt_poses(4), strict=True):
        assert (cam.width, cam.height) == (W, H) and cam.distortion is None
        uv, z = cam.project(POINT)
        assert z[0] > 0
        np.testing.assert_allclose(uv[0], project(K_GT, w2c, POINT), atol=PX_TOL)
        np.testing.assert_allclose(cam.K, K_GT, atol=PX_TOL)
    xyz, rgb = points()
    assert scene.points_xyz.dtype == np.float32 and scene.points_rgb.dtype == np.uint8
    np.testing.assert_array_equal(scene.points_xyz, xyz)
    np.testing.assert_array_equal(scene.points_rgb, rgb)


def _pycolmap_reconstruction(model: str, params: list[float]) -> pycolmap.Reconstruction:
    rec = pycolmap.Reconstruction()
    cam = pycolmap.Camera.create_from_model_name(1, model, 70.0, W, H)
    cam.params = params
    rec.add_camera_with_trivial_rig(cam)
    for i, w2c in enumerate(gt_poses(3)):
        im = pycolmap.Image(name=f"frame_{i:05d}.jpg", camera_id=1, image_id=i + 1)
        rec.add_image_with_trivial_frame(im, pycolmap.Rigid3d(w2c[:3, :4]))
    xyz, rgb = points(5)
    for p, c in zip(xyz, rgb, strict=True):
        rec.add_point3D(p.astype(np.float64), pycolmap.Track(), c)
    return rec


@pytest.mark.parametrize("fmt", ["txt", "bin"])
def test_reader_agrees_with_pycolmap(tmp_path, fmt):
    rec = _pycolmap_reconstruction("OPENCV", [70, 72, 31, 25, -0.1, 0.02, 0.001, -0.002])
    (rec.write_text if fmt == "txt" else rec.write_binary)(str(tmp_path))

    model = read_model(tmp_path)

    assert model.format == fmt
    cam = model.cameras[1]
    assert (cam.model, cam.width, cam.height) == ("OPENCV", W, H)
    np.testing.assert_allclose(cam.params, rec.cameras[1].params)
    for iid, im in rec.images.items():
        ours = model.images[iid]
        assert ours.name == im.name and ours.camera_id == im.camera_id
        w2c = ops.pose_matrix(ops.qvec_to_rotmat(ours.qvec), ours.tvec)
        np.testing.assert_allclose(w2c[:3], im.cam_from_world().matrix(), atol=1e-12)
    xyz = np.array([p.xyz for p in rec.points3D.values()])
    rgb = np.array([p.color for p in rec.points3D.values()])
    ours, theirs = np.argsort(model.points_xyz[:, 0]), np.argsort(xyz[:, 0])  # pycolmap's order is its own
    np.testing.assert_allclose(model.points_xyz[ours], xyz[theirs])
    np.testing.assert_array_equal(model.points_rgb[ours], rgb[theirs])


@pytest.mark.parametrize("fmt", ["txt", "bin"])
def test_pycolmap_reads_what_our_writer_writes(tmp_path, fmt):
    make_colmap_scene(tmp_path, fmt=fmt)
    rec = pycolmap.Reconstruction()
    rec.read(str(tmp_path / "sparse" / "0"))
    assert rec.num_images() == 4 and rec.num_points3D() == 20
    for w2c, name in zip(gt_poses(4), [f"frame_{i:05d}.jpg" for i in range(1, 5)], strict=True):
        im = rec.find_image_with_name(name)
        np.testing.assert_allclose(im.cam_from_world().matrix(), w2c[:3], atol=1e-12)
    np.testing.assert_allclose(rec.cameras[1].calibration_matrix(), K_GT)


@pytest.mark.parametrize("fmt", ["txt", "bin"])
def test_pycolmap_reads_the_tracks_our_writer_writes(tmp_path, fmt):
    """Each point seen by the images its index selects: POINTS2D at its projection, tracks that point back."""
    poses = gt_poses(3)
    xyz, rgb = points(6)
    cams = [ColmapCamera(1, "PINHOLE", W, H, np.array([K_GT[0, 0], K_GT[1, 1], K_GT[0, 2], K_GT[1, 2]]))]
    imgs = [
        ColmapImage(i + 1, ops.rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3], 1, f"frame_{i + 1:05d}.jpg")
        for i, w2c in enumerate(poses)
    ]
    seen = [(p, i) for p in range(len(xyz)) for i in range(3) if (p + i) % 3 != 0]  # point 0: images 2, 3
    obs = ColmapTracks(
        point_index=np.array([p for p, _ in seen]),
        image_id=np.array([i + 1 for _, i in seen]),
        xy=np.array([project(K_GT, poses[i], xyz[p].astype(np.float64)) for p, i in seen]),
    )
    write_model(tmp_path, cams, imgs[::-1], xyz, rgb, format=fmt, tracks=obs, points_error=np.full(6, 0.25))

    rec = pycolmap.Reconstruction()
    rec.read(str(tmp_path))
    assert rec.num_points3D() == 6 and rec.compute_num_observations() == len(seen)
    for pid, pt in rec.points3D.items():
        p = pid - 1
        assert sorted(e.image_id for e in pt.track.elements) == [i + 1 for q, i in seen if q == p]
        assert pt.error == pytest.approx(0.25)
        np.testing.assert_array_equal(pt.xyz, xyz[p].astype(np.float64))
        for e in pt.track.elements:
            p2d = rec.images[e.image_id].points2D[e.point2D_idx]
            assert p2d.point3D_id == pid
            np.testing.assert_allclose(p2d.xy, project(K_GT, poses[e.image_id - 1], pt.xyz), atol=PX_TOL)
    ours = read_model(tmp_path)  # the reader skips the observations and still reads every point
    np.testing.assert_array_equal(ours.points_xyz, xyz.astype(np.float64))
    assert [ours.images[i + 1].name for i in range(3)] == [im.name for im in imgs]


def test_tracks_naming_an_unwritten_image_are_refused(tmp_path):
    cams = [ColmapCamera(1, "PINHOLE", W, H, np.array([70.0, 70, 32, 24]))]
    imgs = [ColmapImage(1, np.array([1.0, 0, 0, 0]), np.zeros(3), 1, "a.png")]
    obs = ColmapTracks(np.array([0]), np.array([2]), np.array([[3.0, 4.0]]))
    with pytest.raises(ValueError, match=r"ColmapTracks.*images other than \[1\]"):
        write_model(tmp_path, cams, imgs, np.zeros((1, 3)), np.zeros((1, 3)), tracks=obs, format="bin")


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("SIMPLE_PINHOLE", [70, 31, 25]),
        ("PINHOLE", [70, 72, 31, 25]),
        ("SIMPLE_RADIAL", [70, 31, 25, -0.08]),
        ("RADIAL", [70, 31, 25, -0.08, 0.01]),
        ("OPENCV", [70, 72, 31, 25, -0.1, 0.02, 0.001, -0.002]),
    ],
)
def test_supported_models_distort_as_colmap_does(model, params):
    """Our (K, OpenCV coefficients) reproduce COLMAP's own projection of camera-space points."""
    cam = pycolmap.Camera.create_from_model_name(1, model, 70.0, W, H)
    cam.params = params
    K, coeffs = ops.colmap_intrinsics(model, np.array(params, float))
    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(-0.4, 0.4, (50, 2)), np.ones(50)])

    pinhole = (pts @ K.T)[:, :2]
    ours = pinhole if coeffs is None else ops.distort_points(pinhole, K, coeffs)

    np.testing.assert_allclose(ours, cam.img_from_cam(pts), atol=1e-9)
    np.testing.assert_allclose(K, cam.calibration_matrix())


def _distorted_scene(tmp_path, k1: float, fmt: str = "txt"):
    """A COLMAP scene whose one image shows, through radial distortion k1, a vertical line at u = 6.5
    and a Gaussian dot at (44.5, 30.5) of the pinhole image."""
    params = [K_GT[0, 0], K_GT[1, 1], K_GT[0, 2], K_GT[1, 2], k1, 0.0, 0.0, 0.0]
    root = make_colmap_scene(tmp_path / "scene", fmt=fmt, model="OPENCV", params=params, n=1, ext=".png")
    # Each pixel centre of the distorted file, undistorted to pinhole coordinates (OpenCV's pixel
    # centres are at integers, ours at +0.5: shift by half a pixel on the way in and out).
    jj, ii = np.mgrid[0:H, 0:W]
    centres = np.stack([ii.ravel() + 0.5, jj.ravel() + 0.5], 1)
    K_cv = K_GT.copy()
    K_cv[:2, 2] -= 0.5
    und = cv2.undistortPoints(
        (centres - 0.5)[:, None, :], K_cv, np.array([k1, 0, 0, 0, 0.0]), P=K_cv,
        criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12),
    )[:, 0, :] + 0.5  # fmt: skip
    u, v = und[:, 0].reshape(H, W), und[:, 1].reshape(H, W)
    line = np.exp(-0.5 * ((u - 6.5) / 0.8) ** 2)
    dot = np.exp(-0.5 * (((u - 44.5) ** 2 + (v - 30.5) ** 2) / 1.5**2))
    img = np.clip(np.stack([line, dot, np.zeros_like(u)], 2) * 255, 0, 255).round().astype(np.uint8)
    cv2.imwrite(str(root / "images" / "frame_00001.png"), img[:, :, ::-1])
    return root, img


def _row_peaks(channel: np.ndarray) -> np.ndarray:
    """Sub-pixel column of each row's maximum (centroid of the 5 pixels around it, in pixel-centre coords)."""
    c = channel.astype(np.float64)
    out = []
    for row in c[4:-4]:
        j = int(np.argmax(row))
        lo, hi = max(j - 2, 0), min(j + 3, len(row))
        out.append(np.sum(row[lo:hi] * (np.arange(lo, hi) + 0.5)) / row[lo:hi].sum())
    return np.array(out)


def test_undistortion_straightens_a_line_and_puts_a_point_back(tmp_path):
    root, distorted = _distorted_scene(tmp_path, k1=-0.35)
    scene = load_scene(root, source="colmap", cfg=CFG)
    cam = scene.cameras[0]
    assert cam.distortion is not None
    np.testing.assert_allclose(cam.K, K_GT)

    img = load_image(cam, cfg=CFG, cache_dir=tmp_path / "cache")

    # The line is curved in the file and straight at u = 6.5 once undistorted.
    assert np.ptp(_row_peaks(distorted[:, :, 0])) > 0.5
    assert abs(_row_peaks(distorted[:, :, 0]).mean() - 6.5) > 1.0
    np.testing.assert_allclose(_row_peaks(img[:, :, 0]), 6.5, atol=0.15)
    # The dot's centroid lands where the pinhole camera puts it.
    g = img[:, :, 1].astype(np.float64)
    g[g < 20] = 0
    jj, ii = np.mgrid[0:H, 0:W]
    centroid = np.array([(g * (ii + 0.5)).sum(), (g * (jj + 0.5)).sum()]) / g.sum()
    np.testing.assert_allclose(centroid, [44.5, 30.5], atol=0.1)
    assert list((tmp_path / "cache").rglob("*.png")), "the undistorted image goes to the cache"


def test_images_stored_downscaled_by_an_integer_factor_are_accepted(tmp_path):
    """3DGS's images_2/ layout: the files are half the model's size; K follows."""
    root = make_colmap_scene(tmp_path / "scene", image_wh=(W // 2, H // 2))
    scene = load_scene(root, source="colmap", cfg=CFG)
    for cam, w2c in zip(scene.cameras, gt_poses(4), strict=True):
        assert (cam.width, cam.height) == (W // 2, H // 2)
        np.testing.assert_allclose(cam.project(POINT)[0][0], project(K_GT, w2c, POINT) / 2, atol=PX_TOL)


# --- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["txt", "bin"])
@pytest.mark.parametrize("model", ["OPENCV_FISHEYE", "FULL_OPENCV", "FOV"])
def test_unsupported_camera_model_is_refused_with_the_fix(tmp_path, fmt, model):
    n_params = ops.COLMAP_MODELS[ops.COLMAP_MODEL_IDS[model]][1]
    params = [70.0, 72.0, 31.0, 25.0, 0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0][:n_params]
    root = make_colmap_scene(tmp_path / "scene", fmt=fmt, model=model, params=params)
    with pytest.raises(ValueError) as e:
        load_scene(root, source="colmap", cfg=CFG)
    msg = str(e.value)
    for word in (f"cameras.{fmt}", "camera 1", model, "image_undistorter"):
        assert word in msg


def test_missing_scene_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*scene folder not found.*`path`"):
        load_scene(tmp_path / "nowhere", source="colmap", cfg=CFG)


@pytest.mark.parametrize("empty", [True, False])
def test_scene_folder_without_images(tmp_path, empty):
    root = make_colmap_scene(tmp_path / "scene")
    shutil.rmtree(root / "images")
    if empty:
        (root / "images").mkdir()
    with pytest.raises(FileNotFoundError) as e:
        load_scene(root, source="colmap", cfg=CFG)
    assert str(root / "images") in str(e.value)
    assert ("holds no image files" if empty else "does not exist") in str(e.value)
    assert "`images:`" in str(e.value)


def test_missing_model_folder(tmp_path):
    root = make_colmap_scene(tmp_path / "scene")
    with pytest.raises(FileNotFoundError, match=r"sparse/1.*no COLMAP model.*colmap_model"):
        load_scene(root, source="colmap", cfg=SceneLoadConfig(colmap_model="sparse/1"))


def test_image_whose_size_disagrees_with_its_camera(tmp_path):
    root = make_colmap_scene(tmp_path / "scene")
    write_image(root / "images" / "frame_00003.jpg", W - 5, H)
    with pytest.raises(ValueError) as e:
        load_scene(root, source="colmap", cfg=CFG)
    msg = str(e.value)
    for word in ("frame_00003.jpg", f"{W - 5}x{H}", f"{W}x{H}", "cameras.txt", "1 of 4 images"):
        assert word in msg


def test_missing_image_files_are_skipped_with_one_warning(tmp_path, caplog):
    root = make_colmap_scene(tmp_path / "scene")
    (root / "images" / "frame_00002.jpg").unlink()
    (root / "images" / "frame_00004.jpg").unlink()
    with caplog.at_level(logging.WARNING, logger="ccl.scene"):
        scene = load_scene(root, source="colmap", cfg=CFG)
    assert scene.frame_names == ["frame_00001", "frame_00003"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 of 4 images are missing" in warnings[0].getMessage()


def test_truncated_binary_model_names_the_file(tmp_path):
    root = make_colmap_scene(tmp_path / "scene", fmt="bin")
    f = root / "sparse" / "0" / "images.bin"
    f.write_bytes(f.read_bytes()[:50])
    with pytest.raises(ValueError, match=r"images\.bin.*truncated"):
        load_scene(root, source="colmap", cfg=CFG)


def test_image_referring_to_an_undefined_camera(tmp_path):
    cams = [ColmapCamera(1, "PINHOLE", W, H, np.array([70.0, 70, 32, 24]))]
    imgs = [ColmapImage(1, np.array([1.0, 0, 0, 0]), np.zeros(3), 7, "a.png")]
    write_model(tmp_path / "sparse" / "0", cams, imgs, np.zeros((0, 3)), np.zeros((0, 3)))
    write_image(tmp_path / "images" / "a.png")
    with pytest.raises(ValueError, match=r"images\.txt.*image 1 \(a\.png\).*camera 7"):
        load_scene(tmp_path, source="colmap", cfg=CFG)


def test_wrong_parameter_count_names_the_camera(tmp_path):
    root = make_colmap_scene(tmp_path / "scene", model="PINHOLE", params=[70.0, 31.0, 25.0])
    with pytest.raises(
        ValueError, match=r"cameras\.txt: camera 1 \(PINHOLE\) has 3 parameters, the model has 4"
    ):
        load_scene(root, source="colmap", cfg=CFG)
