"""The `sam` backend: segment-anything's automatic mask generation, with SAM's three multimask outputs
per point prompt kept apart as the levels subpart / part / whole.

`SamAutomaticMaskGenerator` flattens the three outputs into one list; LangSplat patched SAM to keep
them apart. Here the generator's loop is rebuilt on segment-anything's own helpers (`SamPredictor`,
`MaskData`, `utils.amg`): per crop and point batch, the decoder runs once with `multimask_output=True`
and each output index goes through SAM's filters (predicted IoU, stability, crop edge) and box NMS
on its own; across crops, crop NMS and small-region cleanup run per level as in SAM.

Models are built from a registry (name → builder of an uninitialised model) and loaded through
`ccl.io.load_torch_weights` with a strict key and shape check. `masks.sam_overrides` replaces build
arguments of the model type (a smaller, resized or differently sized SAM): the model is then built
from segment-anything's modules the way its `build_sam._build_sam` builds the official ones.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ccl.config import config_source, config_where
from ccl.device import autocast, compute_dtype, resolve_device
from ccl.io.masks_h5 import LEVELS, LevelMasks
from ccl.masks.config import MasksConfig

log = logging.getLogger(__name__)

SAM_DOWNLOAD_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
SAM_CHECKPOINT_FILES = {
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_b": "sam_vit_b_01ec64.pth",
}


# masks.points_per_batch: auto, per device type. 256 prompts make about 5.5 GB of float32 logits at
# 988 x 731 px (3 outputs, SAM's 1024 px upsampling then the image's size), which with vit_h's
# encoder in bf16 fits a 24 GB card; a CPU keeps 64 (about 1.4 GB), the batch it always used.
AUTO_POINTS_PER_BATCH = {"cpu": 64, "cuda": 256}


def points_per_batch(cfg: MasksConfig, device: Any) -> int:
    """`masks.points_per_batch` on `device`: the configured number, or auto's for the device type."""
    if cfg.points_per_batch != "auto":
        return int(cfg.points_per_batch)
    return AUTO_POINTS_PER_BATCH["cuda" if str(device).startswith("cuda") else "cpu"]


def _official(model_type: str) -> Callable[[], Any]:
    def build() -> Any:
        from segment_anything import sam_model_registry

        return sam_model_registry[model_type](checkpoint=None)

    return build


# model type → builder of the (randomly initialised) architecture; weights are loaded afterwards.
SAM_BUILDERS: dict[str, Callable[[], Any]] = {k: _official(k) for k in SAM_CHECKPOINT_FILES}

# segment_anything/build_sam.py: the official model types differ only in `_build_sam`'s four arguments;
# the other sizes are constants there (window 14, 1024 px input, 16 px patches, 256-dim prompts and
# decoder). Together they are the build arguments `masks.sam_overrides` may replace.
SAM_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "vit_h": {
        "encoder_embed_dim": 1280,
        "encoder_depth": 32,
        "encoder_num_heads": 16,
        "encoder_global_attn_indexes": [7, 15, 23, 31],
    },
    "vit_l": {
        "encoder_embed_dim": 1024,
        "encoder_depth": 24,
        "encoder_num_heads": 16,
        "encoder_global_attn_indexes": [5, 11, 17, 23],
    },
    "vit_b": {
        "encoder_embed_dim": 768,
        "encoder_depth": 12,
        "encoder_num_heads": 12,
        "encoder_global_attn_indexes": [2, 5, 8, 11],
    },
}
SAM_BUILD_CONSTANTS: dict[str, int] = {
    "encoder_window_size": 14,
    "image_size": 1024,
    "vit_patch_size": 16,
    "prompt_embed_dim": 256,
}


