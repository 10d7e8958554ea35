"""The language field: it learns index maps it can represent, resumes exactly, refuses bad index maps."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from language_teacher import quadrant_teacher

from ccl.scene import SceneLoadConfig, load_image, load_scene
from ccl.splat.checkpoint import load_language_field, load_train_state, partial_path, save_rgb_field
from ccl.splat.config import LanguageConfig, RgbConfig
from ccl.splat.train_language import fit_language

N_CLASSES = 4
FAST = LanguageConfig(iterations=150, holdout_every=4, checkpoint_every=50)


# one thread: bit-for-bit reproducible training (see tests/conftest.py), and faster on a busy CPU
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def teacher(tiny_scene_dir):
    """Frozen geometry at the tiny scene's points and index maps the field can represent exactly
    (language_teacher.quadrant_teacher)."""
    scene = load_scene(tiny_scene_dir, source="synthetic", cfg=SceneLoadConfig(), name="tiny")
    g, maps = quadrant_teacher(scene, scene.points_xyz[::4], scene.points_rgb[::4], n_classes=N_CLASSES)
    return scene, g, maps


def test_language_field_learns_its_index_maps(teacher):
    scene, g, maps = teacher
    assert 0.5 < np.mean([(m >= 0).mean() for m in maps]) < 1.0  # a real share of −1 pixels to ignore
    lf, m = fit_language(scene.cameras, maps, n_classes=N_CLASSES, gaussians=g, cfg=FAST, seed=0)
    assert m.accuracy_all >= 0.9, m
    assert m.accuracy_heldout >= 0.85, m
    assert lf.n_classes == N_CLASSES and lf.features.shape == (len(g), 8) and not m.joint
    assert m.n_gaussians == len(g) and set(m.heldout_views) == {scene.cameras[0].name, scene.cameras[4].name}
    for k, v in g.tensors().items():  # geometry frozen
        assert torch.equal(getattr(lf.gaussians, k), v)


def test_interrupted_language_run_resumes_to_the_same_result(teacher, tmp_path):
    scene, g, maps = teacher
    cfg = dataclasses.replace(FAST, iterations=30, checkpoint_every=10)

    def fit(state, callback=None):
        return fit_language(
            scene.cameras, maps, n_classes=N_CLASSES, gaussians=g, cfg=cfg, seed=0,
            state_path=state, fingerprint="f", callback=callback,
        )  # fmt: skip

    lf_full, _ = fit(partial_path(tmp_path / "a" / "sp.safetensors"))

    def kill(step):
        if step == 15:
            raise KeyboardInterrupt

    state = partial_path(tmp_path / "b" / "sp.safetensors")
    with pytest.raises(KeyboardInterrupt):
        fit(state, kill)
    assert load_train_state(state, fingerprint="f").iteration == 10
    lf_res, m = fit(state)
    assert m.resumed_from == 10
    assert torch.equal(lf_res.features, lf_full.features)
    for (k, a), b in zip(
        lf_res.decoder.state_dict().items(), lf_full.decoder.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k


def test_index_map_of_the_wrong_size_names_frame_and_sizes(teacher):
    scene, g, maps = teacher
    bad = list(maps)
    bad[3] = bad[3][:, :-2]
    name = scene.cameras[3].name
    with pytest.raises(
        ValueError, match=rf"frame {name}: index map is 62x48 \(W x H\) but the camera is 64x48"
    ):
        fit_language(scene.cameras, bad, n_classes=N_CLASSES, gaussians=g, cfg=FAST, seed=0)


def test_unusable_index_maps_are_refused(teacher):
    scene, g, maps = teacher
    empty = [np.full_like(m, -1) for m in maps]
    with pytest.raises(ValueError, match="no training view has a single labelled pixel"):
        fit_language(scene.cameras, empty, n_classes=N_CLASSES, gaussians=g, cfg=FAST, seed=0)
    with pytest.raises(ValueError, match=r"values -?\d+\.\.3 outside -1\.\.2 \(n_classes = 3\)"):
        fit_language(scene.cameras, maps, n_classes=3, gaussians=g, cfg=FAST, seed=0)
    with pytest.raises(ValueError, match="dtype float"):
        fit_language(
            scene.cameras, [m.astype(float) for m in maps], n_classes=4, gaussians=g, cfg=FAST, seed=0
        )


def test_joint_training_fits_colour_and_language_together(teacher, tiny_scene_dir):
    scene, _, maps = teacher
    images = [load_image(c, cfg=SceneLoadConfig()) for c in scene.cameras]
    rgb_cfg = RgbConfig(
        iterations=25, holdout_every=4, refine_start_iter=5, refine_every=10, reset_every=1000
    )
    lf, m = fit_language(
        scene.cameras, maps, n_classes=N_CLASSES, images=images, points_xyz=scene.points_xyz[::4],
        points_rgb=scene.points_rgb[::4], cfg=dataclasses.replace(FAST, joint=True), rgb_cfg=rgb_cfg, seed=0,
    )  # fmt: skip
    assert m.joint and m.iterations == 25 and m.psnr_heldout is not None and m.psnr_heldout > 12
    assert len(lf.gaussians) > 1000  # densified: the geometry is its own, and features follow it
    assert lf.features.shape == (len(lf.gaussians), 8)
    assert m.accuracy_all > 0.4  # 25 steps: well above chance (0.25), not converged


def test_stage_entry_reads_masks_and_codebook(teacher, tiny_scene_dir, tmp_path):
    """The rule's function end to end on files laid out as docs/contracts.md says."""
    from ccl.io import write_h5
    from ccl.io.codebook_h5 import write_codebook
    from ccl.scene import write_manifest
    from ccl.splat import train_language

    scene, g, maps = teacher
    manifest = write_manifest(
        tmp_path / "scene.json", name="tiny", entry={"source": "synthetic"}, source_dir=tiny_scene_dir,
        cfg=SceneLoadConfig(),
    )  # fmt: skip
    names = scene.frame_names
    # masks = the connected class regions; prototype_index maps each mask to its class
    with write_h5(tmp_path / "masks.h5", kind="masks", format_version=1, params={}, frame_names=names) as f:
        for name, m in zip(names, maps, strict=True):
            f.create_group(name).create_dataset("segmentation", data=m.astype(np.int32))
    write_codebook(
        tmp_path / "cb.h5", variant="full", prototypes=np.eye(N_CLASSES, 6, dtype=np.float32),
        prototype_index={name: np.arange(N_CLASSES, dtype=np.int32) for name in names}, frame_names=names,
        params={}, model={}, inputs={},
    )  # fmt: skip
    rgb = save_rgb_field(tmp_path / "rgb.safetensors", g, header={"scene": "tiny"})
    out = tmp_path / "full" / "sp.safetensors"
    kw = dict(
        manifest=manifest, scene_load=SceneLoadConfig(), masks_path=tmp_path / "masks.h5",
        codebook_path=tmp_path / "cb.h5", rgb_path=rgb, rgb_cfg=RgbConfig(), seed=0, scale="sp", variant="full",
    )  # fmt: skip
    m = train_language(out, cfg=dataclasses.replace(FAST, iterations=20), **kw)
    lf = load_language_field(out, scene="tiny")
    assert lf.n_classes == N_CLASSES and lf.header["scale"] == "sp" and lf.header["variant"] == "full"
    assert lf.header["iteration"] == 20 and set(lf.header["inputs"]) == {"masks", "codebook", "rgb"}
    metrics = json.loads((tmp_path / "full" / "sp.metrics.json").read_text())
    assert metrics["accuracy_all"] == pytest.approx(m.accuracy_all) and metrics["n_classes"] == N_CLASSES
    assert not partial_path(out).exists()

    # a colour field of another scene is refused before any training
    other = save_rgb_field(tmp_path / "other.safetensors", g, header={"scene": "kitchen"})
    with pytest.raises(ValueError, match="scene 'kitchen', but this run is for scene 'tiny'"):
        train_language(out, cfg=FAST, **{**kw, "rgb_path": other})
    # masks made at another image size: the frame and both sizes are named
    with write_h5(tmp_path / "small.h5", kind="masks", format_version=1, params={}, frame_names=names) as f:
        for name, m in zip(names, maps, strict=True):
            f.create_group(name).create_dataset("segmentation", data=m[::2, ::2].astype(np.int32))
    with pytest.raises(
        ValueError, match=rf"frame {names[0]}: index map is 32x24 \(W x H\) but the camera is 64x48"
    ):
        train_language(out, cfg=FAST, **{**kw, "masks_path": tmp_path / "small.h5"})


