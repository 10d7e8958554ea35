"""The real `sam` backend, run with a tiny randomly initialised SAM of the real architecture."""

from __future__ import annotations

import dataclasses
import re

import h5py
import numpy as np
import pytest
from masks_testkit import (
    TINY_BUILDERS,
    blob_image,
    build_tiny_sam,
    build_tiny_sam_for_default_thresholds,
    image_scene,
)

from ccl.io import file_sha256
from ccl.masks import LEVELS, MasksConfig, generate_masks, merge_masks, open_masks, open_raw_masks
from ccl.masks.backends.sam import generate_levels, load_sam


def _sam_generator_on_one_output(model, cfg: MasksConfig, level: int, prepare=None):
    """SAM's own SamAutomaticMaskGenerator, with the decoder cut down to multimask output `level`
    (after `prepare`, if given, has changed its predictor)."""
    from segment_anything import SamAutomaticMaskGenerator

    gen = SamAutomaticMaskGenerator(
        model,
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
    if prepare is not None:
        prepare(gen.predictor)
    predict = gen.predictor.predict_torch

    def one_output(*args, **kwargs):
        masks, iou, low = predict(*args, **kwargs)
        return masks[:, level : level + 1], iou[:, level : level + 1], low[:, level : level + 1]

    gen.predictor.predict_torch = one_output
    return gen


def _assert_each_level_is_sams_generator_on_that_output(model, image, cfg: MasksConfig, prepare=None) -> None:
    from segment_anything import SamPredictor
    from segment_anything.utils.amg import build_all_layer_point_grids

    grids = build_all_layer_point_grids(
        cfg.points_per_side, cfg.crop_n_layers, cfg.crop_n_points_downscale_factor
    )
    predictor = SamPredictor(model)
    if prepare is not None:
        prepare(predictor)
    levels = generate_levels(predictor, image, cfg=cfg, point_grids=grids)
    assert all(len(lv) > 0 for lv in levels)  # something to compare on every level
    for li, lv in enumerate(levels):
        anns = _sam_generator_on_one_output(model, cfg, li, prepare).generate(image)
        want = sorted((a["segmentation"].tobytes(), a["predicted_iou"], a["stability_score"]) for a in anns)
        got = sorted(
            (m.tobytes(), float(p), float(s))
            for m, p, s in zip(lv.masks, lv.pred_iou, lv.stability, strict=True)
        )
        assert [g[0] for g in got] == [w[0] for w in want], f"level {LEVELS[li]}"
        np.testing.assert_allclose([g[1:] for g in got], [w[1:] for w in want], rtol=1e-6)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(crop_n_layers=0, box_nms_thresh=1.0, min_mask_region_area=0),
        pytest.param(
            dict(crop_n_layers=1, box_nms_thresh=0.7, min_mask_region_area=30), marks=pytest.mark.slow
        ),
    ],
)
def test_each_level_is_what_sams_generator_makes_of_that_output_alone(tiny_sam_cfg, overrides):
    cfg = MasksConfig(**{**tiny_sam_cfg.__dict__, **overrides})
    _assert_each_level_is_sams_generator_on_that_output(build_tiny_sam(), blob_image(), cfg)


