"""Helpers of the features tests: masks from the tiny synthetic scene's ground truth, a tiny OpenCLIP."""

from __future__ import annotations

from gt_masks_testkit import first_frames, gt_frame_masks, gt_ids, write_gt_masks

__all__ = [
    "TINY_CLIP_CFG",
    "clip_cfg",
    "clip_encoder",
    "TINY_CLIP_NAME",
    "first_frames",
    "gt_frame_masks",
    "gt_ids",
    "open_clips_own_image_features",
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


def open_clips_own_image_features(name: str, weights, crops, **norm):
    """open_clip's own path for [B, S, S, 3] RGB uint8 crops: the model with its validation transform
    (PIL image → resize, centre crop, to tensor, normalise with the model's mean and std, or with
    `image_mean` and `image_std` as a tag sets them), the weights read with safetensors or torch.load,
    encode_image, L2-normalised."""
    import open_clip
    import torch
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None, **norm)
    if str(weights).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = torch.load(weights, weights_only=True)
    model.load_state_dict(state, strict=True)
    x = torch.stack([preprocess(Image.fromarray(c)) for c in crops])
    with torch.inference_mode():
        f = model.eval().encode_image(x)
    return torch.nn.functional.normalize(f, dim=-1).numpy()


def clip_cfg(tiny_clip, **kw):
    """The features section of the `tiny_clip` fixture's (model name, weights file), 32 px crops."""
    from ccl.features import FeaturesConfig

    name, weights = tiny_clip
    return FeaturesConfig(backend="open_clip", model_name=name, pretrained=str(weights), crop_size=32, **kw)


def clip_encoder(tiny_clip, **kw):
    """The open_clip backend's encoder of `clip_cfg(tiny_clip, **kw)` on the CPU."""
    from ccl.features.backends.open_clip import OpenClipEncoder

    return OpenClipEncoder(clip_cfg(tiny_clip, **kw), device="cpu")