def test_index_consistency_measures_multi_view_agreement(teacher):
    from ccl.splat.diagnostics import index_consistency
    from ccl.splat.model import scene_scale

    scene, g, maps = teacher
    voxel = 0.01 * scene_scale(np.stack([c.center for c in scene.cameras]))
    consistent = index_consistency(g, scene.cameras, maps, voxel=voxel)
    # each view names the classes differently (a codebook that is not view-consistent)
    shuffled = [np.where(m >= 0, (m + i) % N_CLASSES, -1) for i, m in enumerate(maps)]
    inconsistent = index_consistency(g, scene.cameras, shuffled, voxel=voxel)
    assert consistent > 0.85 and inconsistent < consistent - 0.2, (consistent, inconsistent)


def test_stage_entry_refuses_masks_and_codebook_that_do_not_belong_together(
    teacher, tiny_scene_dir, tmp_path
):
    """Before any training: a codebook indexing more masks than the masks file has (fitted on another
    masks file), or files without one of the scene's frames, are refused naming both files."""
    from ccl.io import write_h5
    from ccl.io.codebook_h5 import write_codebook
    from ccl.scene import write_manifest
    from ccl.splat import train_language

    scene, g, maps = teacher
    manifest = write_manifest(
        tmp_path / "scene.json", name="tiny", entry={"source": "synthetic"}, source_dir=tiny_scene_dir,
        cfg=SceneLoadConfig(),
    )  # fmt: skip

    def files(names, n_indices):
        masks, cb = (
            tmp_path / f"masks{n_indices}_{len(names)}.h5",
            tmp_path / f"cb{n_indices}_{len(names)}.h5",
        )
        with write_h5(masks, kind="masks", format_version=1, params={}, frame_names=names) as f:
            for name, m in zip(names, maps, strict=False):
                grp = f.create_group(name)
                grp.create_dataset("segmentation", data=m.astype(np.int32))
                grp.create_dataset("score", data=np.ones(N_CLASSES, np.float32))
        write_codebook(
            cb, variant="full", prototypes=np.eye(N_CLASSES + 1, 6, dtype=np.float32),
            prototype_index={name: np.arange(n_indices, dtype=np.int32) for name in names}, frame_names=names,
            params={}, model={}, inputs={},
        )  # fmt: skip
        return masks, cb

    rgb = save_rgb_field(tmp_path / "rgb.safetensors", g, header={"scene": "tiny"})
    out = tmp_path / "full" / "sp.safetensors"
    kw = dict(manifest=manifest, scene_load=SceneLoadConfig(), rgb_path=rgb, rgb_cfg=RgbConfig(), seed=0)
    masks, cb = files(scene.frame_names, N_CLASSES + 1)
    with pytest.raises(
        ValueError, match=rf"has {N_CLASSES} masks but the codebook .* indexes {N_CLASSES + 1}"
    ) as e:
        train_language(out, masks_path=masks, codebook_path=cb, cfg=FAST, **kw)
    assert str(masks) in str(e.value) and str(cb) in str(e.value)
    masks, cb = files(scene.frame_names[:-1], N_CLASSES)
    with pytest.raises(ValueError, match=rf"no frame '{scene.frame_names[-1]}' \(the scene has it\)") as e:
        train_language(out, masks_path=masks, codebook_path=cb, cfg=FAST, **kw)
    assert str(masks) in str(e.value) and str(cb) in str(e.value)
    assert not out.exists() and not partial_path(out).exists()  # nothing was trained


