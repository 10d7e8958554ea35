"""`features.sim_mode: crop`: simulated CLIP features computed from the crop the real backend embeds."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from features_testkit import gt_ids, write_gt_masks

from ccl.features import FeaturesConfig, encode_text, extract_features
from ccl.features.backends.sim_crop import CropDescriptor, crop_embeddings
from ccl.features.ops import l2_normalize, masked_crop
from ccl.io.features_h5 import read_features
from ccl.synthetic.gt import GroundTruth, gt_path

CROP = FeaturesConfig(sim_mode="crop")


def _units(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).standard_normal((n, dim))).astype(np.float64)


def _one_mask(seg_pixels: np.ndarray, entity: int, image: np.ndarray, vectors: np.ndarray):
    seg = np.where(seg_pixels, 0, -1).astype(np.int32)
    ent = np.full((3,) + seg.shape, 0, np.int64)
    ent[:, seg_pixels] = entity
    desc = CropDescriptor(crop_size=224, dim=vectors.shape[1], seed=0)
    return crop_embeddings(image, seg, np.array([2]), ent, vectors, desc, 224), desc


def test_a_mask_filling_its_box_is_its_anchor_and_a_cut_one_mixes_in_its_crop():
    vectors = _units(3, 64)
    image = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    full = np.zeros((40, 40), bool)
    full[10:30, 10:30] = True
    (feats, share), _ = _one_mask(full, 2, image, vectors)
    np.testing.assert_allclose(share, [1.0])
    np.testing.assert_allclose(feats[0], vectors[2], atol=1e-6)
    cut = full.copy()
    cut[10:30, 18:22] = False  # an occluding pole across the object: 80 of its 400 pixels gone
    (feats, share), desc = _one_mask(cut, 2, image, vectors)
    np.testing.assert_allclose(share, [0.8])
    crop = masked_crop(image, cut, (10, 10, 29, 29), 224)  # the crop open_clip would embed
    want = l2_normalize(0.8 * vectors[2] + 0.2 * desc(crop[None])[0])
    np.testing.assert_allclose(feats[0], want, atol=1e-6)
    assert feats[0] @ vectors[2] < 0.99


def test_descriptor_keeps_alike_crops_alike():
    desc = CropDescriptor(crop_size=224, dim=512, seed=0)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    near = np.clip(a.astype(int) + rng.integers(-8, 9, a.shape), 0, 255).astype(np.uint8)
    other = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    d = desc(np.stack([a, near, other]))
    assert d[0] @ d[1] > 0.98 and d[0] @ d[2] < d[0] @ d[1]
    np.testing.assert_array_equal(
        d, CropDescriptor(crop_size=224, dim=512, seed=0)(np.stack([a, near, other]))
    )


def test_crop_features_follow_the_pixels_not_the_seed(tiny_scene, part_masks, tmp_path):
    f0 = read_features(extract_features(tiny_scene, part_masks, cfg=CROP, out_path=tmp_path / "a.h5", seed=0))
    f1 = read_features(extract_features(tiny_scene, part_masks, cfg=CROP, out_path=tmp_path / "b.h5", seed=5))
    assert f0.model["sim_mode"] == "crop" and f0.model["simulated"] is True
    for name in tiny_scene.frame_names:
        np.testing.assert_array_equal(f0.frames[name], f1.frames[name])  # no noise: CLIP is deterministic

    def blurred(camera):
        from ccl.scene import SceneLoadConfig, load_image

        return cv2.GaussianBlur(load_image(camera, cfg=SceneLoadConfig()), (0, 0), 3.0)

    fb = read_features(
        extract_features(tiny_scene, part_masks, cfg=CROP, out_path=tmp_path / "c.h5", load_image=blurred)
    )
    moved = np.concatenate(
        [
            1.0 - (f0.frames[n].astype(np.float32) * fb.frames[n].astype(np.float32)).sum(1)
            for n in tiny_scene.frame_names
        ]
    )
    assert (
        moved.max() > 0.01
    )  # blurring the images moves the features of the masks that do not fill their box


def test_whole_masks_are_still_nearest_their_own_category(tiny_scene, tmp_path):
    masks = write_gt_masks(tiny_scene, tmp_path / "wp.h5", layer="whole_id", level=2)
    f = read_features(extract_features(tiny_scene, masks, cfg=CROP, out_path=tmp_path / "f.h5"))
    g = GroundTruth(gt_path(tiny_scene), tiny_scene.frame_names)
    cats, cat_of = g.categories, {o["id"]: o["category_id"] for o in g.objects}
    g.close()
    text = encode_text(cats, cfg=CROP)
    hits = total = 0
    for name, ids in zip(tiny_scene.frame_names, gt_ids(tiny_scene, "whole_id"), strict=True):
        best = (f.frames[name].astype(np.float32) @ text.T).argmax(axis=1)
        hits += sum(int(b == cat_of[int(i)]) for b, i in zip(best, ids, strict=True))
        total += len(ids)
    assert hits >= 0.8 * total, (hits, total)


def test_crop_mode_refuses_a_scene_without_rendered_layers(tiny_scene, tiny_scene_dir, part_masks, tmp_path):
    import dataclasses

    import h5py

    from ccl.scene import SceneLoadConfig, load_scene

    bare = tmp_path / "bare"
    shutil.copytree(tiny_scene_dir, bare)
    (bare / "gt.h5").unlink()
    scene = load_scene(bare, source="synthetic", cfg=SceneLoadConfig(), name="bare")
    with pytest.raises(ValueError, match=r"gt\.h5.*sim_mode = 'crop'.*sim_mode: anchor"):
        extract_features(scene, part_masks, cfg=CROP, out_path=tmp_path / "f.h5")
    # a gt.h5 whose frame lacks a layer: the layer is named (the file is rewritten with its checksum)
    from ccl.io import write_h5

    with (
        h5py.File(tiny_scene_dir / "gt.h5", "r") as src,
        write_h5(
            bare / "gt.h5", kind="gt", format_version=1, params={}, model={}, frame_names=scene.frame_names
        ) as dst,
    ):
        for k, v in src.attrs.items():
            if k in ("categories", "objects"):
                dst.attrs[k] = v
        for name in scene.frame_names:
            g = dst.create_group(name)
            for key in src[name]:
                if not (name == scene.frame_names[1] and key == "subpart_id"):
                    g.create_dataset(key, data=src[name][key][()])
    with pytest.raises(ValueError, match=rf"{scene.frame_names[1]}/subpart_id.*Rebuild the synthetic scene"):
        extract_features(scene, part_masks, cfg=CROP, out_path=tmp_path / "f.h5")
    # a rendered image gone is named too
    (bare / "images" / f"{scene.frame_names[0]}.png").unlink()
    with pytest.raises(ValueError, match=rf"{scene.frame_names[0]}\.png"):
        extract_features(dataclasses.replace(scene), part_masks, cfg=CROP, out_path=tmp_path / "f.h5")


def test_sim_mode_is_checked():
    with pytest.raises(ValueError, match="sim_mode"):
        FeaturesConfig(sim_mode="crops")


def test_an_object_no_camera_sees_is_warned_and_listed(tmp_path, monkeypatch, caplog):
    from dataclasses import replace

    from ccl.synthetic import SyntheticConfig, make_scene
    from ccl.synthetic import make as make_mod

    real = make_mod.render_frame

    def hide_object_0(*args, **kwargs):  # as if occluders stood in front of object 0 in every view
        fr = real(*args, **kwargs)
        return replace(fr, whole_id=np.where(fr.whole_id == 0, -1, fr.whole_id).astype(np.int32))

    monkeypatch.setattr(make_mod, "render_frame", hide_object_0)
    cfg = SyntheticConfig(n_views=2, width=48, height=36, n_objects=3, n_points=50)
    root = make_scene(tmp_path / "s", cfg=cfg, seed=0)
    doc = json.loads((root / "scene.json").read_text())
    assert [o["id"] for o in doc["never_visible_objects"]] == [0]
    assert (
        "object 0" in caplog.text
        and "visible in no view" in caplog.text
        and "synthetic.occluders" in caplog.text
    )
