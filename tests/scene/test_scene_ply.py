"""PLY points: ASCII and binary little-endian, extra properties and elements, and bad files."""

from __future__ import annotations

import numpy as np
import pytest

from ccl.scene.ply import read_ply_points, write_ply_points


@pytest.mark.parametrize("binary", [False, True])
def test_round_trip(tmp_path, binary):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(30, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (30, 3), dtype=np.uint8)
    got_xyz, got_rgb = read_ply_points(write_ply_points(tmp_path / "p.ply", xyz, rgb, binary=binary))
    np.testing.assert_array_equal(got_xyz, xyz)
    np.testing.assert_array_equal(got_rgb, rgb)


def test_3dgs_style_binary_with_normals_and_a_face_element_after(tmp_path):
    """3DGS's points3d.ply: x y z nx ny nz red green blue (doubles for position)."""
    xyz = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.25]])
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment made by hand\nelement vertex 2\n"
        "property double x\nproperty double y\nproperty double z\n"
        "property float nx\nproperty float ny\nproperty float nz\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        "element face 0\nproperty list uchar int vertex_indices\nend_header\n"
    )
    rec = np.zeros(2, dtype=[("p", "<f8", 3), ("n", "<f4", 3), ("c", "u1", 3)])
    rec["p"], rec["c"] = xyz, [[10, 20, 30], [40, 50, 60]]
    (tmp_path / "p.ply").write_bytes(header.encode() + rec.tobytes())
    got_xyz, got_rgb = read_ply_points(tmp_path / "p.ply")
    np.testing.assert_array_equal(got_xyz, xyz.astype(np.float32))
    np.testing.assert_array_equal(got_rgb, [[10, 20, 30], [40, 50, 60]])


def test_ascii_without_colours_is_grey(tmp_path):
    (tmp_path / "p.ply").write_text(
        "ply\r\nformat ascii 1.0\r\nelement vertex 1\r\nproperty float x\r\nproperty float y\r\n"
        "property float z\r\nend_header\r\n0.5 1.5 2.5\r\n"
    )
    xyz, rgb = read_ply_points(tmp_path / "p.ply")
    np.testing.assert_array_equal(xyz, [[0.5, 1.5, 2.5]])
    np.testing.assert_array_equal(rgb, [[128, 128, 128]])


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("solid cube\n", "not a PLY file"),
        ("ply\nformat binary_big_endian 1.0\nelement vertex 0\nend_header\n", "binary_big_endian"),
        ("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n", "lacks ['y', 'z']"),
        ("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
         "end_header\n1 2 3\n", "expected 2 vertex lines"),
    ],
)  # fmt: skip
def test_bad_files_name_the_file_and_the_problem(tmp_path, text, words):
    (tmp_path / "bad.ply").write_text(text)
    with pytest.raises(ValueError) as e:
        read_ply_points(tmp_path / "bad.ply")
    assert "bad.ply" in str(e.value) and words in str(e.value)
