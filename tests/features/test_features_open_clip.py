"""The open_clip backend's real code path with a tiny, randomly initialised CLIP of the real architecture."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
from features_testkit import clip_cfg, first_frames, open_clips_own_image_features, save_tiny_clip_weights
from features_testkit import clip_encoder as encoder

from ccl.features import FeaturesConfig, encode_text, extract_features
from ccl.features.ops import mask_boxes, masked_crop
from ccl.io.features_h5 import read_features

F32 = 1e-5  # float32 encoder, batch composition changes only the summation order
F16 = 2e-3  # float16 storage

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_batching_does_not_change_features(tiny_clip):
    crops = np.random.default_rng(0).integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
    one = encoder(tiny_clip, batch_size=1).encode_crops(crops)
    seven = encoder(tiny_clip, batch_size=7).encode_crops(crops)
    assert one.shape == (9, 16) and one.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(one, axis=1), 1.0, atol=F32)
    np.testing.assert_allclose(one, seven, atol=F32)


def test_extract_features_are_open_clips_own_features_of_the_masked_square_crops(
    tiny_scene, part_masks, tiny_clip, tmp_path
):
    from PIL import Image

    from ccl.io.masks_h5 import open_masks

    scene = first_frames(tiny_scene, 2)
    masks = tmp_path / "sp.h5"
    from features_testkit import write_gt_masks

    write_gt_masks(scene, masks)
    out = extract_features(
        scene, masks, cfg=clip_cfg(tiny_clip, batch_size=4), out_path=tmp_path / "f.h5", device="cpu"
    )
    f = read_features(out)
    assert f.dim == 16 and f.model["backend"] == "open_clip" and f.model["simulated"] is False
    assert len(f.model["pretrained_sha256"]) == 64
    with open_masks(masks) as r:
        for cam in scene.cameras:
            fm = r.read(cam.name)
            img = np.asarray(Image.open(cam.image_path).convert("RGB"))  # read here, in RGB order
            boxes = mask_boxes(fm.segmentation, fm.n_masks)
            crops = np.stack(
                [masked_crop(img, fm.segmentation == i, boxes[i], 32) for i in range(fm.n_masks)]
            )
            assert len(np.unique(crops.reshape(-1, 3), axis=0)) > 2  # coloured: BGR would differ
            want = open_clips_own_image_features(*tiny_clip, crops)
            got = f.frames[cam.name]
            assert got.dtype == np.float16 and got.shape == (fm.n_masks, 16)
            np.testing.assert_allclose(got.astype(np.float32), want, atol=F16)
            swapped = open_clips_own_image_features(*tiny_clip, crops[..., ::-1].copy())
            assert np.abs(swapped - want).max() > 10 * F16  # the comparison sees the colour order


def test_encode_text_is_the_models_normalised_text_tower(tiny_clip):
    import open_clip
    import torch

    from ccl.features.backends.open_clip import load_weights

    cfg = clip_cfg(tiny_clip)
    got = encode_text(["red mug", "teddy bear", "a chair"], cfg=cfg, device="cpu")
    assert got.shape == (3, 16) and got.dtype == np.float32
    model = open_clip.create_model(cfg.model_name, pretrained=None)
    load_weights(model, tiny_clip[1], cfg.model_name)
    with torch.inference_mode():
        ref = model.eval().encode_text(
            open_clip.get_tokenizer(cfg.model_name)(["red mug", "teddy bear", "a chair"])
        )
    ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    np.testing.assert_allclose(got, ref, atol=F32)
    assert encode_text([], cfg=cfg, device="cpu").shape == (0, 16)


def test_pytorch_bin_weights_load_too(tiny_clip, tmp_path):
    bin_path = tmp_path / "open_clip_pytorch_model.bin"
    save_tiny_clip_weights(bin_path)  # same seed: the same weights as the safetensors file
    a = encoder(tiny_clip).encode_text(["mug"])
    b = encoder((tiny_clip[0], bin_path)).encode_text(["mug"])
    np.testing.assert_allclose(a, b, atol=F32)


# ---------------------------------------------------------------------------------------- bad input


def test_a_tag_without_a_local_file_is_refused_with_the_file_to_get(tiny_scene, part_masks, tmp_path):
    cfg = FeaturesConfig(backend="open_clip")  # the default: ViT-B-16, laion2b_s34b_b88k
    with pytest.raises(FileNotFoundError) as e:
        extract_features(tiny_scene, part_masks, cfg=cfg, out_path=tmp_path / "f.h5")
    msg = str(e.value)
    for part in (
        "open_clip_pytorch_model.bin",
        "laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
        "features: {pretrained",
    ):
        assert part in msg, msg
    with pytest.raises(FileNotFoundError, match="neither an existing weights file nor"):
        encode_text(["x"], cfg=dataclasses.replace(cfg, pretrained="/nonexistent/w.bin"))
    assert not (tmp_path / "f.h5").exists()


def test_mismatched_or_incomplete_weights_are_refused(tiny_clip, tmp_path):
    import torch

    wide = tmp_path / "wide.bin"
    save_tiny_clip_weights(wide, embed_dim=24)  # same keys, other shapes
    with pytest.raises(ValueError, match="do not match"):
        encoder((tiny_clip[0], wide))
    state = torch.load(wide, weights_only=True)
    state.pop("text_projection")
    torch.save(state, tmp_path / "missing.bin")
    with pytest.raises(ValueError, match="missing.*text_projection"):
        encoder((tiny_clip[0], tmp_path / "missing.bin"))


def test_crop_size_must_be_the_models_input_size(tiny_clip, tiny_scene, part_masks, tmp_path):
    cfg = dataclasses.replace(clip_cfg(tiny_clip), crop_size=224)
    with pytest.raises(ValueError, match="takes 32 px"):
        extract_features(tiny_scene, part_masks, cfg=cfg, out_path=tmp_path / "f.h5")
    with pytest.raises(ValueError, match="not an open_clip architecture"):
        encode_text(["x"], cfg=dataclasses.replace(cfg, model_name="ViT-Q-99"))


def test_a_query_longer_than_the_text_context_is_said_to_be_cut(tiny_clip, caplog, monkeypatch):
    import ccl.runlog

    # warn_once says a message once per process: forget what an earlier run of this test in the same
    # process said (mutmut runs the suite twice in one process before it forks the mutants' runs)
    monkeypatch.setattr(ccl.runlog, "_warned", set())
    enc = encoder(tiny_clip)
    long = "a " + "very " * 90 + "small red mug"
    with caplog.at_level(logging.WARNING):
        enc.encode_text(["red mug"])
        assert "tokens long" not in caplog.text
        enc.encode_text([long])
    assert "tokens long" in caplog.text and "so it is cut there" in caplog.text  # the tiny model reads 16
    assert "shorten the query" in caplog.text
