"""A tiny results/{scene} folder with a hand-built language field whose answer is known.

Each Gaussian sits at a point of the synthetic scene's points3d.ply and carries the class of the object
it lies on (read from gt.h5 by projecting it into the views where it is visible): class 0 for the
table/room (prototype: the text 'table'), class k + 1 for category k. The decoder maps class codes back to their class exactly, and
prototype k + 1 is the text embedding of category k, so a query of a category's name picks its class.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

N_FEATURE = 8
BACKGROUND = "table"  # the text of class 0 (everything that is not an object)


def _point_categories(scene, gt_path) -> np.ndarray:
    """Category id of every sparse point (−1 = none), from the first view where it is visible."""
    import h5py

    xyz = scene.points_xyz.astype(np.float64)
    cat = np.full(len(xyz), -1, np.int64)
    seen = np.zeros(len(xyz), bool)
    with h5py.File(gt_path, "r") as f:
        for cam in scene.cameras:
            uv, z = cam.project(xyz)
            col = np.floor(uv[:, 0]).astype(int)
            row = np.floor(uv[:, 1]).astype(int)
            ok = (~seen) & (z > 0) & (col >= 0) & (col < cam.width) & (row >= 0) & (row < cam.height)
            depth = f[cam.name]["depth"][()]
            cid = f[cam.name]["category_id"][()]
            idx = np.nonzero(ok)[0]
            vis = np.abs(depth[row[idx], col[idx]] - z[idx]) < 0.03
            idx = idx[vis]
            cat[idx] = cid[row[idx], col[idx]]
            seen[idx] = True
    return cat


def _object_masks(scene, gt_path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Frame name -> ([H, W] int32 segmentation, [M] category of each mask): mask i covers the i-th object
    category in view (in id order), -1 elsewhere (the background has no mask, as at the synthetic scene's
    finest scale)."""
    import h5py

    out = {}
    with h5py.File(gt_path, "r") as f:
        for name in scene.frame_names:
            cid = f[name]["category_id"][()]
            present = np.unique(cid[cid >= 0])
            seg = np.full(cid.shape, -1, np.int32)
            for i, c in enumerate(present):
                seg[cid == c] = i
            out[name] = (seg, present.astype(np.int64))
    return out


def _frame_masks(name: str, seg: np.ndarray):
    from ccl.io.masks_h5 import FrameMasks, boxes_from_masks

    m = int(seg.max()) + 1
    masks = seg[None] == np.arange(m, dtype=np.int32)[:, None, None]
    one = np.ones(m, np.float32)
    return FrameMasks(name, seg, one, one.copy(), one.copy(), masks.sum(axis=(1, 2)).astype(np.int64),
                      boxes_from_masks(masks).astype(np.float32), np.full(m, 2, np.int8))  # fmt: skip


def build_language_field(scene, classes: np.ndarray, n_classes: int, scene_name: str):
    import torch

    from ccl.splat.checkpoint import LanguageField
    from ccl.splat.decoder import build_decoder
    from ccl.splat.model import init_gaussians

    g = init_gaussians(scene.points_xyz, scene.points_rgb, sh_degree=0, init_opacity=0.9, init_scale=1.5)
    gen = torch.Generator().manual_seed(0)
    codes = torch.nn.functional.normalize(torch.randn(n_classes, N_FEATURE, generator=gen), dim=1)
    features = codes[torch.as_tensor(classes)]
    dec = build_decoder(N_FEATURE, n_classes, n_classes)
    with torch.no_grad():
        dec[0].weight.copy_(10 * codes)  # logit k = ReLU(10 <code_k, f>): largest for f = code_k
        dec[0].bias.zero_()
        dec[2].weight.copy_(torch.eye(n_classes))
        dec[2].bias.zero_()
    header = {"scene": scene_name, "config": {}, "iteration": 0, "device": "cpu", "seed": 0}
    return LanguageField(g, features, dec, header), header


