"""3DGS PLY (ccl.io.gaussians_ply): the layout read back by plyfile, a file written the way the original
gaussian-splatting code writes it read by ccl, the round trip of a colour field rendered, bad files."""

from __future__ import annotations

import numpy as np
import plyfile  # a dev dependency: the independent reader of the layout
import pytest

from ccl.io.gaussians_ply import gaussians_ply_made_by, read_gaussians_ply, write_gaussians_ply


def _attributes_as_3dgs_names_them(n_dc: int, n_rest: int) -> list[str]:
    """3DGS's GaussianModel.construct_list_of_attributes, spelled out independently of ccl's list."""
    names = ["x", "y", "z", "nx", "ny", "nz"]
    names += [f"f_dc_{i}" for i in range(n_dc)]
    names += [f"f_rest_{i}" for i in range(n_rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def random_gaussians(n: int, *, sh_degree: int, seed: int = 0, centre=(0.0, 0.0, 0.0), spread: float = 1.0):
    """Anisotropic, rotated Gaussians with every SH coefficient non-zero (a transposed f_rest would show)."""
    import torch

    from ccl.splat.model import Gaussians

    g = torch.Generator().manual_seed(seed)
    k = (sh_degree + 1) ** 2
    return Gaussians(
        means=torch.tensor(centre, dtype=torch.float32) + spread * torch.randn(n, 3, generator=g),
        quats=torch.randn(n, 4, generator=g),
        log_scales=torch.randn(n, 3, generator=g) * 0.3 - 3.0,
        opacity_logits=torch.randn(n, generator=g) + 1.0,
        sh0=torch.randn(n, 1, 3, generator=g) * 0.5,
        shN=torch.randn(n, k - 1, 3, generator=g) * 0.2,
    )


def _assert_same_gaussians(a, b) -> None:
    import torch

    for name, t in a.tensors().items():
        u = b.tensors()[name]
        assert u.dtype == torch.float32 and tuple(u.shape) == tuple(t.shape), name
        # float32 on both sides and the values copied unchanged: exactly equal, bit for bit
        assert torch.equal(t, u), name


@pytest.mark.parametrize("sh_degree", [0, 1, 3])
def test_layout_read_back_by_plyfile_is_the_3dgs_one(tmp_path, sh_degree):
    g = random_gaussians(40, sh_degree=sh_degree)
    path = write_gaussians_ply(tmp_path / "g.ply", g, made_by={"command": "test", "n": 40})
    ply = plyfile.PlyData.read(str(path))
    assert ply.text is False and ply.byte_order == "<"
    [vertex] = ply.elements
    assert vertex.name == "vertex" and vertex.count == 40
    k1 = (sh_degree + 1) ** 2 - 1
    assert [p.name for p in vertex.properties] == _attributes_as_3dgs_names_them(3, 3 * k1)
    assert all(p.val_dtype == "f4" for p in vertex.properties)
    v = vertex.data
    np.testing.assert_array_equal(np.stack([v["x"], v["y"], v["z"]], 1), g.means.numpy())
    np.testing.assert_array_equal(np.stack([v["nx"], v["ny"], v["nz"]], 1), 0.0)
    np.testing.assert_array_equal(np.stack([v[f"f_dc_{c}"] for c in range(3)], 1), g.sh0[:, 0].numpy())
    for c in range(3):  # channel-major: f_rest_{c * (K - 1) + k} is coefficient k + 1 of channel c
        for k in range(k1):
            np.testing.assert_array_equal(v[f"f_rest_{c * k1 + k}"], g.shN[:, k, c].numpy())
    np.testing.assert_array_equal(v["opacity"], g.opacity_logits.numpy())  # a logit, as 3DGS stores it
    np.testing.assert_array_equal(np.stack([v[f"scale_{i}"] for i in range(3)], 1), g.log_scales.numpy())
    np.testing.assert_array_equal(np.stack([v[f"rot_{i}"] for i in range(4)], 1), g.quats.numpy())  # wxyz
    assert gaussians_ply_made_by(path) == {"command": "test", "n": 40}
    assert any(c.startswith("ccl {") for c in ply.comments)


def _write_as_3dgs_saves(path, g, *, extra: bool = False) -> None:
    """What gaussian-splatting's GaussianModel.save_ply does (plyfile, features [N, K-1, 3] transposed
    to [N, 3, K-1] and flattened); `extra` adds a property ccl does not know, as Mip-Splatting does."""
    g_dc = g.sh0.transpose(1, 2).flatten(start_dim=1).numpy()
    g_rest = g.shN.transpose(1, 2).flatten(start_dim=1).numpy()
    xyz = g.means.numpy()
    cols = [xyz, np.zeros_like(xyz), g_dc, g_rest, g.opacity_logits.numpy()[:, None], g.log_scales.numpy()]
    cols.append(g.quats.numpy())
    names = _attributes_as_3dgs_names_them(g_dc.shape[1], g_rest.shape[1])
    if extra:
        cols.append(np.full((len(xyz), 1), 0.25, np.float32))
        names.append("filter_3D")
    table = np.concatenate(cols, axis=1)
    el = np.empty(len(xyz), dtype=[(n, "f4") for n in names])
    el[:] = list(map(tuple, table))
    plyfile.PlyData([plyfile.PlyElement.describe(el, "vertex")]).write(str(path))


@pytest.mark.parametrize("extra", [False, True])
def test_reads_a_file_written_as_gaussian_splatting_writes_it(tmp_path, extra):
    g = random_gaussians(30, sh_degree=3, seed=1)
    _write_as_3dgs_saves(tmp_path / "point_cloud.ply", g, extra=extra)
    _assert_same_gaussians(g, read_gaussians_ply(tmp_path / "point_cloud.ply"))


def test_round_trip_of_a_colour_field_renders_the_same(tiny_scene, tmp_path):
    import torch

    from ccl.splat.checkpoint import load_rgb_field, save_rgb_field
    from ccl.splat.model import init_gaussians
    from ccl.splat.render import render_rgb

    g = init_gaussians(tiny_scene.points_xyz, tiny_scene.points_rgb, sh_degree=3, init_opacity=0.7,
                       init_scale=1.5)  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    g.shN = torch.randn(g.shN.shape, generator=gen) * 0.1  # view-dependent colour, so f_rest matters
    g.log_scales = g.log_scales + torch.randn(g.log_scales.shape, generator=gen) * 0.3  # anisotropic
    g.quats = torch.randn(g.quats.shape, generator=gen)
    field = save_rgb_field(tmp_path / "rgb.safetensors", g, header={"scene": "tiny"})
    original, _ = load_rgb_field(field)
    ply = write_gaussians_ply(tmp_path / "rgb.ply", original, made_by={"field": str(field)})
    back = read_gaussians_ply(ply)
    _assert_same_gaussians(original, back)
    for cam in tiny_scene.cameras[:: max(1, len(tiny_scene.cameras) // 3)]:
        want = render_rgb(original, cam, background=(1.0, 1.0, 1.0))
        got = render_rgb(back, cam, background=(1.0, 1.0, 1.0))
        assert want.std() > 0.01  # the view shows something
        # tolerance 0: float32 parameters stored as float32 are the same numbers, and the CPU kernel
        # renders the same inputs to the same pixels (each tile is blended by one thread, in depth order)
        np.testing.assert_array_equal(got, want)


def test_a_selection_writes_only_the_selected_gaussians(tmp_path):
    g = random_gaussians(50, sh_degree=1, seed=2)
    keep = np.zeros(50, bool)
    keep[[3, 7, 8, 41]] = True
    path = write_gaussians_ply(tmp_path / "sel.ply", g, keep=keep)
    back = read_gaussians_ply(path)
    assert len(back) == 4
    np.testing.assert_array_equal(back.means.numpy(), g.means.numpy()[keep])
    np.testing.assert_array_equal(back.shN.numpy(), g.shN.numpy()[keep])
    assert plyfile.PlyData.read(str(path))["vertex"].count == 4


def test_an_empty_selection_is_refused_and_nothing_written(tmp_path):
    g = random_gaussians(5, sh_degree=0)
    with pytest.raises(ValueError, match="no Gaussian to write.*selection is empty"):
        write_gaussians_ply(tmp_path / "none.ply", g, keep=np.zeros(5, bool))
    assert not (tmp_path / "none.ply").exists()
    with pytest.raises(ValueError, match="keep has 3 entries for 5 Gaussians"):
        write_gaussians_ply(tmp_path / "x.ply", g, keep=np.ones(3, bool))


def _bad_files(tmp_path):
    g = random_gaussians(6, sh_degree=1, seed=3)
    good = write_gaussians_ply(tmp_path / "good.ply", g).read_bytes()
    head, body = good.split(b"end_header\n", 1)
    yield "text.ply", b"hello\n", "not a PLY file"
    yield "ascii.ply", head.replace(b"binary_little_endian", b"ascii") + b"end_header\n", "format 'ascii'"
    yield "cut.ply", head + b"end_header\n" + body[:-5], "truncated"
    yield (
        "no_rot.ply",
        head.replace(b"property float rot_3\n", b"") + b"end_header\n" + body,
        "lacks \\['rot_3'\\]",
    )
    rest = head.replace(b"property float f_rest_8\n", b"")
    yield "rest.ply", rest + b"end_header\n" + body, "8 f_rest_\\* properties"
    pts = b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nend_header\n" + bytes(4)
    yield "points.ply", pts, "lacks"
    nan = bytearray(body)
    nan[0:4] = np.float32(np.nan).tobytes()  # x of the first Gaussian
    yield "nan.ply", head + b"end_header\n" + bytes(nan), "NaN"


def test_bad_files_are_refused_naming_the_file_and_what_is_wrong(tmp_path):
    for name, data, message in _bad_files(tmp_path):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match=message) as e:
            read_gaussians_ply(path)
        assert str(path) in str(e.value), name