def test_at_the_default_thresholds_each_level_is_sams_generator_on_that_output(tiny_sam_cfg, monkeypatch):
    """The product's filters on: predicted IoU, stability, crop-edge and small-region removal each keep
    some masks and drop (or change) others in SAM's own generator, and ccl's levels equal its output."""
    import segment_anything.automatic_mask_generator as sam_amg

    cfg = _default_generation(tiny_sam_cfg)
    model, image = build_tiny_sam_for_default_thresholds(), blob_image(96, 128)

    # What SAM's generator decides, per level: recorded from the helpers it calls.
    seen: dict[str, list] = {"iou": [], "stability": [], "near_edge": [], "changed": []}

    def spy(name, record):
        real = getattr(sam_amg, name)

        def wrapped(*args, **kwargs):
            out = real(*args, **kwargs)
            record(out)
            return out

        monkeypatch.setattr(sam_amg, name, wrapped)

    spy("calculate_stability_score", lambda s: seen["stability"].extend(s.tolist()))
    spy("is_box_near_crop_edge", lambda near: seen["near_edge"].extend(near.tolist()))
    spy("remove_small_regions", lambda out: seen["changed"].append(out[1]))
    for li in range(len(LEVELS)):
        for v in seen.values():
            v.clear()
        gen = _sam_generator_on_one_output(model, cfg, li)
        predict = gen.predictor.predict_torch

        def recorded(*args, _predict=predict, **kwargs):
            out = _predict(*args, **kwargs)
            seen["iou"].extend(out[1].reshape(-1).tolist())
            return out

        gen.predictor.predict_torch = recorded
        assert gen.generate(image), f"level {LEVELS[li]}: SAM keeps no mask"
        iou, stability = np.array(seen["iou"]), np.array(seen["stability"])
        level = f"level {LEVELS[li]}"
        assert 0 < (iou > cfg.pred_iou_thresh).sum() < len(iou), level
        assert 0 < (stability >= cfg.stability_score_thresh).sum() < len(stability), level
        assert 0 < sum(seen["near_edge"]) < len(seen["near_edge"]), level
        assert any(seen["changed"]), level  # small-region removal changes a mask
    monkeypatch.undo()
    _assert_each_level_is_sams_generator_on_that_output(model, image, cfg)


def test_without_nms_the_iou_and_stability_filters_keep_what_sams_generator_keeps(tiny_sam_cfg):
    """At the product's predicted-IoU and stability thresholds, with box NMS off and one crop (so that
    NMS does not hide what the filters decide): each filter changes SAM's output on some level, and
    ccl's levels equal it."""
    cfg = dataclasses.replace(
        _default_generation(tiny_sam_cfg), crop_n_layers=0, box_nms_thresh=1.0, min_mask_region_area=0
    )
    model, image = build_tiny_sam_for_default_thresholds(), blob_image()

    def counts(c: MasksConfig) -> list[int]:
        return [len(_sam_generator_on_one_output(model, c, li).generate(image)) for li in range(len(LEVELS))]

    kept = counts(cfg)
    for off in ("pred_iou_thresh", "stability_score_thresh"):
        assert counts(dataclasses.replace(cfg, **{off: 0.0})) != kept, off
    _assert_each_level_is_sams_generator_on_that_output(model, image, cfg)


def test_a_level_where_sam_keeps_nothing_is_empty_at_the_images_size(tiny_sam_cfg):
    """A frame where SAM's generator keeps no mask (the tiny model's predicted IoUs lie far below 0.99):
    every level is empty, with the image's height and width, and small-region cleanup has nothing to do."""
    from segment_anything import SamPredictor
    from segment_anything.utils.amg import build_all_layer_point_grids

    cfg = dataclasses.replace(tiny_sam_cfg, pred_iou_thresh=0.99, min_mask_region_area=20)
    model, image = build_tiny_sam(), blob_image()
    assert all(
        _sam_generator_on_one_output(model, cfg, li).generate(image) == [] for li in range(len(LEVELS))
    )
    grids = build_all_layer_point_grids(cfg.points_per_side, 0, 1)
    for lv in generate_levels(SamPredictor(model), image, cfg=cfg, point_grids=grids):
        assert lv.masks.shape == (0, 48, 64) and lv.masks.dtype == bool
        assert lv.pred_iou.shape == lv.stability.shape == lv.area.shape == (0,)
        assert lv.boxes_xyxy.shape == (0, 4)


