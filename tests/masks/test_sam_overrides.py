"""`masks.sam_overrides`: a SAM of another size built from the config section alone, as a Snakemake job
builds it, and loaded strictly from a checkpoint written by segment-anything's own modules."""

from __future__ import annotations

import re

import pytest
from gt_masks_testkit import first_frames
from realpath.tiny_checkpoints import TINY_SAM_OVERRIDES, write_tiny_sam

from ccl.config import section, validate_config
from ccl.io import file_sha256
from ccl.masks import MasksConfig, generate_masks, open_raw_masks
from ccl.masks.backends.sam import SAM_ARCHITECTURES, build_sam_architecture, load_sam, sam_architecture

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_sam_section(tmp_path_factory) -> dict:
    return write_tiny_sam(tmp_path_factory.mktemp("sam"))


def test_the_section_alone_builds_loads_and_generates(tiny_sam_section, tiny_scene, tmp_path):
    import torch

    cfg = section(MasksConfig, tiny_sam_section, where="config.yaml: masks")  # as workflow/scripts does
    assert cfg.sam_model_type == "vit_h" and cfg.sam_overrides == TINY_SAM_OVERRIDES
    scene = first_frames(tiny_scene, 2)
    raw = generate_masks(scene, cfg=cfg, out_path=tmp_path / "raw.h5", device="cpu")
    with open_raw_masks(raw) as r:
        assert r.model["sam_overrides"] == TINY_SAM_OVERRIDES
        assert r.model["architecture"] == TINY_SAM_OVERRIDES  # every vit_h size was replaced
        assert r.model["model"] == "sam_vit_h" and r.model["simulated"] is False
        assert r.model["checkpoint_sha256"] == file_sha256(cfg.sam_checkpoint)
        assert r.params["sam_overrides"] == TINY_SAM_OVERRIDES
        frames = list(r)
    assert [f.name for f in frames] == [c.name for c in scene.cameras]
    for f in frames:
        for lv in f.levels():
            assert len(lv) > 0 and lv.masks.shape[1:] == (48, 64)
    model = load_sam(cfg.sam_model_type, cfg.sam_checkpoint, builders={}, overrides=cfg.sam_overrides)
    saved = torch.load(cfg.sam_checkpoint, weights_only=True)
    assert model.image_encoder.img_size == 64 and len(model.image_encoder.blocks) == 2
    assert model.state_dict().keys() == saved.keys()
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k


def test_a_partial_override_keeps_the_model_types_other_sizes():
    arch = sam_architecture("vit_b", {"image_size": 512})
    constants = {"encoder_window_size": 14, "vit_patch_size": 16, "prompt_embed_dim": 256}
    assert arch == {**SAM_ARCHITECTURES["vit_b"], **constants, "image_size": 512}


@pytest.mark.parametrize("model_type", sorted(SAM_ARCHITECTURES))
def test_no_override_is_segment_anythings_own_architecture(model_type):
    """What the overrides start from: with none, the same tensors, by name and shape, as
    segment_anything's registry builds (on the meta device: shapes without memory or time)."""
    import torch
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        ours = build_sam_architecture(sam_architecture(model_type, {})).state_dict()
        official = sam_model_registry[model_type](checkpoint=None).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in official.items()}