def sam_architecture(model_type: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The build arguments of SAM `model_type` with `overrides` applied; refused, naming the key, if unusable."""
    where = config_where("masks.sam_overrides")
    if model_type not in SAM_ARCHITECTURES:
        raise ValueError(
            f"{where} replaces build arguments of an official model type, but masks.sam_model_type is "
            f"{model_type!r}; set masks.sam_model_type to one of {sorted(SAM_ARCHITECTURES)}"
        )
    arch = {**SAM_ARCHITECTURES[model_type], **SAM_BUILD_CONSTANTS}
    unknown = sorted(set(overrides) - set(arch))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; the SAM build arguments are {sorted(arch)}")
    arch.update(overrides)
    for key, value in arch.items():
        if key == "encoder_global_attn_indexes":
            ok, want = (
                isinstance(value, list | tuple) and all(_is_int(v) for v in value),
                "a list of integers",
            )
        else:
            ok, want = _is_int(value) and value >= 1, "an integer >= 1"
        if not ok:
            raise ValueError(f"{where}.{key}: expected {want}, got {value!r}")
    arch["encoder_global_attn_indexes"] = list(arch["encoder_global_attn_indexes"])
    depth = arch["encoder_depth"]
    outside = [i for i in arch["encoder_global_attn_indexes"] if not 0 <= i < depth]
    if outside:
        raise ValueError(
            f"{where}.encoder_global_attn_indexes: blocks {outside} do not exist in an encoder of depth "
            f"{depth} (blocks 0..{depth - 1})"
        )
    for key, divisor, why in (
        ("encoder_embed_dim", "encoder_num_heads", "each attention head takes an equal share of the width"),
        ("image_size", "vit_patch_size", "the image is cut into whole patches"),
    ):
        if arch[key] % arch[divisor]:
            raise ValueError(
                f"{where}.{key}: {arch[key]} is not a multiple of {divisor} {arch[divisor]} ({why})"
            )
    if arch["prompt_embed_dim"] % 16:
        raise ValueError(
            f"{where}.prompt_embed_dim: {arch['prompt_embed_dim']} is not a multiple of 16 (the mask "
            "decoder's 8 heads share half of it in its cross-attention)"
        )
    return arch


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def build_sam_architecture(arch: Mapping[str, Any]) -> Any:
    """segment-anything's Sam built as `build_sam._build_sam` builds it, with the sizes of `arch`
    (`sam_architecture`'s build arguments); randomly initialised, in eval mode."""
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    prompt_embed_dim, image_size = arch["prompt_embed_dim"], arch["image_size"]
    image_embedding_size = image_size // arch["vit_patch_size"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=arch["encoder_depth"],
            embed_dim=arch["encoder_embed_dim"],
            img_size=image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=arch["encoder_num_heads"],
            patch_size=arch["vit_patch_size"],
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(arch["encoder_global_attn_indexes"]),
            window_size=arch["encoder_window_size"],
            out_chans=prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim,
            image_embedding_size=(image_embedding_size, image_embedding_size),
            input_image_size=(image_size, image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_embed_dim, mlp_dim=2048, num_heads=8),
            transformer_dim=prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def _download_hint(model_type: str) -> str:
    name = SAM_CHECKPOINT_FILES.get(model_type)
    if name is None:
        return f"set masks.sam_checkpoint in {config_source()} to the checkpoint of SAM model {model_type!r}"
    fetched = f"; `make checkpoints` fetches it to checkpoints/{name}" if model_type == "vit_h" else ""
    return (
        f"download {name} (SAM {model_type}) from {SAM_DOWNLOAD_URL}{name} and set "
        f"masks.sam_checkpoint: /path/to/{name} in {config_source()} (masks.sam_model_type: {model_type}{fetched}); "
        "on a synthetic scene, masks.backend: sim needs no weights"
    )


def check_checkpoint(cfg: MasksConfig, builders: Mapping[str, Callable[[], Any]]) -> Path:
    """The checkpoint path of `cfg`, refused (with what to download, and where to put it) if unusable;
    `masks.sam_overrides` too."""
    if cfg.sam_overrides:
        sam_architecture(cfg.sam_model_type, cfg.sam_overrides)
    elif cfg.sam_model_type not in builders:
        raise ValueError(
            f"{config_where('masks.sam_model_type')} {cfg.sam_model_type!r} is not one of {sorted(builders)}"
        )
    hint = _download_hint(cfg.sam_model_type)
    if cfg.sam_overrides:  # not an official architecture: no official file to point to
        hint = (
            "set masks.sam_checkpoint to the checkpoint of the SAM that masks.sam_overrides describes "
            f"(or, for an official SAM, remove masks.sam_overrides and {hint})"
        )
    if cfg.sam_checkpoint is None:
        raise FileNotFoundError(
            f"{config_where('masks.backend')} is 'sam' but masks.sam_checkpoint is not set; {hint}"
        )
    path = Path(os.path.expanduser(cfg.sam_checkpoint))
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: SAM checkpoint not found ({config_where('masks.sam_checkpoint')}); {hint}"
        )
    return path


def check(
    cfg: MasksConfig, scene: Any = None, *, builders: Mapping[str, Callable[[], Any]] | None = None
) -> None:
    """The user's model type, overrides and checkpoint file, before any work (`check_checkpoint`)."""
    check_checkpoint(cfg, SAM_BUILDERS if builders is None else builders)


def build(
    cfg: MasksConfig,
    *,
    scene: Any,
    device: str,
    seed: int,
    load_image: Callable[[Any], np.ndarray],
    builders: Mapping[str, Callable[[], Any]] | None = None,
) -> SamBackend:
    """SAM of `cfg` with its checkpoint loaded strictly; `scene` and `seed` are not needed (SAM's
    automatic generation is deterministic, and the images come through `load_image`)."""
    return SamBackend.build(cfg=cfg, device=device, load_image=load_image, builders=builders)


def check_weights(cfg: MasksConfig) -> None:
    """Preflight: the checkpoint exists and holds the configured SAM's tensors, names and shapes (cheap:
    the model is built on the meta device and the file's tensors are never read)."""
    from ccl.io.checkpoint import check_weight_shapes

    path = check_checkpoint(cfg, SAM_BUILDERS)
    if cfg.sam_overrides:
        what = f"SAM {cfg.sam_model_type} with masks.sam_overrides {dict(cfg.sam_overrides)}"
        fix = "masks.sam_overrides must give the sizes the checkpoint was made with"
    else:
        what = f"SAM {cfg.sam_model_type} (masks.sam_model_type)"
        fix = f"set masks.sam_model_type to the checkpoint's model, or {_download_hint(cfg.sam_model_type)}"
    check_weight_shapes(path, expected_weight_shapes(cfg), model=what, fix=fix)


def expected_weight_shapes(cfg: MasksConfig) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of the SAM that `cfg` configures (built on the meta device)."""
    from ccl.io.checkpoint import meta_state_shapes

    if cfg.sam_overrides:
        arch = sam_architecture(cfg.sam_model_type, cfg.sam_overrides)
        return meta_state_shapes(lambda: build_sam_architecture(arch))
    return meta_state_shapes(SAM_BUILDERS[cfg.sam_model_type])


def load_sam(
    model_type: str,
    checkpoint: str | os.PathLike,
    *,
    builders: Mapping[str, Callable[[], Any]],
    device: str = "cpu",
    overrides: Mapping[str, Any] | None = None,
) -> Any:
    """Build SAM `model_type` from `builders` (or, with `overrides`, from its build arguments with those
    replaced) and load `checkpoint` strictly (keys and shapes)."""
    from ccl.io.checkpoint import check_state_dict_keys, load_torch_weights

    if overrides:
        model = build_sam_architecture(sam_architecture(model_type, overrides))
        what = f"SAM {model_type} with masks.sam_overrides {dict(overrides)}"
        hint = (
            "masks.sam_overrides must give the sizes the checkpoint was made with "
            "(the file's tensor shapes), or be removed for an official checkpoint"
        )
    else:
        model = builders[model_type]()
        what, hint = f"SAM {model_type}", _download_hint(model_type)
    state = load_torch_weights(checkpoint)
    expected = model.state_dict()
    try:
        check_state_dict_keys(checkpoint, state.keys(), expected.keys())
    except ValueError as e:
        raise ValueError(f"{e} ({what}); {hint}") from None
    bad = [
        f"{k}: {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if bad:
        raise ValueError(
            f"{checkpoint}: tensor shapes do not match {what} ({len(bad)}: {bad[:4]}); "
            f"is it the checkpoint of another model size? {hint}"
        )
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


class SamBackend:
    """SAM per-level automatic masks for one image at a time."""

    def __init__(self, model: Any, *, cfg: MasksConfig, load_image: Callable[[Any], np.ndarray], info: dict):
        from segment_anything import SamPredictor
        from segment_anything.utils.amg import build_all_layer_point_grids

        self.cfg = cfg
        self.predictor = SamPredictor(model)
        self.load_image = load_image
        self.point_grids = build_all_layer_point_grids(
            cfg.points_per_side, cfg.crop_n_layers, cfg.crop_n_points_downscale_factor
        )
        self.model_info = info

    @classmethod
    def build(
        cls,
        *,
        cfg: MasksConfig,
        device: str,
        load_image: Callable[[Any], np.ndarray],
        builders: Mapping[str, Callable[[], Any]] | None = None,
    ) -> SamBackend:
        from ccl.io.hashing import weights_sha256

        builders = SAM_BUILDERS if builders is None else builders
        path = check_checkpoint(cfg, builders)  # before anything heavy
        device = resolve_device(device)
        log.info("loading SAM %s from %s on %s", cfg.sam_model_type, path, device)
        model = load_sam(
            cfg.sam_model_type, path, builders=builders, device=device, overrides=cfg.sam_overrides
        )
        info = {
            "backend": "sam",
            "model": f"sam_{cfg.sam_model_type}",
            "checkpoint": str(path.absolute()),
            "checkpoint_sha256": weights_sha256(path),
            "device": device,
            # what the image encoder computed in: masks.precision on CUDA, float32 on a CPU
            "encoder_dtype": compute_dtype(device, cfg.precision),
            "simulated": False,
        }
        if cfg.sam_overrides:  # not the official architecture: what was changed, and what it came to
            info["sam_overrides"] = dict(cfg.sam_overrides)
            info["architecture"] = sam_architecture(cfg.sam_model_type, cfg.sam_overrides)
        return cls(model, cfg=cfg, load_image=load_image, info=info)

    def close(self) -> None:
        self.predictor.reset_image()

    def frame_levels(self, index: int, camera: Any) -> tuple[LevelMasks, LevelMasks, LevelMasks]:
        image = self.load_image(camera)
        want = (camera.height, camera.width, 3)
        if image.shape != want or image.dtype != np.uint8:
            raise ValueError(
                f"{camera.image_path}: loaded as {image.dtype} {image.shape}, expected uint8 {want}"
            )
        return generate_levels(self.predictor, image, cfg=self.cfg, point_grids=self.point_grids)


def generate_levels(
    predictor: Any,
    image: np.ndarray,
    *,
    cfg: MasksConfig,
    point_grids: list[np.ndarray],
    fast: bool | None = None,
) -> tuple[LevelMasks, LevelMasks, LevelMasks]:
    """SAM automatic generation over the crops of `image`, one `LevelMasks` per multimask output.

    `fast` (None: on CUDA only) takes `sam_fast.FastCropSteps`' encoder passes and host transfers; a CPU
    keeps `CropSteps`, SAM's own, so that its masks stay those of SAM's generator bit for bit."""
    import torch
    from segment_anything import SamAutomaticMaskGenerator
    from segment_anything.utils.amg import generate_crop_boxes, rle_to_mask
    from torchvision.ops.boxes import batched_nms, box_area

    h, w = image.shape[:2]
    device = predictor.device
    crop_boxes, layer_idxs = generate_crop_boxes((h, w), cfg.crop_n_layers, cfg.crop_overlap_ratio)
    if fast is None:
        fast = str(device).startswith("cuda")
    if fast:
        from ccl.masks.backends.sam_fast import FastCropSteps

        steps: CropSteps = FastCropSteps(crop_boxes, layer_idxs)
    else:
        steps = CropSteps()
    per_level = [_empty_data(device) for _ in LEVELS]
    with torch.no_grad():
        for crop_box, layer_idx in zip(crop_boxes, layer_idxs, strict=True):
            crop_data = _process_crop(predictor, image, crop_box, point_grids[layer_idx], cfg, steps)
            for data, new in zip(per_level, crop_data, strict=True):
                data.cat(new)
    out = []
    for data in per_level:
        if len(crop_boxes) > 1 and len(data["rles"]) > 0:  # duplicates between crops: prefer smaller crops
            scores = 1 / box_area(data["crop_boxes"])
            keep = batched_nms(
                data["boxes"].float(),
                scores,
                torch.zeros_like(data["boxes"][:, 0]),
                iou_threshold=cfg.crop_nms_thresh,
            )
            steps.filter(data, keep)
        data.to_numpy()  # the only transfer to the host: the kept masks' RLEs are already there
        if cfg.min_mask_region_area > 0 and len(data["rles"]) > 0:
            data = SamAutomaticMaskGenerator.postprocess_small_regions(
                data, cfg.min_mask_region_area, max(cfg.box_nms_thresh, cfg.crop_nms_thresh)
            )
        rles = data["rles"]
        masks = np.stack([rle_to_mask(r) for r in rles]) if rles else np.zeros((0, h, w), bool)
        out.append(
            LevelMasks.from_masks(masks, np.asarray(data["iou_preds"]), np.asarray(data["stability_score"]))
        )
    return tuple(out)  # type: ignore[return-value]


def _empty_data(device: Any) -> Any:
    """An empty MaskData whose tensors are on `device`, the predictor's: every batch is joined to it with
    `torch.cat`, which on CUDA refuses tensors on two devices."""
    import torch
    from segment_anything.utils.amg import MaskData

    return MaskData(
        rles=[],
        iou_preds=torch.zeros(0, device=device),
        stability_score=torch.zeros(0, device=device),
        boxes=torch.zeros(0, 4, dtype=torch.int64, device=device),
        points=torch.zeros(0, 2, dtype=torch.float64, device=device),
    )  # `crop_boxes` is set per crop, after the batches


class CropSteps:
    """The steps of `_process_crop` that a faster path may do otherwise with the same outputs
    (`sam_fast.FastCropSteps`): here SAM's own, as its `SamAutomaticMaskGenerator` does them."""

    def set_crop_image(
        self, predictor: Any, image: np.ndarray, crop_box: list[int], cfg: MasksConfig
    ) -> None:
        """The predictor's image embedding set to the crop's: one encoder pass."""
        x0, y0, x1, y1 = crop_box
        with autocast(str(predictor.device), cfg.precision):  # the encoder: nearly all of SAM's compute
            predictor.set_image(image[y0:y1, x0:x1, :])

    def to_rle(self, masks: Any) -> list[dict[str, Any]]:
        """[B, H, W] bool masks → SAM's uncompressed RLEs."""
        from segment_anything.utils import amg

        return amg.mask_to_rle_pytorch(masks)

    def filter(self, data: Any, keep: Any) -> None:
        """`data` (a MaskData, its RLEs included) cut down to the indices `keep`."""
        data.filter(keep)


def _process_crop(
    predictor: Any,
    image: np.ndarray,
    crop_box: list[int],
    grid: np.ndarray,
    cfg: MasksConfig,
    steps: CropSteps,
) -> list[Any]:
    """SAM's `_process_crop`, with each of the three multimask outputs kept in its own MaskData."""
    import torch
    from segment_anything.utils.amg import MaskData, batch_iterator, uncrop_boxes_xyxy, uncrop_points
    from torchvision.ops.boxes import batched_nms

    x0, y0, x1, y1 = crop_box
    crop_hw = (y1 - y0, x1 - x0)
    steps.set_crop_image(predictor, image, crop_box, cfg)
    # the decoder and every threshold in float32 (a no-op on a CPU and with fp32: the same tensor)
    predictor.features = predictor.features.float()
    points_for_image = grid * np.array(crop_hw)[None, ::-1]
    device = predictor.device
    per_level = [_empty_data(device) for _ in LEVELS]
    for (points,) in batch_iterator(points_per_batch(cfg, predictor.device), points_for_image):
        coords = predictor.transform.apply_coords(points, crop_hw)
        in_points = torch.as_tensor(coords, device=device)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
        masks, iou_preds, _ = predictor.predict_torch(
            in_points[:, None, :], in_labels[:, None], multimask_output=True, return_logits=True
        )
        for lv in range(len(LEVELS)):
            data = MaskData(
                masks=masks[:, lv], iou_preds=iou_preds[:, lv], points=torch.as_tensor(points, device=device)
            )
            per_level[lv].cat(_filter_batch(predictor, data, crop_box, image.shape[:2], cfg, steps))
        del masks
    predictor.reset_image()
    for data in per_level:
        keep = batched_nms(
            data["boxes"].float(),
            data["iou_preds"].float(),
            torch.zeros_like(data["boxes"][:, 0]),
            iou_threshold=cfg.box_nms_thresh,
        )
        steps.filter(data, keep)
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = torch.tensor(crop_box, dtype=torch.int64, device=device).repeat(
            len(data["rles"]), 1
        )
    return per_level


def _filter_batch(
    predictor: Any,
    data: Any,
    crop_box: list[int],
    orig_hw: tuple[int, int],
    cfg: MasksConfig,
    steps: CropSteps,
) -> Any:
    """SAM's `_process_batch` filters on one level: predicted IoU, stability, crop edge; masks → RLE."""
    import torch
    from segment_anything.utils.amg import (
        batched_mask_to_box,
        calculate_stability_score,
        is_box_near_crop_edge,
        uncrop_masks,
    )

    orig_h, orig_w = orig_hw
    threshold = predictor.model.mask_threshold
    if cfg.pred_iou_thresh > 0.0:
        data.filter(data["iou_preds"] > cfg.pred_iou_thresh)
    data["stability_score"] = calculate_stability_score(data["masks"], threshold, cfg.stability_score_offset)
    if cfg.stability_score_thresh > 0.0:
        data.filter(data["stability_score"] >= cfg.stability_score_thresh)
    data["masks"] = data["masks"] > threshold
    data["boxes"] = batched_mask_to_box(data["masks"])
    keep = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
    if not torch.all(keep):
        data.filter(keep)
    data["masks"] = uncrop_masks(data["masks"], crop_box, orig_h, orig_w)
    data["rles"] = steps.to_rle(data["masks"])
    del data["masks"]
    return data
