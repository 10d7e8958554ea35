"""What the `sam` backend tells the user and records, beyond the masks: the fix each refusal names (the
file to download, `make checkpoints`, the config key), the preflight's weight check, the model record of
the raw masks file, the loaded image's check. Written for the survivors of bench.mutation on
ccl/masks/backends/sam.py (docs/mutation.md)."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
from masks_testkit import TINY_BUILDERS, TINY_SAM_CFG, blob_image, build_tiny_sam, image_scene
from realpath.tiny_checkpoints import TINY_SAM_OVERRIDES, write_tiny_sam

from ccl.config import CONFIG_SOURCE_ENV
from ccl.masks import MasksConfig
from ccl.masks.backends import sam
from ccl.weights import WEIGHTS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"  # segment-anything's README links
OFFICIAL_FILES = {
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_b": "sam_vit_b_01ec64.pth",
}


@pytest.fixture(autouse=True)
def config_yaml(monkeypatch):
    """Messages name the config file of the run: config.yaml outside one."""
    monkeypatch.delenv(CONFIG_SOURCE_ENV, raising=False)


@pytest.mark.parametrize("model_type", sorted(OFFICIAL_FILES))
@pytest.mark.parametrize("checkpoint", [None, "nowhere/sam.pth"])
def test_a_missing_official_checkpoint_names_the_file_the_url_the_keys_and_make_checkpoints(
    model_type, checkpoint
):
    name = OFFICIAL_FILES[model_type]
    cfg = MasksConfig(backend="sam", sam_model_type=model_type, sam_checkpoint=checkpoint)
    with pytest.raises(FileNotFoundError) as e:
        sam.check(cfg)  # the registry of official builders, as the workflow's preflight calls it
    msg = str(e.value)
    if checkpoint is None:
        assert msg.startswith("config.yaml: masks.backend is 'sam' but masks.sam_checkpoint is not set; "), (
            msg
        )
    else:
        assert msg.startswith(
            "nowhere/sam.pth: SAM checkpoint not found (config.yaml: masks.sam_checkpoint); "
        )
    assert f"download {name} (SAM {model_type}) from {SAM_URL}{name} and set" in msg, msg
    # `make checkpoints` (python -m ccl.weights) is offered for the files it fetches, and only for those
    fetched = {w.file for w in WEIGHTS if w.config_key == "masks.sam_checkpoint"}
    offer = f"; `make checkpoints` fetches it to checkpoints/{name}" if name in fetched else ""
    assert msg.endswith(
        f"masks.sam_checkpoint: /path/to/{name} in config.yaml (masks.sam_model_type: {model_type}{offer}); "
        "on a synthetic scene, masks.backend: sim needs no weights"
    ), msg
    assert fetched, "ccl.weights fetches no SAM checkpoint"


def test_a_missing_checkpoint_of_a_model_type_with_no_official_file_says_to_set_it():
    cfg = MasksConfig(**{**TINY_SAM_CFG, "sam_checkpoint": None})
    with pytest.raises(FileNotFoundError) as e:
        sam.check(cfg, builders=TINY_BUILDERS)
    assert str(e.value).endswith(
        "masks.sam_checkpoint is not set; set masks.sam_checkpoint in config.yaml to the checkpoint "
        "of SAM model 'tiny'"
    ), str(e.value)


def test_a_missing_checkpoint_of_an_overridden_sam_points_to_both_fixes():
    cfg = MasksConfig(backend="sam", sam_overrides=TINY_SAM_OVERRIDES)
    with pytest.raises(FileNotFoundError) as e:
        sam.check(cfg)
    msg = str(e.value)
    assert (
        "is not set; set masks.sam_checkpoint to the checkpoint of the SAM that masks.sam_overrides "
        "describes (or, for an official SAM, remove masks.sam_overrides and download sam_vit_h_4b8939.pth"
    ) in msg, msg
    assert msg.endswith("needs no weights)"), msg


def test_an_unknown_model_type_is_refused_naming_the_key_and_the_official_ones(tmp_path):
    ckpt = tmp_path / "sam.pth"
    ckpt.write_bytes(b"never read")
    cfg = MasksConfig(backend="sam", sam_model_type="vit_x", sam_checkpoint=str(ckpt))
    with pytest.raises(ValueError) as e:
        sam.check(cfg)
    assert (
        str(e.value) == "config.yaml: masks.sam_model_type 'vit_x' is not one of ['vit_b', 'vit_h', 'vit_l']"
    )


@pytest.mark.parametrize("model_type", sorted(OFFICIAL_FILES))
def test_the_preflights_expected_shapes_are_segment_anythings_own(model_type):
    import torch
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        official = sam_model_registry[model_type](checkpoint=None).state_dict()
    got = sam.expected_weight_shapes(MasksConfig(backend="sam", sam_model_type=model_type))
    assert got == {k: tuple(v.shape) for k, v in official.items()}


def test_the_preflight_passes_the_overridden_sams_checkpoint_and_refuses_another_size(tmp_path):
    from realpath.tiny_checkpoints import build_tiny_sam as build_with_segment_anything

    section = write_tiny_sam(tmp_path / "tiny")
    cfg = MasksConfig(**section)
    want = {k: tuple(v.shape) for k, v in build_with_segment_anything().state_dict().items()}
    assert sam.expected_weight_shapes(cfg) == want
    sam.check_weights(cfg)  # its own checkpoint: no error
    wider = write_tiny_sam(tmp_path / "wider", overrides={"encoder_embed_dim": 64})["sam_checkpoint"]
    with pytest.raises(ValueError) as e:
        sam.check_weights(MasksConfig(**{**section, "sam_checkpoint": wider}))
    msg = str(e.value)
    assert msg.startswith(f"{wider}: ") and "image_encoder.patch_embed.proj.weight" in msg, msg
    assert f"SAM vit_h with masks.sam_overrides {TINY_SAM_OVERRIDES}" in msg, msg
    assert msg.endswith("; masks.sam_overrides must give the sizes the checkpoint was made with"), msg


def test_the_preflight_refuses_an_official_model_types_wrong_checkpoint_naming_the_fix(tmp_path):
    import torch

    ckpt = tmp_path / "not_vit_b.pth"
    torch.save(build_tiny_sam().state_dict(), ckpt)
    cfg = MasksConfig(backend="sam", sam_model_type="vit_b", sam_checkpoint=str(ckpt))
    with pytest.raises(ValueError) as e:
        sam.check_weights(cfg)
    msg = str(e.value)
    assert msg.startswith(f"{ckpt}: ") and "(SAM vit_b (masks.sam_model_type)); " in msg, msg
    assert "; set masks.sam_model_type to the checkpoint's model, or download sam_vit_b_01ec64.pth" in msg, (
        msg
    )


def test_loading_another_size_names_the_overridden_model_and_the_fix(tmp_path):
    import torch

    section = write_tiny_sam(tmp_path / "tiny")
    wider = write_tiny_sam(tmp_path / "wider", overrides={"encoder_embed_dim": 64})["sam_checkpoint"]
    with pytest.raises(ValueError) as e:
        sam.load_sam("vit_h", wider, builders={}, overrides=section["sam_overrides"])
    msg = str(e.value)
    assert f"do not match SAM vit_h with masks.sam_overrides {TINY_SAM_OVERRIDES} (" in msg, msg
    mine, theirs = (torch.load(p, weights_only=True) for p in (section["sam_checkpoint"], wider))
    differ = sum(mine[k].shape != theirs[k].shape for k in mine)
    assert differ > 4 and f"({differ}: [" in msg and msg.count(" in the file, ") == 4, msg  # the first 4
    assert msg.endswith(
        "? masks.sam_overrides must give the sizes the checkpoint was made with (the file's tensor "
        "shapes), or be removed for an official checkpoint"
    ), msg


def test_loading_an_official_model_types_wrong_checkpoint_names_the_file_to_download(tmp_path):
    """The official model type's download hint (its architecture stood in for by the tiny one: only the
    name decides the hint), after the keys that do not match."""
    from realpath.tiny_checkpoints import build_tiny_sam as build_with_segment_anything

    other = write_tiny_sam(tmp_path / "other")["sam_checkpoint"]  # another architecture: other keys
    with pytest.raises(ValueError) as e:
        sam.load_sam("vit_b", other, builders={"vit_b": build_tiny_sam})
    msg = str(e.value)
    assert build_with_segment_anything().state_dict().keys() != build_tiny_sam().state_dict().keys()
    assert msg.startswith(f"{other}: ") and "(SAM vit_b); download sam_vit_b_01ec64.pth (SAM vit_b)" in msg, (
        msg
    )


def test_the_backend_records_the_model_it_loaded(tmp_path, monkeypatch, caplog, tiny_sam_checkpoint):
    """With no registry given, the official one (here with the tiny model added to it); the record of
    the raw masks file names the checkpoint by its absolute path, the device and the encoder's dtype."""
    from ccl.io import file_sha256

    monkeypatch.setitem(sam.SAM_BUILDERS, "tiny", build_tiny_sam)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "sam_tiny.pth").write_bytes(tiny_sam_checkpoint.read_bytes())
    monkeypatch.chdir(tmp_path)
    cfg = MasksConfig(**{**TINY_SAM_CFG, "sam_checkpoint": "models/sam_tiny.pth", "precision": "bf16"})
    with caplog.at_level(logging.INFO, logger=sam.__name__):
        backend = sam.build(cfg, scene=None, device="cpu", seed=0, load_image=lambda camera: None)
    assert backend.model_info == {
        "backend": "sam",
        "model": "sam_tiny",
        "checkpoint": str(tmp_path / "models" / "sam_tiny.pth"),
        "checkpoint_sha256": file_sha256(tiny_sam_checkpoint),
        "device": "cpu",
        "encoder_dtype": "float32",  # bf16 is CUDA's only: a CPU computes in float32
        "simulated": False,
    }
    assert backend.predictor.device.type == "cpu"
    assert "loading SAM tiny from models/sam_tiny.pth on cpu" in caplog.messages


