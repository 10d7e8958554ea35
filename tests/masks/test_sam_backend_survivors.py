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
    assert f"masks.sam_checkpoint: /path/to/{name} in config.yaml (masks.sam_model_type: {model_type}" in msg
    assert msg.endswith("; on a synthetic scene, masks.backend: sim needs no weights"), msg
    # `make checkpoints` (python -m ccl.weights) is offered for the files it fetches, and only for those
    fetched = {w.file for w in WEIGHTS if w.config_key == "masks.sam_checkpoint"}
    offer = f"; `make checkpoints` fetches it to checkpoints/{name})"
    assert (offer in msg) == (name in fetched), msg
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
    section = write_tiny_sam(tmp_path / "tiny")
    wider = write_tiny_sam(tmp_path / "wider", overrides={"encoder_embed_dim": 64})["sam_checkpoint"]
    with pytest.raises(ValueError) as e:
        sam.load_sam("vit_h", wider, builders={}, overrides=section["sam_overrides"])
    msg = str(e.value)
    assert f"do not match SAM vit_h with masks.sam_overrides {TINY_SAM_OVERRIDES} (" in msg, msg
    assert msg.endswith(
        "? masks.sam_overrides must give the sizes the checkpoint was made with (the file's tensor "
        "shapes), or be removed for an official checkpoint"
    ), msg


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