def test_logits_on_the_threshold_and_a_mask_of_no_pixel_are_kept_as_sams_generator_keeps_them(tiny_sam_cfg):
    """The decoder's logits rounded to integers (many exactly 0, on SAM's mask threshold, which a mask
    leaves out), each batch's first mask below −1 everywhere (no pixel; its stability 0 / 0 is NaN,
    and SAM's generator keeps it when the stability filter is off) and its second prompt's predicted
    IoUs exactly on masks.pred_iou_thresh (left out): ccl's levels equal SAM's."""
    import torch

    seen = {"zeros": 0}

    def rounded(predictor) -> None:
        predict = predictor.predict_torch

        def predict_rounded(*args, **kwargs):
            masks, iou, low = predict(*args, **kwargs)
            masks, iou = torch.round(masks), torch.full_like(iou, 0.9)
            masks[0] = -5.0
            iou[1] = 0.7  # the second prompt's predicted IoUs on the threshold: left out
            seen["zeros"] += int((masks == 0).sum())
            return masks, iou, low

        predictor.predict_torch = predict_rounded

    cfg = dataclasses.replace(tiny_sam_cfg, box_nms_thresh=1.0, pred_iou_thresh=0.7)
    model, image = build_tiny_sam_for_default_thresholds(), blob_image()
    anns = _sam_generator_on_one_output(model, cfg, 0, rounded).generate(image)
    assert seen["zeros"] > 0
    assert any(a["area"] == 0 and np.isnan(a["stability_score"]) for a in anns)
    _assert_each_level_is_sams_generator_on_that_output(model, image, cfg, rounded)


def _default_generation(cfg: MasksConfig) -> MasksConfig:
    """`cfg` with every threshold and crop setting of SAM's generation at the product's default."""
    defaults = MasksConfig()
    assert defaults.pred_iou_thresh > 0 and defaults.stability_score_thresh > 0
    assert defaults.crop_n_layers >= 1 and defaults.min_mask_region_area > 0
    generation = (
        "pred_iou_thresh",
        "stability_score_thresh",
        "stability_score_offset",
        "box_nms_thresh",
        "crop_n_layers",
        "crop_nms_thresh",
        "crop_overlap_ratio",
        "crop_n_points_downscale_factor",
        "min_mask_region_area",
    )
    return dataclasses.replace(cfg, **{k: getattr(defaults, k) for k in generation}, points_per_batch=64)


def _objects_image() -> np.ndarray:
    """[96, 128, 3] uint8: flat-coloured rectangles on grey. With one crop layer the sub-crops are
    (x0, y0, x1, y1) (0, 0, 80, 64), (0, 32, 80, 96), (48, 0, 128, 64), (48, 32, 128, 96); the first
    two rectangles lie inside a sub-crop, 20 px or more from its inner edges, and under grid points
    of both that sub-crop and the whole image (a 4 × 4 grid: x 16, 48, 80, 112; y 12, 36, 60, 84)."""
    img = np.full((96, 128, 3), 128, np.uint8)
    img[6:29, 8:35] = (200, 40, 40)  # in (0, 0, 80, 64): its points (10|30, 8|24), the image's (16, 12)
    img[70:92, 94:122] = (40, 40, 200)  # in (48, 32, 128, 96): its points (98|118, 72|88), (112, 84)
    img[40:60, 40:70] = (40, 200, 40)  # across the crop borders
    return img