@pytest.mark.parametrize("shape, dtype", [((48, 64), np.uint8), ((48, 64, 3), np.float32)])
def test_an_image_loaded_with_another_shape_or_dtype_is_refused_naming_the_file(
    tmp_path, tiny_sam_cfg, shape, dtype
):
    scene = image_scene(tmp_path / "scene", [blob_image()])
    camera = scene.cameras[0]
    backend = sam.build(
        tiny_sam_cfg,
        scene=scene,
        device="cpu",
        seed=0,
        load_image=lambda camera: np.zeros(shape, dtype),
        builders=TINY_BUILDERS,
    )
    want = f"{camera.image_path}: loaded as {np.dtype(dtype)} {shape}, expected uint8 (48, 64, 3)"
    with pytest.raises(ValueError, match=re.escape(want)):
        backend.frame_levels(0, camera)


def test_build_arguments_of_one_are_accepted_and_zero_refused():
    """A one-block encoder whose block 0 is global, or one head: the smallest sizes that build."""
    import torch

    one = sam.sam_architecture(
        "vit_b", {"encoder_depth": 1, "encoder_global_attn_indexes": [0], "encoder_num_heads": 1}
    )
    assert (one["encoder_depth"], one["encoder_global_attn_indexes"], one["encoder_num_heads"]) == (1, [0], 1)
    with torch.device("meta"):
        model = sam.build_sam_architecture(one)
    assert len(model.image_encoder.blocks) == 1 and model.image_encoder.blocks[0].window_size == 0  # global
    with pytest.raises(ValueError) as e:
        sam.sam_architecture("vit_b", {"encoder_num_heads": 0})
    assert (
        str(e.value) == "config.yaml: masks.sam_overrides.encoder_num_heads: expected an integer >= 1, got 0"
    )


