"""extract_features / encode_text with the sim backend on the tiny synthetic scene."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from features_testkit import first_frames, gt_ids, write_gt_masks

from ccl.features import FeaturesConfig, encode_text, extract_features
from ccl.features.backends.sim import AnchorSpace
from ccl.io.features_h5 import read_features
from ccl.synthetic.gt import GroundTruth, gt_path

F16 = 2e-3  # float16 storage: a unit row's norm and entries are within ~1e-3 of the float32 value


def _gt(scene):
    g = GroundTruth(gt_path(scene), scene.frame_names)
    try:
        return g.categories, g.objects
    finally:
        g.close()


def test_layout_dtype_and_normalisation(tiny_scene, part_masks, tmp_path):
    out = extract_features(tiny_scene, part_masks, cfg=FeaturesConfig(), out_path=tmp_path / "f.h5", seed=0)
    f = read_features(out)
    assert f.dim == 512 and f.frame_names == tiny_scene.frame_names
    assert f.model["backend"] == "sim" and f.model["simulated"] is True
    for name, ids in zip(tiny_scene.frame_names, gt_ids(tiny_scene), strict=True):
        x = f.frames[name]
        assert x.dtype == np.float16 and x.shape == (len(ids), 512)
        np.testing.assert_allclose(np.linalg.norm(x.astype(np.float32), axis=1), 1.0, atol=F16)


def test_anchors_are_as_crowded_as_clip_embeddings():
    cfg = FeaturesConfig()
    space = AnchorSpace(cfg)
    names = ["red mug", "teddy bear", "green apple", "blue book", "toy elephant"]
    a = np.stack([space.category(n) for n in names])
    cos = (a @ a.T)[np.triu_indices(len(names), 1)]
    assert np.all(np.abs(cos - cfg.sim_anchor_cosine) < 0.05), cos  # 0.7-0.8
    assert abs(space.part("red mug", "handle") @ space.category("red mug") - cfg.sim_part_cosine) < 0.05
    assert space.part("red mug", "handle") @ space.category("blue book") < cfg.sim_anchor_cosine
    np.testing.assert_array_equal(space.category("Red  Mug"), AnchorSpace(cfg).category("red mug"))


def test_masks_are_nearest_to_their_own_category_query(tiny_scene, tmp_path):
    # whole-object masks, no view noise: every mask's best query is its object's category
    masks = write_gt_masks(tiny_scene, tmp_path / "wp.h5", layer="whole_id", level=2)
    cfg = FeaturesConfig(sim_noise=0.0, sim_occlusion_gain=0.0, sim_blur_gain=0.0)
    f = read_features(extract_features(tiny_scene, masks, cfg=cfg, out_path=tmp_path / "f.h5"))
    categories, objects = _gt(tiny_scene)
    text = encode_text(categories, cfg=cfg)
    assert text.shape == (len(categories), 512) and text.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-6)
    for name, ids in zip(tiny_scene.frame_names, gt_ids(tiny_scene, "whole_id"), strict=True):
        best = (f.frames[name].astype(np.float32) @ text.T).argmax(axis=1)
        np.testing.assert_array_equal(best, [objects[int(i)]["category_id"] for i in ids])


def test_unknown_query_is_relevant_to_nothing(tiny_scene, part_masks, tmp_path):
    cfg = FeaturesConfig()
    categories, _ = _gt(tiny_scene)
    text = encode_text([*categories, "a fire hydrant"], cfg=cfg)
    f = read_features(extract_features(tiny_scene, part_masks, cfg=cfg, out_path=tmp_path / "f.h5"))
    x = np.concatenate([v.astype(np.float32) for v in f.frames.values()])
    sims = x @ text.T
    assert sims[:, -1].max() < np.median(sims[:, :-1].max(axis=1))  # never the best match of a typical mask
    assert np.all(np.abs(text[:-1] @ text[-1] - cfg.sim_anchor_cosine) < 0.06)  # as far as any other concept


def test_noise_grows_with_occlusion(tiny_scene, tmp_path):
    masks = write_gt_masks(tiny_scene, tmp_path / "wp.h5", layer="whole_id", level=2)
    clean = FeaturesConfig(sim_noise=0.0, sim_occlusion_gain=0.0, sim_blur_gain=0.0)
    occl = dataclasses.replace(clean, sim_occlusion_gain=1.0)
    a = read_features(extract_features(tiny_scene, masks, cfg=clean, out_path=tmp_path / "a.h5")).frames
    b = read_features(extract_features(tiny_scene, masks, cfg=occl, out_path=tmp_path / "b.h5")).frames
    g = GroundTruth(gt_path(tiny_scene), tiny_scene.frame_names)
    occluded, clear = [], []
    for name, ids in zip(tiny_scene.frame_names, gt_ids(tiny_scene, "whole_id"), strict=True):
        dev = 1.0 - np.sum(a[name].astype(np.float32) * b[name].astype(np.float32), axis=1)
        occ = g.frame(name).occluded_fraction[ids]
        occluded += list(dev[occ > 0.15])
        clear += list(dev[occ == 0])
    g.close()
    assert occluded and clear, "the tiny scene must have occluded and clear objects"
    np.testing.assert_allclose(clear, 0.0, atol=F16)  # no occlusion, no noise
    assert min(occluded) > 1e-3


def test_deterministic_per_seed(tiny_scene, part_masks, tmp_path):
    def run(seed, name):
        f = read_features(
            extract_features(
                tiny_scene, part_masks, cfg=FeaturesConfig(), out_path=tmp_path / name, seed=seed
            )
        )
        return np.concatenate(list(f.frames.values()))

    a, b, c = run(0, "a.h5"), run(0, "b.h5"), run(1, "c.h5")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    t1 = encode_text(["red mug"], cfg=FeaturesConfig())
    t2 = encode_text(["red mug"], cfg=FeaturesConfig(sim_anchor_seed=1))
    assert not np.array_equal(t1, t2)


# ---------------------------------------------------------------------------------------- bad input


def test_frame_without_masks_gets_zero_rows(tiny_scene, tmp_path):
    masks = write_gt_masks(tiny_scene, tmp_path / "sp.h5", empty=(tiny_scene.frame_names[2],))
    f = read_features(extract_features(tiny_scene, masks, cfg=FeaturesConfig(), out_path=tmp_path / "f.h5"))
    assert f.frames[tiny_scene.frame_names[2]].shape == (0, 512)
    assert f.frames[tiny_scene.frame_names[2]].dtype == np.float16


def test_half_written_inputs_and_outputs(tiny_scene, part_masks, tmp_path):
    import h5py

    from ccl.io import H5FormatError

    half = tmp_path / "half.h5"
    half.write_bytes(part_masks.read_bytes())
    with h5py.File(half, "a") as f:
        del f.attrs["complete"]
    out = tmp_path / "f.h5"
    with pytest.raises(H5FormatError, match="incomplete"):
        extract_features(tiny_scene, half, cfg=FeaturesConfig(), out_path=out)
    assert not out.exists()
    out.write_bytes(b"\x89HDF\r\n\x1a\n")  # a features file cut short
    with pytest.raises(H5FormatError):
        read_features(out)
    extract_features(tiny_scene, part_masks, cfg=FeaturesConfig(), out_path=out)  # the rule rebuilds it
    assert read_features(out).dim == 512


def test_masks_of_another_scene_and_non_synthetic_scene_are_refused(tiny_scene, part_masks, tmp_path):
    with pytest.raises(ValueError, match="another scene"):
        extract_features(
            first_frames(tiny_scene, 2), part_masks, cfg=FeaturesConfig(), out_path=tmp_path / "f.h5"
        )
    real = dataclasses.replace(tiny_scene, root=tmp_path)
    with pytest.raises(ValueError, match="not a synthetic scene"):
        extract_features(real, part_masks, cfg=FeaturesConfig(), out_path=tmp_path / "f.h5")
    assert not (tmp_path / "f.h5").exists()


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="features.backend"):
        FeaturesConfig(backend="clip")
    with pytest.raises(ValueError, match="sim_anchor_cosine"):
        FeaturesConfig(sim_anchor_cosine=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        FeaturesConfig(batch_size=0)
    with pytest.raises(TypeError, match="one string"):
        encode_text("red mug", cfg=FeaturesConfig())
