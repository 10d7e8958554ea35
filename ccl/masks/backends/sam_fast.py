"""SAM's automatic generation on CUDA with less GPU time and the same outputs (`generate_levels` picks it
on CUDA; a CPU keeps SAM's own steps, `sam.CropSteps`).

Three changes, each behind the outputs of the step it replaces (the techniques of segment-anything-fast):

- the image encoder's attention through `F.scaled_dot_product_attention`, with the decomposed
  relative-position bias of segment-anything's `Attention` as its additive mask: the same function, but
  the fused kernels never write the [heads, tokens, tokens] score matrix and its softmax to memory;
- the crops of one crop layer encoded in one batch (one pass of 4 crops for the first layer, not 4);
- RLE encoding with one transfer to the host per batch of masks, where segment-anything's
  `mask_to_rle_pytorch` waits on the device three times per mask, and the RLE lists cut down with the
  kept indices moved to the host once, where `MaskData.filter` reads one device index per mask.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import numpy as np

from ccl.device import autocast
from ccl.masks.backends.sam import CropSteps
from ccl.masks.config import MasksConfig


def sdpa_attention_forward(attn: Any, x: Any) -> Any:
    """segment-anything's `Attention.forward` (image encoder) with the attention in one
    `scaled_dot_product_attention` call: softmax(q·kᵀ·scale + B)·v, B = the decomposed relative-position
    bias that `add_decomposed_rel_pos` adds to the scores (its default scale is `attn.scale`, head_dim^-½)."""
    import torch
    import torch.nn.functional as F
    from segment_anything.modeling.image_encoder import get_rel_pos

    batch, h, w, _ = x.shape
    qkv = attn.qkv(x).reshape(batch, h * w, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, batch * attn.num_heads, h * w, -1).unbind(0)  # [B·heads, h·w, head_dim]
    bias = None
    if attn.use_rel_pos:
        rel_h = get_rel_pos(h, h, attn.rel_pos_h)  # [h, h, head_dim]
        rel_w = get_rel_pos(w, w, attn.rel_pos_w)  # [w, w, head_dim]
        r_q = q.reshape(-1, h, w, q.shape[-1])
        bias_h = torch.einsum("bhwc,hkc->bhwk", r_q, rel_h)  # [B·heads, h, w, h]
        bias_w = torch.einsum("bhwc,wkc->bhwk", r_q, rel_w)  # [B·heads, h, w, w]
        bias = (bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]).to(q.dtype)
        bias = bias.reshape(batch, attn.num_heads, h * w, h * w)
    # [batch, heads, tokens, head_dim]: the fused CUDA kernels take 4-d inputs only (3-d falls back to
    # the unfused one)
    q, k, v = (t.reshape(batch, attn.num_heads, h * w, -1) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    out = out.view(batch, attn.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(batch, h, w, -1)
    return attn.proj(out)


@contextlib.contextmanager
def sdpa_attention(image_encoder: Any) -> Iterator[None]:
    """Within the block, every `Attention` of `image_encoder` runs `sdpa_attention_forward`; after it,
    the model is as it was (its class's forward)."""
    from segment_anything.modeling.image_encoder import Attention

    patched = [m for m in image_encoder.modules() if isinstance(m, Attention)]
    for m in patched:
        m.forward = types.MethodType(sdpa_attention_forward, m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def encode_crops(
    predictor: Any, crops: list[np.ndarray], cfg: MasksConfig
) -> list[tuple[Any, tuple[int, int]]]:
    """The image embeddings of `crops` ([h, w, 3] uint8 RGB) in one encoder pass: per crop, its
    [1, C, h', w'] features and the resized input's (height, width), what `SamPredictor.set_image` would
    set for it alone (the same resize, normalisation and padding, per crop)."""
    import torch

    model, device = predictor.model, predictor.device
    inputs, input_sizes = [], []
    for crop in crops:
        if model.image_format != "RGB":  # set_image's conversion of an RGB image
            crop = crop[..., ::-1]
        resized = torch.as_tensor(predictor.transform.apply_image(crop), device=device)
        resized = resized.permute(2, 0, 1).contiguous()[None]
        input_sizes.append(tuple(resized.shape[-2:]))
        inputs.append(model.preprocess(resized))  # normalised and padded to the encoder's square
    with torch.no_grad(), autocast(str(device), cfg.precision), sdpa_attention(model.image_encoder):
        features = model.image_encoder(torch.cat(inputs))
    return [(features[i : i + 1], size) for i, size in enumerate(input_sizes)]


class FastCropSteps(CropSteps):
    """`CropSteps` with the crops of a layer encoded in one SDPA pass and one host transfer per batch of
    RLEs and per filter."""

    def __init__(self, crop_boxes: list[list[int]], layer_idxs: list[int]) -> None:
        self.crop_boxes, self.layer_idxs = crop_boxes, layer_idxs
        self.done = 0  # crops handed to the predictor so far: `generate_levels` asks in crop order
        self.encoded: list[tuple[Any, tuple[int, int]]] = []  # the current layer's, not yet handed over

    def set_crop_image(
        self, predictor: Any, image: np.ndarray, crop_box: list[int], cfg: MasksConfig
    ) -> None:
        i = self.done
        assert list(crop_box) == list(self.crop_boxes[i]), (crop_box, self.crop_boxes[i])
        if not self.encoded:  # the first crop of a layer: encode all of the layer's crops at once
            layer = self.layer_idxs[i]
            boxes = [b for b, li in zip(self.crop_boxes, self.layer_idxs, strict=True) if li == layer]
            self.encoded = encode_crops(predictor, [image[y0:y1, x0:x1, :] for x0, y0, x1, y1 in boxes], cfg)
        features, input_size = self.encoded.pop(0)
        x0, y0, x1, y1 = crop_box
        predictor.reset_image()  # what set_torch_image sets, for this crop's embedding
        predictor.original_size = (y1 - y0, x1 - x0)
        predictor.input_size = input_size
        predictor.features = features
        predictor.is_image_set = True
        self.done += 1

    def to_rle(self, masks: Any) -> list[dict[str, Any]]:
        return mask_to_rle_one_transfer(masks)

    def filter(self, data: Any, keep: Any) -> None:
        data.filter(keep.cpu())  # MaskData moves it back for tensors; its lists then read host indices


def mask_to_rle_one_transfer(masks: Any) -> list[dict[str, Any]]:
    """segment-anything's `mask_to_rle_pytorch` ([B, H, W] bool → uncompressed RLEs in column-major
    order, each starting with a run of False), with the change points of all masks and their first
    pixels moved to the host together and split there."""
    import torch

    b, h, w = masks.shape
    flat = masks.permute(0, 2, 1).flatten(1)  # column-major, as COCO's RLE
    change = (flat[:, 1:] ^ flat[:, :-1]).nonzero()  # [K, 2] (mask, index), ordered by mask then index
    packed = torch.cat([flat[:, 0].to(change.dtype), change.reshape(-1)]).cpu().numpy()
    starts_true, change = packed[:b], packed[b:].reshape(-1, 2)
    bounds = np.searchsorted(change[:, 0], np.arange(b + 1))
    out = []
    for i in range(b):
        edges = np.concatenate([[0], change[bounds[i] : bounds[i + 1], 1] + 1, [h * w]])
        counts = [0] if starts_true[i] else []
        counts.extend(np.diff(edges).tolist())
        out.append({"size": [h, w], "counts": counts})
    return out