@pytest.mark.parametrize("indexes, outside", [([0, 2], [2]), ([-1, 1], [-1])])
def test_global_attention_blocks_outside_the_encoder_are_refused_naming_the_valid_ones(indexes, outside):
    with pytest.raises(ValueError) as e:
        sam.sam_architecture("vit_b", {"encoder_depth": 2, "encoder_global_attn_indexes": indexes})
    assert str(e.value) == (
        f"config.yaml: masks.sam_overrides.encoder_global_attn_indexes: blocks {outside} do not exist in an "
        "encoder of depth 2 (blocks 0..1)"
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"encoder_num_heads": 3},
            "encoder_embed_dim: 1280 is not a multiple of encoder_num_heads 3 (each attention head takes an "
            "equal share of the width)",
        ),
        (
            {"image_size": 100},
            "image_size: 100 is not a multiple of vit_patch_size 16 (the image is cut into whole patches)",
        ),
        (
            {"prompt_embed_dim": 24},
            "prompt_embed_dim: 24 is not a multiple of 16 (the mask decoder's 8 heads share half of it in "
            "its cross-attention)",
        ),
    ],
)
def test_sizes_that_do_not_divide_are_refused_saying_why(overrides, message):
    with pytest.raises(ValueError) as e:
        sam.sam_architecture("vit_h", overrides)
    assert str(e.value) == f"config.yaml: masks.sam_overrides.{message}"