def test_stage_entry_refuses_a_codebook_or_colour_field_of_another_run_by_content(
    teacher, tiny_scene_dir, tmp_path
):
    """Provenance, not shape: a codebook made from another masks file of the same shape, or a colour field
    made from another manifest, is refused naming both files, before any training."""
    from ccl.io import write_h5
    from ccl.io.codebook_h5 import write_codebook
    from ccl.io.provenance import file_record
    from ccl.scene import write_manifest
    from ccl.splat import train_language

    scene, g, maps = teacher
    manifest = write_manifest(
        tmp_path / "scene.json", name="tiny", entry={"source": "synthetic"}, source_dir=tiny_scene_dir,
        cfg=SceneLoadConfig(),
    )  # fmt: skip
    masks_files = []
    for run in ("a", "b"):  # the same masks, written by two runs: other params, same shapes
        path = tmp_path / f"masks_{run}.h5"
        with write_h5(
            path, kind="masks", format_version=1, params={"run": run}, frame_names=scene.frame_names
        ) as f:
            for name, m in zip(scene.frame_names, maps, strict=True):
                grp = f.create_group(name)
                grp.create_dataset("segmentation", data=m.astype(np.int32))
                grp.create_dataset("score", data=np.ones(N_CLASSES, np.float32))
        masks_files.append(path)
    cb = tmp_path / "cb.h5"
    write_codebook(
        cb, variant="full", prototypes=np.eye(N_CLASSES, 6, dtype=np.float32),
        prototype_index={n: np.arange(N_CLASSES, dtype=np.int32) for n in scene.frame_names},
        frame_names=scene.frame_names, params={}, model={}, inputs={"masks": file_record(masks_files[0])},
    )  # fmt: skip
    out = tmp_path / "full" / "sp.safetensors"
    rgb = save_rgb_field(
        tmp_path / "rgb.safetensors",
        g,
        header={"scene": "tiny", "inputs": {"manifest": file_record(manifest)}},
    )
    kw = dict(
        manifest=manifest,
        scene_load=SceneLoadConfig(),
        rgb_cfg=RgbConfig(),
        seed=0,
        cfg=FAST,
        codebook_path=cb,
    )
    with pytest.raises(ValueError, match="was made from another masks file") as e:
        train_language(out, masks_path=masks_files[1], rgb_path=rgb, **kw)
    assert (
        str(cb) in str(e.value)
        and str(masks_files[1]) in str(e.value)
        and str(masks_files[0]) in str(e.value)
    )

    other = write_manifest(
        tmp_path / "other" / "scene.json", name="tiny", entry={"source": "synthetic", "protocol": "none"},
        source_dir=tiny_scene_dir, cfg=SceneLoadConfig(),
    )  # fmt: skip
    rgb_other = save_rgb_field(
        tmp_path / "rgb_other.safetensors",
        g,
        header={"scene": "tiny", "inputs": {"manifest": file_record(other)}},
    )
    with pytest.raises(ValueError, match="was made from another scene manifest") as e:
        train_language(out, masks_path=masks_files[0], rgb_path=rgb_other, **kw)
    assert str(rgb_other) in str(e.value) and str(manifest) in str(e.value)
    assert not out.exists() and not partial_path(out).exists()  # nothing was trained
