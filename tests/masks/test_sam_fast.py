"""ccl.masks.backends.sam_fast (SAM's CUDA path) against SAM's own steps, on the CPU with tiny models of the
real architecture: the SDPA encoder against segment-anything's attention, the batched crop passes against
one `set_image` per crop, the one-transfer RLE against `mask_to_rle_pytorch`, and the whole generation
against the reference path, under the guard that fails where CUDA would meet a host tensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from masks_testkit import TINY_SAM_CFG, blob_image

from ccl.host_tensor_guard import host_tensors_fail_on_meeting_the_device
from ccl.masks import LEVELS, MasksConfig
from ccl.masks.backends.sam import build_sam_architecture, generate_levels, sam_architecture
from ccl.masks.backends.sam_fast import (
    FastCropSteps,
    encode_crops,
    mask_to_rle_one_transfer,
    sdpa_attention,
)

# float32: SDPA and segment-anything's attention compute the same sums in another order (and SDPA scales
# the scores after q·kᵀ, SAM scales q before it), so they differ by rounding: a few ulps of the
# activations, of order 1, carried through the encoder's blocks.
FLOAT32_ATOL, FLOAT32_RTOL = 2e-5, 1e-4


def _encoder_sam(**sizes):
    """A SAM of vit_h's architecture, small, whose relative-position tables are random (they start at
    zero, where the bias would vanish and go untested) and whose windows need padding (8 × 8 tokens in
    windows of 3)."""
    arch = sam_architecture(
        "vit_h",
        {
            "encoder_embed_dim": 32,
            "encoder_depth": 2,
            "encoder_num_heads": 2,
            "encoder_global_attn_indexes": [1],
            "encoder_window_size": 3,
            "image_size": 128,
            "vit_patch_size": 16,
            "prompt_embed_dim": 32,
            **sizes,
        },
    )
    torch.manual_seed(0)
    model = build_sam_architecture(arch)
    with torch.no_grad():
        for name, p in model.image_encoder.named_parameters():
            if "rel_pos" in name or "pos_embed" in name:
                p.normal_(0.0, 0.5)
    return model


def test_the_sdpa_encoder_equals_segment_anythings_attention_and_the_bias_matters():
    model = _encoder_sam()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        want = model.image_encoder(x)
        with sdpa_attention(model.image_encoder):
            got = model.image_encoder(x)
        torch.testing.assert_close(got, want, atol=FLOAT32_ATOL, rtol=FLOAT32_RTOL)
        for name, p in model.image_encoder.named_parameters():  # without the bias: far outside
            if "rel_pos" in name:
                p.zero_()
        with sdpa_attention(model.image_encoder):
            unbiased = model.image_encoder(x)
    assert (unbiased - want).abs().max() > 100 * FLOAT32_ATOL


def test_the_encoder_is_as_it_was_after_the_sdpa_block():
    from segment_anything.modeling.image_encoder import Attention

    model = _encoder_sam()
    with sdpa_attention(model.image_encoder):
        assert all("forward" in vars(m) for m in model.modules() if isinstance(m, Attention))
    assert not any("forward" in vars(m) for m in model.modules() if isinstance(m, Attention))


def test_a_layers_crops_encoded_in_one_batch_equal_one_set_image_each():
    from segment_anything import SamPredictor
    from segment_anything.utils.amg import generate_crop_boxes

    model = _encoder_sam()
    image = blob_image(73, 99)  # crops of 62 x 49, 62 x 48, 61 x 49 and 61 x 48 px
    boxes, layers = generate_crop_boxes(image.shape[:2], 1, 512 / 1500)
    crops = [image[y0:y1, x0:x1] for (x0, y0, x1, y1), layer in zip(boxes, layers, strict=True) if layer == 1]
    assert len(crops) == 4 and len({c.shape for c in crops}) > 1  # sizes differ: each padded on its own
    predictor = SamPredictor(model)
    got = encode_crops(predictor, crops, MasksConfig(backend="sam"))
    for crop, (features, input_size) in zip(crops, got, strict=True):
        predictor.set_image(crop)
        assert input_size == predictor.input_size
        torch.testing.assert_close(features, predictor.features, atol=FLOAT32_ATOL, rtol=FLOAT32_RTOL)


def test_the_one_transfer_rle_equals_segment_anythings():
    from segment_anything.utils.amg import mask_to_rle_pytorch

    rng = np.random.default_rng(0)
    masks = torch.from_numpy(rng.random((7, 13, 11)) < 0.5)
    masks[0] = False  # no change at all
    masks[1] = True  # starts True, no change
    masks[2] = False
    masks[2, 0, 0] = True  # one pixel, the first
    masks[3] = False
    masks[3, -1, -1] = True  # one pixel, the last
    masks[4, 0, 0] = True
    masks[5, 0, 0] = False
    got, want = mask_to_rle_one_transfer(masks), mask_to_rle_pytorch(masks)
    assert got == want
    assert all(type(c) is int for r in got for c in r["counts"])  # Python ints, as segment-anything's
    assert mask_to_rle_one_transfer(masks[:0]) == []


def test_the_one_transfer_rle_moves_to_the_host_once(monkeypatch):
    calls = []
    real = torch.Tensor.cpu

    def counted(self, *args, **kwargs):
        calls.append(tuple(self.shape))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", counted)
    mask_to_rle_one_transfer(torch.from_numpy(np.random.default_rng(1).random((64, 20, 30)) < 0.3))
    assert len(calls) == 1


def test_the_fast_filter_keeps_what_maskdata_keeps():
    from segment_anything.utils.amg import MaskData

    def data():
        return MaskData(rles=[{"i": i} for i in range(6)], scores=torch.arange(6.0))

    keep = torch.tensor([4, 1, 3])
    want, got = data(), data()
    want.filter(keep)
    FastCropSteps([], []).filter(got, keep)
    assert got["rles"] == want["rles"] and torch.equal(got["scores"], want["scores"])


@pytest.mark.parametrize("crop_n_layers", [0, 1])
def test_the_fast_generation_equals_the_reference_on_the_cpu(crop_n_layers):
    """The whole path: each level's masks, scores and order as the reference's (its SDPA and batched
    passes round differently, FLOAT32_*; on this image no mask logit or score lies that close to a threshold).
    Run under the host-tensor guard: nothing it makes off the device meets the device's data."""
    from segment_anything import SamPredictor
    from segment_anything.utils.amg import build_all_layer_point_grids

    model = _encoder_sam()
    cfg = MasksConfig(**{**TINY_SAM_CFG, "crop_n_layers": crop_n_layers, "min_mask_region_area": 10})
    grids = build_all_layer_point_grids(
        cfg.points_per_side, cfg.crop_n_layers, cfg.crop_n_points_downscale_factor
    )
    image = blob_image(73, 99)
    want = generate_levels(SamPredictor(model), image, cfg=cfg, point_grids=grids, fast=False)
    with host_tensors_fail_on_meeting_the_device():
        got = generate_levels(SamPredictor(model), image, cfg=cfg, point_grids=grids, fast=True)
    assert sum(len(lv) for lv in want) > 0
    for level, g, w in zip(LEVELS, got, want, strict=True):
        assert len(g) == len(w), level
        np.testing.assert_array_equal(g.masks, w.masks, err_msg=level)
        np.testing.assert_allclose(g.pred_iou, w.pred_iou, atol=FLOAT32_ATOL, rtol=FLOAT32_RTOL)
        np.testing.assert_allclose(g.stability, w.stability, atol=FLOAT32_ATOL, rtol=FLOAT32_RTOL)
