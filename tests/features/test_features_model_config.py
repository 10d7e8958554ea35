"""`features.model_config_file`: an OpenCLIP architecture open_clip does not ship, built from the config
section alone (as a Snakemake job builds it) and loaded strictly from open_clip_pytorch_model.bin."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from features_testkit import first_frames, write_gt_masks
from realpath.tiny_checkpoints import TINY_CLIP_ARCHITECTURE, TINY_CLIP_NAME, write_tiny_open_clip

from ccl.config import section, validate_config
from ccl.features import FeaturesConfig, encode_text, extract_features
from ccl.io import file_sha256
from ccl.io.features_h5 import read_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_clip_section(tmp_path_factory) -> dict:
    return write_tiny_open_clip(tmp_path_factory.mktemp("open_clip"))


@pytest.fixture
def two_frames(tiny_scene, tmp_path):
    scene = first_frames(tiny_scene, 2)
    return scene, write_gt_masks(scene, tmp_path / "sp.h5")


def test_the_section_alone_builds_loads_and_embeds(tiny_clip_section, two_frames, tmp_path):
    import torch
    from open_clip.model import CLIP

    cfg = section(
        FeaturesConfig, tiny_clip_section, where="config.yaml: features"
    )  # as workflow/scripts does
    scene, masks = two_frames
    out = extract_features(scene, masks, cfg=cfg, out_path=tmp_path / "f.h5", device="cpu")
    f = read_features(out)
    assert f.dim == 16 and f.model["model_name"] == TINY_CLIP_NAME
    assert f.model["model_config"] == TINY_CLIP_ARCHITECTURE
    assert f.model["model_config_file"] == tiny_clip_section["model_config_file"]
    assert f.model["model_config_sha256"] == file_sha256(cfg.model_config_file)
    assert f.model["pretrained_sha256"] == file_sha256(cfg.pretrained)
    assert f.params["model_config_file"] == cfg.model_config_file
    assert all(v.shape[1] == 16 and len(v) > 0 for v in f.frames.values())
    # the text tower is the file's: the same vectors as open_clip's CLIP loaded with it by hand
    model = CLIP(**TINY_CLIP_ARCHITECTURE).eval()
    model.load_state_dict(torch.load(cfg.pretrained, weights_only=True), strict=True)
    import open_clip

    with torch.inference_mode():
        want = model.encode_text(open_clip.get_tokenizer(TINY_CLIP_NAME)(["a red mug"]))
    want = torch.nn.functional.normalize(want, dim=-1).numpy()
    np.testing.assert_allclose(encode_text(["a red mug"], cfg=cfg, device="cpu"), want, atol=1e-5)


def test_weights_of_another_size_are_refused_naming_the_file_and_the_key(
    tiny_clip_section, two_frames, tmp_path
):
    scene, masks = two_frames
    wide = write_tiny_open_clip(tmp_path / "wide", embed_dim=24)  # same keys, other shapes
    cfg = dataclasses.replace(section(FeaturesConfig, tiny_clip_section), pretrained=wide["pretrained"])
    with pytest.raises(ValueError) as e:
        extract_features(scene, masks, cfg=cfg, out_path=tmp_path / "f.h5", device="cpu")
    msg = str(e.value)
    assert wide["pretrained"] in msg and "text_projection" in msg and "features.model_config_file" in msg, msg
    deep = write_tiny_open_clip(
        tmp_path / "deep", vision_cfg={**TINY_CLIP_ARCHITECTURE["vision_cfg"], "layers": 3}
    )  # one vision block more
    cfg = dataclasses.replace(cfg, pretrained=deep["pretrained"])
    with pytest.raises(ValueError) as e:
        extract_features(scene, masks, cfg=cfg, out_path=tmp_path / "f.h5", device="cpu")
    msg = str(e.value)
    assert deep["pretrained"] in msg and "visual.transformer.resblocks.2." in msg, msg
    assert not (tmp_path / "f.h5").exists()


def test_unusable_model_config_files_are_refused_with_the_fix(tiny_clip_section, two_frames, tmp_path):
    scene, masks = two_frames
    cfg = section(FeaturesConfig, tiny_clip_section)

    def refused(error, match, **changes):
        with pytest.raises(error, match=match):
            extract_features(
                scene,
                masks,
                cfg=dataclasses.replace(cfg, **changes),
                out_path=tmp_path / "f.h5",
                device="cpu",
            )

    missing = str(tmp_path / "nope.json")
    refused(FileNotFoundError, r"nope\.json: open_clip model config not found", model_config_file=missing)
    renamed = tmp_path / "my-clip.json"
    renamed.write_text(json.dumps(TINY_CLIP_ARCHITECTURE))
    refused(ValueError, r"as 'my-clip'.*set features.model_name: my-clip", model_config_file=str(renamed))
    hf = tmp_path / TINY_CLIP_NAME / f"{TINY_CLIP_NAME}.json"
    hf.parent.mkdir()
    hf.write_text(json.dumps({"model_cfg": TINY_CLIP_ARCHITECTURE, "preprocess_cfg": {}}))
    refused(ValueError, r"not an open_clip model config.*under model_cfg", model_config_file=str(hf))
    hf.write_text("{not json")
    refused(ValueError, r"not a JSON file", model_config_file=str(hf))
    assert not (tmp_path / "f.h5").exists()


def test_the_schema_default_is_the_architectures_open_clip_ships():
    filled = validate_config({"scenes": {"s": {"source": "synthetic"}}})["features"]
    assert filled["model_config_file"] is None and section(FeaturesConfig, filled).model_config_file is None