@pytest.mark.parametrize("overrides", [{}, {"vit_patch_size": 8}])
def test_an_overridden_sam_computes_what_segment_anythings_modules_built_as_build_sam_does_compute(overrides):
    """Same weights, same masks and scores to the bit: ccl's build from the overrides against the SAM
    assembled from segment-anything's modules as its build_sam does (pixel statistics, LayerNorm eps,
    patch size: what the state dict's shapes alone do not show)."""
    import torch
    from realpath.tiny_checkpoints import build_tiny_sam as build_with_segment_anything
    from segment_anything import SamPredictor

    torch.manual_seed(0)
    reference = build_with_segment_anything(overrides)
    ours = sam.build_sam_architecture(sam.sam_architecture("vit_h", {**TINY_SAM_OVERRIDES, **overrides}))
    ours.load_state_dict(reference.state_dict(), strict=True)
    image, points = blob_image(), np.array([[20.0, 30.0], [50.0, 10.0]])
    got, want = SamPredictor(ours), SamPredictor(reference)
    for predictor in (got, want):
        predictor.set_image(image)
    assert torch.equal(got.features, want.features)
    for point in points:
        for a, b in zip(
            got.predict(point[None], np.array([1]), return_logits=True),
            want.predict(point[None], np.array([1]), return_logits=True),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)


def test_load_sam_puts_the_model_on_the_device_it_is_given(tiny_sam_checkpoint):
    model = sam.load_sam("tiny", tiny_sam_checkpoint, builders=TINY_BUILDERS, device="meta")
    assert {p.device.type for p in model.parameters()} == {"meta"} and not model.training


def test_generation_takes_the_fast_steps_on_cuda_or_when_asked_and_sams_own_on_a_cpu(
    monkeypatch, tiny_sam_cfg
):
    import torch
    from segment_anything import SamPredictor
    from segment_anything.utils.amg import build_all_layer_point_grids

    from ccl.masks.backends import sam_fast

    class Chosen(Exception):
        pass

    def fast_steps(*args, **kwargs):
        raise Chosen

    monkeypatch.setattr(sam_fast, "FastCropSteps", fast_steps)
    grids = build_all_layer_point_grids(tiny_sam_cfg.points_per_side, 0, 1)
    predictor = SamPredictor(build_tiny_sam())
    levels = sam.generate_levels(predictor, blob_image(), cfg=tiny_sam_cfg, point_grids=grids)  # CPU: SAM's
    assert sum(len(lv) for lv in levels) > 0
    with pytest.raises(Chosen):
        sam.generate_levels(predictor, blob_image(), cfg=tiny_sam_cfg, point_grids=grids, fast=True)

    class OnCuda:  # what generate_levels reads of a predictor before the first crop: its device
        device = torch.device("cuda:0")

    with pytest.raises(Chosen):
        sam.generate_levels(OnCuda(), blob_image(), cfg=tiny_sam_cfg, point_grids=grids)


def test_the_encoder_runs_under_the_configured_precision_on_the_predictors_device(monkeypatch, tiny_sam_cfg):
    """masks.precision reaches the encoder's autocast with the predictor's device, once per crop (on a
    CPU the autocast is a no-op; on CUDA it is what makes the encoder bf16)."""
    import dataclasses

    from segment_anything import SamPredictor
    from segment_anything.utils.amg import build_all_layer_point_grids

    from ccl import device as ccl_device

    calls = []

    def recorded(device, precision):
        calls.append((device, precision))
        return ccl_device.autocast(device, precision)

    monkeypatch.setattr(sam, "autocast", recorded)
    cfg = dataclasses.replace(tiny_sam_cfg, crop_n_layers=1, precision="fp16")
    grids = build_all_layer_point_grids(cfg.points_per_side, 1, cfg.crop_n_points_downscale_factor)
    sam.generate_levels(SamPredictor(build_tiny_sam()), blob_image(), cfg=cfg, point_grids=grids, fast=False)
    assert calls == [("cpu", "fp16")] * 5  # the whole image and its 4 sub-crops
