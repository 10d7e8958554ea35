"""Crop NMS of the `sam` backend against SAM's own generator, on crops that each find the same objects.

A random tiny SAM's masks spread over its whole input, so every mask of a sub-crop touches the crop's
inner edge and is dropped: crop NMS never sees two crops' masks of one object. Here the decoder's
answer is scripted instead, in the one place both generators ask for it (`SamPredictor.predict_torch`):
per point prompt and output, the region of the prompted pixel's colour within a disc around it, found
on the model's resized view of the crop, as logits (signed distance × a per-prompt steepness)
resampled to the crop. A whole ellipse is then found by the full image and by the sub-crop that holds
it, with edges that differ by the resampling: crop NMS must choose, and SAM prefers the smaller crop.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from masks_testkit import build_tiny_sam

from ccl.masks import LEVELS, MasksConfig
from ccl.masks.backends.sam import generate_levels

DISC_RADIUS = (6.0, 12.0, 40.0)  # per output (subpart, part, whole), in pixels of the model's view
COLOUR_TOL = 30  # a pixel belongs to the prompted region if every channel is within this of the prompt's


def scripted_predictor(model):
    """A SamPredictor of `model` (its encoder runs as usual) whose decoder answer is scripted."""
    import cv2
    import torch
    from segment_anything import SamPredictor

    class ScriptedPredictor(SamPredictor):
        def set_image(self, image, image_format="RGB"):
            super().set_image(image, image_format)
            self.view = self.transform.apply_image(image).astype(np.int16)  # the model's resized view

        def predict_torch(self, point_coords, point_labels, boxes=None, mask_input=None, **kwargs):
            h, w = self.view.shape[:2]
            logits, ious = [], []
            for x, y in point_coords[:, 0].tolist():
                px, py = min(int(x), w - 1), min(int(y), h - 1)
                same = (np.abs(self.view - self.view[py, px]).max(axis=2) <= COLOUR_TOL).astype(np.uint8)
                _, comp = cv2.connectedComponents(same, connectivity=4)
                region = comp == comp[py, px]
                dist = np.hypot(*np.mgrid[:h, :w] - np.array([py, px])[:, None, None])
                steep = 0.5 + 4.0 * ((7.31 * px + 3.17 * py) % 1.0)  # unstable (gentle) to stable (steep)
                per_output = []
                for k, radius in enumerate(DISC_RADIUS):
                    inside = (region & (dist <= radius)).astype(np.uint8)
                    signed = cv2.distanceTransform(inside, cv2.DIST_L2, 3) - cv2.distanceTransform(
                        1 - inside, cv2.DIST_L2, 3
                    )
                    per_output.append(steep * signed)
                    ious.append(0.5 + 0.45 * ((1.93 * px + 5.71 * py + 0.37 * k) % 1.0))
                logits.append(np.stack(per_output))
            low = torch.from_numpy(np.stack(logits)).float()  # [B, 3, h, w]
            masks = torch.nn.functional.interpolate(
                low, self.original_size, mode="bilinear", align_corners=False
            )
            iou = torch.tensor(ious, dtype=torch.float32).view(-1, 3)
            return masks, iou, low

    return ScriptedPredictor(model)


def sams_generator_on_one_output(predictor, cfg: MasksConfig, level: int):
    """SAM's own SamAutomaticMaskGenerator on `predictor`, its answer cut down to output `level`."""
    from segment_anything import SamAutomaticMaskGenerator

    gen = SamAutomaticMaskGenerator(
        predictor.model,
        points_per_side=cfg.points_per_side,
        points_per_batch=cfg.points_per_batch,
        pred_iou_thresh=cfg.pred_iou_thresh,
        stability_score_thresh=cfg.stability_score_thresh,
        stability_score_offset=cfg.stability_score_offset,
        box_nms_thresh=cfg.box_nms_thresh,
        crop_n_layers=cfg.crop_n_layers,
        crop_nms_thresh=cfg.crop_nms_thresh,
        crop_overlap_ratio=cfg.crop_overlap_ratio,
        crop_n_points_downscale_factor=cfg.crop_n_points_downscale_factor,
        min_mask_region_area=cfg.min_mask_region_area,
    )
    predict = predictor.predict_torch

    class OneOutput:  # the predictor, answering with output `level` only
        def __getattr__(self, name):
            return getattr(predictor, name)

        def predict_torch(self, *args, **kwargs):
            masks, iou, low = predict(*args, **kwargs)
            return masks[:, level : level + 1], iou[:, level : level + 1], low[:, level : level + 1]

    gen.predictor = OneOutput()
    return gen