def _decoder_of_objects(predictor) -> None:
    """Turn `predictor`'s masks into those of an ideal segmenter of flat-coloured objects: output k's
    logits are slopes[k] × the signed distance (px) to the edge of the same-coloured connected region
    under the point prompt, in the image or crop it was set to; its predicted IoUs are the model's
    squashed into (0.75, 0.95). Every mask passes the IoU and stability filters (a distance is ≥ 1 px
    on either side of an edge, so a slope > 1 puts every logit outside ±1): what this exercises is
    the crop-edge filter and the NMS steps."""
    import cv2
    import torch

    slopes = (4.0, 2.0, 1.5)
    set_image, predict = predictor.set_image, predictor.predict_torch
    seen = {}

    def set_and_keep(image, *args, **kwargs):
        seen["image"] = image
        return set_image(image, *args, **kwargs)

    def predict_objects(point_coords, *args, **kwargs):
        masks, iou, low = predict(point_coords, *args, **kwargs)
        image = seen["image"]
        h, w = predictor.original_size
        in_h, in_w = predictor.input_size
        xy = point_coords[:, 0].double().cpu().numpy() * np.array([w / in_w, h / in_h])
        designed = []
        for x, y in np.rint(xy).astype(int):
            same = (image == image[y, x]).all(-1).astype(np.uint8)
            _, label = cv2.connectedComponents(same, connectivity=4)
            region = (label == label[y, x]).astype(np.uint8)
            inside = cv2.distanceTransform(region, cv2.DIST_L2, 3)
            outside = cv2.distanceTransform(1 - region, cv2.DIST_L2, 3)
            designed.append([k * (inside - outside) for k in slopes])
        logits = torch.as_tensor(np.array(designed), dtype=masks.dtype, device=masks.device)
        return logits, 0.75 + 0.2 * torch.sigmoid(iou), low

    predictor.set_image, predictor.predict_torch = set_and_keep, predict_objects


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        # crop NMS the only step that removes the duplicates (small-region cleanup's NMS would remove
        # them too), and only the perfectly stable masks kept: the designed logits lie outside ±1, so
        # every stability is exactly 1.0
        {"min_mask_region_area": 0, "stability_score_thresh": 1.0},
    ],
)
def test_crop_nms_prefers_the_smaller_crop_as_sams_generator_does(tiny_sam_cfg, monkeypatch, overrides):
    """Objects inside a sub-crop are found in it and in the whole image: SAM's crop NMS keeps the
    sub-crop's mask and drops the whole image's; ccl's levels equal SAM's generator mask for mask."""
    import segment_anything.automatic_mask_generator as sam_amg

    cfg = dataclasses.replace(_default_generation(tiny_sam_cfg), **overrides)
    model, image = build_tiny_sam_for_default_thresholds(), _objects_image()
    whole = [0, 0, image.shape[1], image.shape[0]]
    decided: dict[str, list] = {}
    box_area, batched_nms = sam_amg.box_area, sam_amg.batched_nms

    def crop_areas(boxes):  # SAM calls it once, on the crop boxes, just before its crop NMS
        decided["crop_boxes"] = boxes.tolist()
        return box_area(boxes)

    def nms(boxes, scores, idxs, iou_threshold):
        keep = batched_nms(boxes, scores, idxs, iou_threshold)
        if "crop_boxes" in decided and "keep" not in decided:
            decided["keep"] = keep.tolist()
        return keep

    monkeypatch.setattr(sam_amg, "box_area", crop_areas)
    monkeypatch.setattr(sam_amg, "batched_nms", nms)
    for li in range(len(LEVELS)):
        decided.clear()
        assert _sam_generator_on_one_output(model, cfg, li, _decoder_of_objects).generate(image)
        crops = decided["crop_boxes"]
        kept = set(decided["keep"])
        dropped = set(range(len(crops))) - kept
        level = f"level {LEVELS[li]}"
        assert any(crops[i] != whole for i in kept), level  # a sub-crop's mask kept
        assert any(crops[i] == whole for i in dropped), level  # over the whole image's duplicate
    monkeypatch.undo()
    _assert_each_level_is_sams_generator_on_that_output(model, image, cfg, _decoder_of_objects)


