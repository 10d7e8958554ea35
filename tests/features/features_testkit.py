"""Helpers of the features tests: masks from the tiny synthetic scene's ground truth, a tiny OpenCLIP."""

from __future__ import annotations

from gt_masks_testkit import first_frames, gt_frame_masks, gt_ids, write_gt_masks

__all__ = [
    "TINY_CLIP_CFG",
    "TINY_CLIP_NAME",
    "first_frames",
    "gt_frame_masks",
    "gt_ids",
    "register_tiny_clip",
    "save_tiny_clip_weights",
    "write_gt_masks",
]


# A CLIP of the real open_clip architecture (ViT vision tower, text transformer), shrunk: 32 px input,
# patches of 8, width 32, 2 layers each, 16-dim embedding. Registered under this name by `tiny_clip`.
TINY_CLIP_NAME = "ccl-tiny-ViT"
TINY_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def register_tiny_clip(folder) -> str:
    import json

    import open_clip

    path = folder / f"{TINY_CLIP_NAME}.json"
    path.write_text(json.dumps(TINY_CLIP_CFG))
    open_clip.add_model_config(path)
    return TINY_CLIP_NAME


def save_tiny_clip_weights(path, *, seed: int = 0, **cfg_changes) -> None:
    """Random weights of the tiny CLIP (or of a variant with `cfg_changes`), saved by suffix."""
    import torch
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    cfg = {**TINY_CLIP_CFG, **cfg_changes}
    state = CLIP(**cfg).state_dict()
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