def crop_nms_choices(gen, image) -> tuple[set[bytes], set[bytes]]:
    """The masks SAM's generator keeps across crops, with crop NMS preferring smaller, or larger, crops."""
    import torch
    from segment_anything.utils.amg import MaskData, generate_crop_boxes, rle_to_mask
    from torchvision.ops.boxes import batched_nms, box_area

    crop_boxes, layer_idxs = generate_crop_boxes(image.shape[:2], gen.crop_n_layers, gen.crop_overlap_ratio)
    data = MaskData()
    for crop_box, layer_idx in zip(crop_boxes, layer_idxs, strict=True):
        data.cat(gen._process_crop(image, crop_box, layer_idx, image.shape[:2]))
    area = box_area(data["crop_boxes"]).float()
    boxes, same_class = data["boxes"].float(), torch.zeros(len(area))
    return tuple(
        {
            rle_to_mask(data["rles"][i]).tobytes()
            for i in batched_nms(boxes, s, same_class, gen.crop_nms_thresh)
        }
        for s in (1 / area, area)
    )


def objects_image() -> np.ndarray:
    """[96, 128, 3] uint8: grey, with an object well inside each layer-1 crop (crops [0, 0, 80, 64],
    [48, 0, 128, 64], [0, 32, 80, 96], [48, 32, 128, 96]: 20 px clear of their inner edges), one with
    a smaller one inside it, and one at the centre that only the full image keeps."""
    h, w = 96, 128
    img = np.full((h, w, 3), 128, np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for (cx, cy, rx, ry), colour in zip(
        [
            (22, 22, 11, 9),
            (104, 20, 9, 8),
            (28, 76, 10, 9),
            (100, 74, 12, 10),
            (64, 48, 9, 9),
            (22, 22, 4, 4),
        ],
        [(200, 40, 40), (40, 200, 40), (40, 40, 200), (220, 200, 30), (30, 30, 30), (250, 250, 250)],
        strict=True,
    ):
        img[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1] = colour
    return img


@pytest.fixture(scope="module")
def case():
    defaults = MasksConfig()
    cfg = dataclasses.replace(defaults, backend="sim", points_per_side=8, points_per_batch=64)
    return cfg, scripted_predictor(build_tiny_sam()), objects_image()


def test_crop_nms_decides_between_crops_and_ccl_keeps_what_sam_keeps(case):
    cfg, predictor, image = case
    assert cfg.crop_n_layers == 1 and cfg.pred_iou_thresh == 0.7 and cfg.min_mask_region_area == 100
    levels = generate_levels(predictor, image, cfg=cfg, point_grids=_grids(cfg))
    decided = from_sub_crops = 0
    for li, lv in enumerate(levels):
        gen = sams_generator_on_one_output(predictor, dataclasses.replace(cfg, min_mask_region_area=0), li)
        smaller, larger = crop_nms_choices(gen, image)
        decided += smaller != larger
        anns = sams_generator_on_one_output(predictor, cfg, li).generate(image)
        assert anns, f"level {LEVELS[li]}: SAM keeps no mask"
        from_sub_crops += sum(a["crop_box"] != [0, 0, image.shape[1], image.shape[0]] for a in anns)
        want = sorted((a["segmentation"].tobytes(), a["predicted_iou"], a["stability_score"]) for a in anns)
        got = sorted(
            (m.tobytes(), float(p), float(s))
            for m, p, s in zip(lv.masks, lv.pred_iou, lv.stability, strict=True)
        )
        assert [g[0] for g in got] == [w[0] for w in want], f"level {LEVELS[li]}"
        np.testing.assert_allclose([g[1:] for g in got], [w[1:] for w in want], rtol=1e-6)
    assert from_sub_crops > 0  # sub-crops yield masks that SAM keeps
    assert decided > 0  # on some level the crop preference changes which masks are kept


def _grids(cfg: MasksConfig):
    from segment_anything.utils.amg import build_all_layer_point_grids

    return build_all_layer_point_grids(
        cfg.points_per_side, cfg.crop_n_layers, cfg.crop_n_points_downscale_factor
    )
