"""Tiny randomly initialised checkpoints of the real SAM, SAM2 and OpenCLIP architectures, saved in the
official releases' file formats, and the config sections that make the workflow build exactly them.

What a Snakemake job can build is what its config names, so each writer returns its stage's section,
written as configs/lerf_ovs.yaml writes it with only the checkpoint paths and model sizes changed (and
SAM's thresholds opened, so that a random model's masks reach the output):

    sections = write_tiny_checkpoints(tmp_path / "models")
    config = {**lerf_ovs_like_config, **sections}  # masks / tracks / features

Each model is built by its own library's modules, independently of ccl's builders, so loading these
files strictly through the workflow checks that the config keys reach the architecture as named.
Seeded: the same seed writes the same weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------------------- SAM
# sam_vit_h_4b8939.pth: torch.save of the plain state dict of segment_anything's Sam.
# vit_h's build arguments (masks.sam_overrides) shrunk: a 2-block ViT of width 32 on a 64 px input
# (a 4 × 4 embedding grid, one window), 32-dim prompts and decoder.
TINY_SAM_OVERRIDES: dict[str, Any] = {
    "encoder_embed_dim": 32,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1],
    "encoder_window_size": 4,
    "image_size": 64,
    "vit_patch_size": 16,
    "prompt_embed_dim": 32,
}
# Automatic generation: an 8 × 8 grid on the whole image (no crop layers); a random model's predicted
# IoU and stability mean nothing, so their filters are open and small-region cleanup is off.
TINY_SAM_GENERATION: dict[str, Any] = {
    "points_per_side": 8,
    "points_per_batch": 64,
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
    "crop_n_layers": 0,
    "min_mask_region_area": 0,
    "mask_nms_score_thresh": 0.0,
}


def build_tiny_sam(overrides: dict[str, Any] | None = None) -> Any:
    """segment_anything's Sam assembled as its build_sam._build_sam assembles vit_h, with
    TINY_SAM_OVERRIDES (updated by `overrides`) in place of vit_h's sizes; random weights."""
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    a = {**TINY_SAM_OVERRIDES, **(overrides or {})}
    dim, side = a["prompt_embed_dim"], a["image_size"]
    grid = side // a["vit_patch_size"]
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=a["encoder_depth"],
            embed_dim=a["encoder_embed_dim"],
            img_size=side,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=a["encoder_num_heads"],
            patch_size=a["vit_patch_size"],
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=a["encoder_global_attn_indexes"],
            window_size=a["encoder_window_size"],
            out_chans=dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim, image_embedding_size=(grid, grid), input_image_size=(side, side), mask_in_chans=16
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=2048, num_heads=8),
            transformer_dim=dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()


def write_tiny_sam(folder: str | Path, *, seed: int = 0, overrides: dict[str, Any] | None = None) -> dict:
    """Write `folder`/sam_vit_h_tiny_random.pth; the `masks` section that builds and loads it."""
    import torch

    path = Path(folder) / "sam_vit_h_tiny_random.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.save(build_tiny_sam(overrides).state_dict(), path)
    return {
        "backend": "sam",
        "sam_model_type": "vit_h",
        "sam_checkpoint": str(path),
        "sam_overrides": {**TINY_SAM_OVERRIDES, **(overrides or {})},
        **TINY_SAM_GENERATION,
    }