def test_generate_masks_writes_the_raw_layout_and_merges(tmp_path, tiny_sam_cfg, tiny_sam_checkpoint):
    scene = image_scene(tmp_path / "scene", [blob_image(seed=0), blob_image(seed=1)])
    cfg = MasksConfig(**{**tiny_sam_cfg.__dict__, "box_nms_thresh": 1.0, "mask_nms_iou_thresh": 0.95})
    raw = generate_masks(
        scene, cfg=cfg, out_path=tmp_path / "raw.h5", device="cpu", sam_builders=TINY_BUILDERS
    )
    with open_raw_masks(raw) as r:
        assert r.frame_names == ["frame_00000", "frame_00001"]
        assert r.model["backend"] == "sam" and r.model["simulated"] is False
        assert r.model["checkpoint_sha256"] == file_sha256(tiny_sam_checkpoint)
        assert r.params["points_per_side"] == 4 and "contested_pixel_sp" not in r.params
        frames = list(r)
    import torch
    from segment_anything.utils.amg import batched_mask_to_box

    assert sum(f.n_masks for f in frames) > 0
    for fr in frames:
        for lv in fr.levels():
            assert lv.masks.shape[1:] == (48, 64) and lv.masks.dtype == bool
            assert (lv.area == lv.masks.reshape(len(lv), -1).sum(1)).all() and (lv.area > 0).all()
            want = batched_mask_to_box(torch.from_numpy(lv.masks)).numpy().reshape(len(lv), 4)
            np.testing.assert_array_equal(lv.boxes_xyxy, want)
    with h5py.File(raw) as f:
        for lv in LEVELS:
            g = f["frame_00000"][lv]
            assert set(g) == {"masks_packed", "pred_iou", "stability", "area", "boxes_xyxy"}
            assert g["masks_packed"].dtype == np.uint8 and g["pred_iou"].dtype == np.float32
            assert g["area"].dtype == np.int64 and g["boxes_xyxy"].shape[1:] == (4,)
    merged = merge_masks(raw, scale="all", cfg=cfg, out_path=tmp_path / "all.h5")
    with open_masks(merged) as r:
        assert r.model["backend"] == "sam"
        for fm in r:
            assert fm.n_masks == 0 or fm.segmentation.max() == fm.n_masks - 1
            assert (fm.area >= cfg.min_merged_area).all()


def test_checkpoint_loads_strictly(tiny_sam_checkpoint):
    import torch

    model = load_sam("tiny", tiny_sam_checkpoint, builders=TINY_BUILDERS)
    saved = torch.load(tiny_sam_checkpoint, weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k


def test_checkpoint_with_a_key_removed_is_refused_naming_it(tmp_path, tiny_sam_checkpoint):
    import torch

    state = torch.load(tiny_sam_checkpoint, weights_only=True)
    key = "mask_decoder.iou_prediction_head.layers.0.weight"
    del state[key]
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(ValueError, match=re.escape(key)):
        load_sam("tiny", bad, builders=TINY_BUILDERS)


def test_checkpoint_of_another_shape_is_refused(tmp_path, tiny_sam_checkpoint):
    import torch

    state = torch.load(tiny_sam_checkpoint, weights_only=True)
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 8)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(
        ValueError, match="mask_decoder.iou_token.weight.*shape|shape.*mask_decoder.iou_token"
    ):
        load_sam("tiny", bad, builders=TINY_BUILDERS)


@pytest.mark.parametrize("checkpoint", [None, "does/not/exist/sam_vit_b_01ec64.pth"])
def test_missing_checkpoint_is_refused_before_any_work(tmp_path, checkpoint):
    def boom(*args, **kwargs):
        raise AssertionError("work started before the checkpoint was checked")

    scene = image_scene(tmp_path / "scene", [blob_image()])
    cfg = MasksConfig(backend="sam", sam_model_type="vit_b", sam_checkpoint=checkpoint)
    with pytest.raises(FileNotFoundError) as e:
        generate_masks(
            scene, cfg=cfg, out_path=tmp_path / "raw.h5", load_image=boom, sam_builders={"vit_b": boom}
        )
    msg = str(e.value)
    assert "sam_vit_b_01ec64.pth" in msg and "masks.sam_checkpoint" in msg and "dl.fbaipublicfiles.com" in msg
    assert not (tmp_path / "raw.h5").exists()


def test_undecodable_image_names_the_file(tmp_path, tiny_sam_cfg):
    scene = image_scene(tmp_path / "scene", [blob_image(), blob_image(seed=2)])
    broken = scene.cameras[1].image_path
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ValueError, match=re.escape(str(broken))):
        generate_masks(
            scene, cfg=tiny_sam_cfg, out_path=tmp_path / "raw.h5", device="cpu", sam_builders=TINY_BUILDERS
        )
    assert not (tmp_path / "raw.h5").exists()
