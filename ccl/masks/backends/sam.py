"""The `sam` backend: segment-anything's automatic mask generation, with SAM's three multimask outputs
per point prompt kept apart as the levels subpart / part / whole.

`SamAutomaticMaskGenerator` flattens the three outputs into one list; LangSplat patched SAM to keep
them apart. Here the generator's loop is rebuilt on segment-anything's own helpers (`SamPredictor`,
`MaskData`, `utils.amg`): per crop and point batch, the decoder runs once with `multimask_output=True`
and each output index goes through SAM's filters (predicted IoU, stability, crop edge) and box NMS
on its own; across crops, crop NMS and small-region cleanup run per level as in SAM.

Models are built from a registry (name → builder of an uninitialised model) and loaded through
`ccl.io.load_torch_weights` with a strict key and shape check.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ccl.device import resolve_device
from ccl.io.masks_h5 import LEVELS, LevelMasks
from ccl.masks.config import MasksConfig

log = logging.getLogger(__name__)

SAM_DOWNLOAD_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
SAM_CHECKPOINT_FILES = {
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_b": "sam_vit_b_01ec64.pth",
}


def _official(model_type: str) -> Callable[[], Any]:
    def build() -> Any:
        from segment_anything import sam_model_registry

        return sam_model_registry[model_type](checkpoint=None)

    return build


# model type → builder of the (randomly initialised) architecture; weights are loaded afterwards.
SAM_BUILDERS: dict[str, Callable[[], Any]] = {k: _official(k) for k in SAM_CHECKPOINT_FILES}


def _download_hint(model_type: str) -> str:
    name = SAM_CHECKPOINT_FILES.get(model_type)
    if name is None:
        return f"set masks.sam_checkpoint in config.yaml to the checkpoint of SAM model {model_type!r}"
    return (
        f"download {name} (SAM {model_type}) from {SAM_DOWNLOAD_URL}{name} and set "
        f"masks.sam_checkpoint: /path/to/{name} in config.yaml (masks.sam_model_type: {model_type}); "
        "on a synthetic scene, masks.backend: sim needs no weights"
    )


def check_checkpoint(cfg: MasksConfig, builders: Mapping[str, Callable[[], Any]]) -> Path:
    """The checkpoint path of `cfg`, refused (with what to download, and where to put it) if unusable."""
    if cfg.sam_model_type not in builders:
        raise ValueError(
            f"config.yaml: masks.sam_model_type {cfg.sam_model_type!r} is not one of {sorted(builders)}"
        )
    if cfg.sam_checkpoint is None:
        raise FileNotFoundError(
            f"config.yaml: masks.backend is 'sam' but masks.sam_checkpoint is not set; {_download_hint(cfg.sam_model_type)}"
        )
    path = Path(os.path.expanduser(cfg.sam_checkpoint))
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: SAM checkpoint not found (config.yaml: masks.sam_checkpoint); {_download_hint(cfg.sam_model_type)}"
        )
    return path


def load_sam(
    model_type: str,
    checkpoint: str | os.PathLike,
    *,
    builders: Mapping[str, Callable[[], Any]],
    device: str = "cpu",
) -> Any:
    """Build SAM `model_type` from `builders` and load `checkpoint` strictly (keys and shapes)."""
    from ccl.io.checkpoint import check_state_dict_keys, load_torch_weights

    model = builders[model_type]()
    state = load_torch_weights(checkpoint)
    expected = model.state_dict()
    try:
        check_state_dict_keys(checkpoint, state.keys(), expected.keys())
    except ValueError as e:
        raise ValueError(f"{e} (SAM {model_type}); {_download_hint(model_type)}") from None
    bad = [
        f"{k}: {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if bad:
        raise ValueError(
            f"{checkpoint}: tensor shapes do not match SAM {model_type} ({len(bad)}: {bad[:4]}); "
            f"is it the checkpoint of another model type? {_download_hint(model_type)}"
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
        from ccl.io.hashing import file_sha256

        builders = SAM_BUILDERS if builders is None else builders
        path = check_checkpoint(cfg, builders)  # before anything heavy
        device = resolve_device(device)
        log.info("loading SAM %s from %s on %s", cfg.sam_model_type, path, device)
        model = load_sam(cfg.sam_model_type, path, builders=builders, device=device)
        info = {
            "backend": "sam",
            "model": f"sam_{cfg.sam_model_type}",
            "checkpoint": str(path.absolute()),
            "checkpoint_sha256": file_sha256(path),
            "device": device,
            "simulated": False,
        }
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
    predictor: Any, image: np.ndarray, *, cfg: MasksConfig, point_grids: list[np.ndarray]
) -> tuple[LevelMasks, LevelMasks, LevelMasks]:
    """SAM automatic generation over the crops of `image`, one `LevelMasks` per multimask output."""
    import torch
    from segment_anything import SamAutomaticMaskGenerator
    from segment_anything.utils.amg import generate_crop_boxes, rle_to_mask
    from torchvision.ops.boxes import batched_nms, box_area

    h, w = image.shape[:2]
    crop_boxes, layer_idxs = generate_crop_boxes((h, w), cfg.crop_n_layers, cfg.crop_overlap_ratio)
    per_level = [_empty_data() for _ in LEVELS]
    with torch.no_grad():
        for crop_box, layer_idx in zip(crop_boxes, layer_idxs, strict=True):
            crop_data = _process_crop(predictor, image, crop_box, point_grids[layer_idx], cfg)
            for data, new in zip(per_level, crop_data, strict=True):
                data.cat(new)
    out = []
    for data in per_level:
        if len(crop_boxes) > 1 and len(data["rles"]) > 0:  # duplicates between crops: prefer smaller crops
            scores = 1 / box_area(data["crop_boxes"])
            keep = batched_nms(
                data["boxes"].float(),
                scores,
                torch.zeros(len(data["boxes"])),
                iou_threshold=cfg.crop_nms_thresh,
            )
            data.filter(keep)
        data.to_numpy()
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


def _empty_data() -> Any:
    import torch
    from segment_anything.utils.amg import MaskData

    return MaskData(
        rles=[],
        iou_preds=torch.zeros(0),
        stability_score=torch.zeros(0),
        boxes=torch.zeros(0, 4, dtype=torch.int64),
        points=torch.zeros(0, 2, dtype=torch.float64),
    )  # `crop_boxes` is set per crop, after the batches


def _process_crop(
    predictor: Any, image: np.ndarray, crop_box: list[int], grid: np.ndarray, cfg: MasksConfig
) -> list[Any]:
    """SAM's `_process_crop`, with each of the three multimask outputs kept in its own MaskData."""
    import torch
    from segment_anything.utils.amg import MaskData, batch_iterator, uncrop_boxes_xyxy, uncrop_points
    from torchvision.ops.boxes import batched_nms

    x0, y0, x1, y1 = crop_box
    cropped = image[y0:y1, x0:x1, :]
    crop_hw = cropped.shape[:2]
    predictor.set_image(cropped)
    points_for_image = grid * np.array(crop_hw)[None, ::-1]
    per_level = [_empty_data() for _ in LEVELS]
    for (points,) in batch_iterator(cfg.points_per_batch, points_for_image):
        coords = predictor.transform.apply_coords(points, crop_hw)
        in_points = torch.as_tensor(coords, device=predictor.device)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
        masks, iou_preds, _ = predictor.predict_torch(
            in_points[:, None, :], in_labels[:, None], multimask_output=True, return_logits=True
        )
        for lv in range(len(LEVELS)):
            data = MaskData(masks=masks[:, lv], iou_preds=iou_preds[:, lv], points=torch.as_tensor(points))
            per_level[lv].cat(_filter_batch(predictor, data, crop_box, image.shape[:2], cfg))
        del masks
    predictor.reset_image()
    for data in per_level:
        keep = batched_nms(
            data["boxes"].float(),
            data["iou_preds"].float(),
            torch.zeros(len(data["boxes"])),
            iou_threshold=cfg.box_nms_thresh,
        )
        data.filter(keep)
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = torch.tensor(crop_box, dtype=torch.int64).repeat(len(data["rles"]), 1)
    return per_level


def _filter_batch(
    predictor: Any, data: Any, crop_box: list[int], orig_hw: tuple[int, int], cfg: MasksConfig
) -> Any:
    """SAM's `_process_batch` filters on one level: predicted IoU, stability, crop edge; masks → RLE."""
    import torch
    from segment_anything.utils.amg import (
        batched_mask_to_box,
        calculate_stability_score,
        is_box_near_crop_edge,
        mask_to_rle_pytorch,
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
    data["rles"] = mask_to_rle_pytorch(data["masks"])
    del data["masks"]
    return data
