"""Helpers of the masks tests: a tiny SAM of the real architecture, tiny images and scenes."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

TINY_SAM_IMG = 64  # the tiny model's input side (real SAM: 1024)


def build_tiny_sam():
    """segment_anything's Sam with the real modules, shrunk (embed 32, depth 2, 4×4 embedding grid)."""
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    dim, patch = 32, 16
    grid = TINY_SAM_IMG // patch
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=TINY_SAM_IMG,
            patch_size=patch,
            embed_dim=dim,
            depth=2,
            num_heads=2,
            mlp_ratio=2.0,
            out_chans=dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            global_attn_indexes=(1,),
            window_size=2,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(grid, grid),
            input_image_size=(TINY_SAM_IMG, TINY_SAM_IMG),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
            transformer_dim=dim,
            iou_head_depth=2,
            iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


TINY_BUILDERS = {"tiny": build_tiny_sam}


# build_tiny_sam's mask logits lie within ±0.1 and its predicted IoUs (outputs 1-3, the levels) centre
# near 0.16, −0.37 and 0.01: at the product's thresholds (predicted IoU 0.7, stability 0.85 at offset
# 1) every mask would go. Scaled logits (×300) put the stability scores on both sides of 0.85, and the
# IoU head's last layer, spread ×3 and shifted per output, puts each level's IoUs on both sides of 0.7.
SHARP_LOGIT_SCALE = 300.0
SHARP_IOU_SPREAD = 3.0
SHARP_IOU_SHIFT = (0.0, 0.7 - 3 * 0.16, 0.7 + 3 * 0.37, 0.7 - 3 * 0.01)


def build_tiny_sam_for_default_thresholds():
    """build_tiny_sam with its decoder's outputs rescaled so that SAM's filters at the product's default
    thresholds keep some masks and drop others (the caller checks that they do)."""
    import torch

    sam = build_tiny_sam()
    decoder = sam.mask_decoder
    with torch.no_grad():
        for mlp in decoder.output_hypernetworks_mlps:  # the logits are linear in these outputs
            mlp.layers[-1].weight.mul_(SHARP_LOGIT_SCALE)
            mlp.layers[-1].bias.mul_(SHARP_LOGIT_SCALE)
        iou_out = decoder.iou_prediction_head.layers[-1]
        iou_out.weight.mul_(SHARP_IOU_SPREAD)
        iou_out.bias.mul_(SHARP_IOU_SPREAD).add_(torch.tensor(SHARP_IOU_SHIFT))
    return sam


# Thresholds off so that a random model's masks reach the output; a small grid keeps it fast.
TINY_SAM_CFG = dict(
    backend="sam",
    sam_model_type="tiny",
    points_per_side=4,
    points_per_batch=8,
    pred_iou_thresh=0.0,
    stability_score_thresh=0.0,
    crop_n_layers=0,
    min_mask_region_area=0,
    mask_nms_score_thresh=0.0,
)


def blob_image(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """[H, W, 3] uint8: a few flat-coloured ellipses on a grey background."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 128, np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(4):
        cy, cx, ry, rx = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, h / 3), rng.uniform(4, w / 3)
        img[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1] = rng.integers(0, 256, 3)
    return img


def image_scene(root: Path, images: list[np.ndarray]):
    """A ccl.scene.Scene over PNG files written to `root`/images (identity poses)."""
    import cv2

    from ccl.scene import Camera, Scene

    (root / "images").mkdir(parents=True, exist_ok=True)
    cams = []
    for i, img in enumerate(images):
        path = root / "images" / f"frame_{i:05d}.png"
        cv2.imwrite(str(path), img[:, :, ::-1])
        h, w = img.shape[:2]
        K = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], float)
        cams.append(
            Camera(name=path.stem, image_path=path, width=w, height=h, K=K, world_to_camera=np.eye(4))
        )
    return Scene(
        name="tiny", root=root, cameras=tuple(cams), points_xyz=np.zeros((0, 3)), points_rgb=np.zeros((0, 3))
    )


def h5_contents(path: Path) -> dict:
    """Everything an HDF5 file holds, comparable with ==: per object its attributes (values as bytes)
    and, for a dataset, dtype, shape, storage (chunks, filters) and the data's bytes. Two files equal
    under it hold the same tree, attributes and data byte for byte (file-level metadata aside)."""
    import h5py

    def value(v):
        a = np.asarray(v)
        # strings (object arrays hold pointers, not their text): by value; numbers: dtype and bytes
        return (str(a.dtype), a.tolist() if a.dtype.kind in "OSU" else a.tobytes())

    def attrs(obj) -> dict:
        return {k: value(v) for k, v in obj.attrs.items()}

    out = {}
    with h5py.File(path, "r") as f:
        out["/"] = attrs(f)

        def visit(name, obj):
            entry = {"attrs": attrs(obj)}
            if isinstance(obj, h5py.Dataset):
                entry.update(
                    dtype=str(obj.dtype),
                    shape=obj.shape,
                    chunks=obj.chunks,
                    filters=(obj.compression, obj.compression_opts, obj.shuffle),
                    data=value(obj[()]),
                )
            out[name] = entry

        f.visititems(visit)
    return out