# --------------------------------------------------------------------------------------------- SAM2
# sam2.1_hiera_large.pt: torch.save({"model": state_dict}). The sam2.1 Hiera-T config with Hydra
# overrides (tracks.sam2_overrides): a 4-stage Hiera of width 8, 128 px input, 32-dim heads, one
# memory-attention layer, two memory frames.
TINY_SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
TINY_SAM2_OVERRIDES: tuple[str, ...] = (
    "++model.image_size=128",
    "++model.image_encoder.trunk.embed_dim=8",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",  # a q-pooling block cannot be global: block 3 is
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[4,4]",
    "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
    "++model.image_encoder.neck.d_model=32",
    "++model.image_encoder.neck.position_encoding.num_pos_feats=32",
    "++model.memory_attention.d_model=32",
    "++model.memory_attention.layer.d_model=32",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.dim_feedforward=64",
    "++model.memory_attention.layer.self_attention.embedding_dim=32",
    "++model.memory_attention.layer.cross_attention.embedding_dim=32",
    "++model.memory_attention.layer.self_attention.feat_sizes=[8,8]",  # 128 px / stride 16
    "++model.memory_attention.layer.cross_attention.feat_sizes=[8,8]",
    "++model.memory_attention.layer.cross_attention.kv_in_dim=16",
    "++model.memory_encoder.in_dim=32",
    "++model.memory_encoder.out_dim=16",
    "++model.memory_encoder.position_encoding.num_pos_feats=16",
    "++model.memory_encoder.mask_downsampler.embed_dim=32",
    "++model.memory_encoder.fuser.layer.dim=32",
    "++model.memory_encoder.fuser.num_layers=1",
    "++model.num_maskmem=2",
)


def write_tiny_sam2(folder: str | Path, *, seed: int = 0, overrides: tuple[str, ...] = ()) -> dict:
    """Write `folder`/sam2.1_hiera_tiny_random.pt; the `tracks` section that builds and loads it.
    `overrides` are appended to TINY_SAM2_OVERRIDES (a checkpoint of another size)."""
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    path = Path(folder) / "sam2.1_hiera_tiny_random.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    every = [*TINY_SAM2_OVERRIDES, *overrides]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_sam2_video_predictor(
            TINY_SAM2_CONFIG,
            ckpt_path=None,
            device="cpu",
            apply_postprocessing=False,
            hydra_overrides_extra=every,
        )
        torch.save({"model": model.state_dict()}, path)
    return {
        "backend": "sam2",
        "sam2_config": TINY_SAM2_CONFIG,
        "sam2_checkpoint": str(path),
        "sam2_overrides": every,
    }


# ----------------------------------------------------------------------------------------- OpenCLIP
# open_clip_pytorch_model.bin: torch.save of the state dict of open_clip's CLIP. The architecture, in
# open_clip's model config format, is a ViT vision tower and a text transformer shrunk: 32 px input,
# patches of 8, width 32, 2 layers each, 16-dim embedding, 16-token context.
TINY_CLIP_NAME = "tiny-random-ViT"
TINY_CLIP_ARCHITECTURE: dict[str, Any] = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def write_tiny_open_clip(folder: str | Path, *, seed: int = 0, **architecture_changes: Any) -> dict:
    """Write `folder`/tiny-random-ViT.json (the architecture, changed by `architecture_changes`) and
    `folder`/open_clip_pytorch_model.bin; the `features` section that builds and loads them."""
    import json

    import torch
    from open_clip.model import CLIP

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    architecture = {**TINY_CLIP_ARCHITECTURE, **architecture_changes}
    config_file = folder / f"{TINY_CLIP_NAME}.json"
    config_file.write_text(json.dumps(architecture, indent=2) + "\n")
    weights = folder / "open_clip_pytorch_model.bin"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.save(CLIP(**architecture).state_dict(), weights)
    return {
        "backend": "open_clip",
        "model_name": TINY_CLIP_NAME,
        "model_config_file": str(config_file),
        "pretrained": str(weights),
        "crop_size": architecture["vision_cfg"]["image_size"],
    }


def write_tiny_checkpoints(folder: str | Path, *, seed: int = 0) -> dict[str, dict]:
    """All three, each in its own subfolder of `folder`: {"masks": …, "tracks": …, "features": …}."""
    folder = Path(folder)
    return {
        "masks": write_tiny_sam(folder / "sam", seed=seed),
        "tracks": write_tiny_sam2(folder / "sam2", seed=seed),
        "features": write_tiny_open_clip(folder / "open_clip", seed=seed),
    }