@pytest.fixture(scope="session")
def tiny_results(tmp_path_factory, tiny_scene_dir):
    """results/tiny with scene.json, features/ and masks/ (a mask per object in view, from the ground truth),
    and its one run, seed0/ (`run_dir`), with gaussians/full/{sp,wp}.safetensors and codebook/full/{sp,wp}.h5
    (each mask indexing its object's class)."""
    from ccl.config import as_params
    from ccl.features import FeaturesConfig, encode_text
    from ccl.io.codebook_h5 import write_codebook
    from ccl.io.features_h5 import features_writer
    from ccl.io.masks_h5 import write_masks
    from ccl.scene import SceneLoadConfig, load_scene_from_manifest, write_manifest
    from ccl.splat.checkpoint import save_language_field

    root = tmp_path_factory.mktemp("results")
    scene_dir = root / "results" / "tiny"
    run_dir = scene_dir / "seed0"
    manifest = write_manifest(
        scene_dir / "scene.json", name="tiny", entry={"source": "synthetic", "protocol": "lerf_ovs"},
        source_dir=tiny_scene_dir, cfg=SceneLoadConfig(),
    )  # fmt: skip
    scene = load_scene_from_manifest(manifest, cfg=SceneLoadConfig())
    gt = tiny_scene_dir / "gt.h5"
    import h5py

    with h5py.File(gt, "r") as f:
        categories = json.loads(f.attrs["categories"])
    classes = _point_categories(scene, gt) + 1  # 0 = no object
    n = len(categories) + 1
    text = encode_text([BACKGROUND, *categories], cfg=FeaturesConfig())
    prototypes = np.asarray(text, dtype=np.float32)  # class 0: the background's text
    field, header = build_language_field(scene, classes, n, "tiny")
    for scale in ("sp", "wp"):
        save_language_field(run_dir / "gaussians" / "full" / f"{scale}.safetensors", field, header=header)
        # what the workflow's clip_features leaves: the text encoder of every query on this scene
        with features_writer(
            scene_dir / "features" / f"{scale}.h5", dim=prototypes.shape[1], frame_names=scene.frame_names,
            params={**as_params(FeaturesConfig()), "seed": 0, "device": "cpu"}, model={"backend": "sim"},
        ) as writer:  # fmt: skip
            for name in scene.frame_names:
                writer.add(name, np.zeros((0, prototypes.shape[1]), np.float32))
        masks = _object_masks(scene, gt)
        write_masks(
            scene_dir / "masks" / f"{scale}.h5", (_frame_masks(n, seg) for n, (seg, _) in masks.items()),
            frame_names=scene.frame_names, scale=scale, params={}, model={"backend": "ground truth"},
        )  # fmt: skip
        # each object's mask taught as its class (its category + 1), the background left without a mask
        write_codebook(
            run_dir / "codebook" / "full" / f"{scale}.h5", variant="full", prototypes=prototypes,
            prototype_index={n: categories + 1 for n, (_, categories) in masks.items()},
            frame_names=scene.frame_names, params={}, model={}, inputs={},
        )  # fmt: skip
    yield {
        "scene_dir": scene_dir,
        "run_dir": run_dir,
        "root": root,
        "categories": categories,
        "classes": classes,
        "prototypes": prototypes,
    }
    shutil.rmtree(root, ignore_errors=True)


def _copy_with_colour_field(src, dst, *, language: bool):
    """`src` (a tiny results/<scene>) copied to `dst` with seed0/gaussians/rgb.safetensors: the sp
    language field's Gaussians, as the frozen language stage leaves them (one geometry for both fields)."""
    from ccl.splat.checkpoint import load_language_field, save_rgb_field

    if language:
        shutil.copytree(src, dst)
    else:
        dst.mkdir(parents=True)
        shutil.copy(src / "scene.json", dst / "scene.json")
    field = load_language_field(src / "seed0" / "gaussians" / "full" / "sp.safetensors")
    header = {
        "scene": "tiny",
        "config": {"background": [1.0, 1.0, 1.0]},
        "iteration": 0,
        "device": "cpu",
        "seed": 0,
    }
    save_rgb_field(dst / "seed0" / "gaussians" / "rgb.safetensors", field.gaussians, header=header)
    return dst


@pytest.fixture(scope="session")
def tiny_view_results(tiny_results, tmp_path_factory):
    """tiny_results with a colour field: what `ccl view` opens (language fields and their codebooks)."""
    root = tmp_path_factory.mktemp("view_results")
    scene_dir = _copy_with_colour_field(tiny_results["scene_dir"], root / "tiny", language=True)
    yield {**tiny_results, "scene_dir": scene_dir, "run_dir": scene_dir / "seed0"}
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_colour_only_results(tiny_results, tmp_path_factory):
    """A results folder with the manifest and the colour field only (no language field, no queries)."""
    root = tmp_path_factory.mktemp("colour_only")
    yield _copy_with_colour_field(tiny_results["scene_dir"], root / "tiny", language=False)
    shutil.rmtree(root, ignore_errors=True)