def test_a_checkpoint_of_another_size_is_refused_naming_the_file_and_the_key(tiny_sam_section, tmp_path):
    cfg = section(MasksConfig, tiny_sam_section)
    wider = write_tiny_sam(tmp_path / "wider", overrides={"encoder_embed_dim": 64})  # same keys, other shapes
    with pytest.raises(ValueError) as e:
        load_sam("vit_h", wider["sam_checkpoint"], builders={}, overrides=cfg.sam_overrides)
    msg = str(e.value)
    assert wider["sam_checkpoint"] in msg and "image_encoder.patch_embed.proj.weight" in msg, msg
    assert "masks.sam_overrides" in msg
    deeper = write_tiny_sam(tmp_path / "deeper", overrides={"encoder_depth": 3})  # one block more
    with pytest.raises(ValueError) as e:
        load_sam("vit_h", deeper["sam_checkpoint"], builders={}, overrides=cfg.sam_overrides)
    msg = str(e.value)
    assert deeper["sam_checkpoint"] in msg and "image_encoder.blocks.2." in msg, msg


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"encoder_deph": 2}, r"sam_overrides: unknown key\(s\) \['encoder_deph'\]"),
        ({"encoder_depth": 2}, r"sam_overrides.encoder_global_attn_indexes: blocks \[7, 15, 23, 31\]"),
        (
            {"encoder_num_heads": 3},
            r"sam_overrides.encoder_embed_dim: 1280 is not a multiple of encoder_num_heads",
        ),
        ({"image_size": 100}, r"sam_overrides.image_size: 100 is not a multiple of vit_patch_size"),
        ({"prompt_embed_dim": 24}, r"sam_overrides.prompt_embed_dim: 24 is not a multiple of 16"),
        ({"encoder_depth": True}, r"sam_overrides.encoder_depth: expected an integer >= 1, got True"),
        ({"encoder_global_attn_indexes": 3}, r"encoder_global_attn_indexes: expected a list of integers"),
    ],
)
def test_bad_overrides_are_refused_naming_the_key_before_any_work(tmp_path, tiny_scene, overrides, message):
    def boom(*args, **kwargs):
        raise AssertionError("work started before masks.sam_overrides was checked")

    ckpt = tmp_path / "sam.pth"
    ckpt.write_bytes(b"never read")
    cfg = MasksConfig(backend="sam", sam_checkpoint=str(ckpt), sam_overrides=overrides)
    with pytest.raises(ValueError, match=message):
        generate_masks(tiny_scene, cfg=cfg, out_path=tmp_path / "raw.h5", load_image=boom)
    assert not (tmp_path / "raw.h5").exists()


def test_overrides_need_an_official_model_type(tmp_path, tiny_scene):
    ckpt = tmp_path / "sam.pth"
    ckpt.write_bytes(b"never read")
    cfg = MasksConfig(
        backend="sam", sam_model_type="tiny", sam_checkpoint=str(ckpt), sam_overrides={"image_size": 64}
    )
    with pytest.raises(
        ValueError, match=re.escape("set masks.sam_model_type to one of ['vit_b', 'vit_h', 'vit_l']")
    ):
        generate_masks(tiny_scene, cfg=cfg, out_path=tmp_path / "raw.h5", sam_builders={"tiny": object})


def test_the_schema_refuses_a_misspelt_override_and_defaults_to_none():
    base = {"scenes": {"s": {"source": "synthetic"}}}
    with pytest.raises(ValueError, match="masks/sam_overrides.*encoder_deph"):
        validate_config({**base, "masks": {"sam_overrides": {"encoder_deph": 2}}}, source="c.yaml")
    filled = validate_config(base)["masks"]
    assert filled["sam_overrides"] == {} and section(MasksConfig, filled).sam_overrides == {}
    assert hash(MasksConfig()) == hash(MasksConfig(sam_overrides={"image_size": 64}))  # still hashable
    assert MasksConfig() != MasksConfig(sam_overrides={"image_size": 64})


def test_a_missing_checkpoint_of_an_overridden_sam_is_not_sent_to_the_official_download(tmp_path, tiny_scene):
    cfg = MasksConfig(backend="sam", sam_overrides=TINY_SAM_OVERRIDES)
    with pytest.raises(
        FileNotFoundError, match="the checkpoint of the SAM that masks.sam_overrides describes"
    ):
        generate_masks(tiny_scene, cfg=cfg, out_path=tmp_path / "raw.h5")
    assert not (tmp_path / "raw.h5").exists()
