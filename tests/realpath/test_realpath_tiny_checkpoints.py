"""The tiny checkpoints: official file formats, seeded, and config sections that a config written like
configs/lerf_ovs.yaml takes and that run every real stage (SAM, SAM2, OpenCLIP) from the section alone."""

from __future__ import annotations

import pytest
import yaml
from gt_masks_testkit import first_frames
from tiny_checkpoints import (
    TINY_CLIP_ARCHITECTURE,
    TINY_SAM2_OVERRIDES,
    TINY_SAM_OVERRIDES,
    write_tiny_checkpoints,
    write_tiny_open_clip,
    write_tiny_sam,
    write_tiny_sam2,
)

from ccl.config import REPO_ROOT, deep_update, section, validate_config
from ccl.features import FeaturesConfig, extract_features
from ccl.io import file_sha256
from ccl.io.features_h5 import read_features
from ccl.io.tracks_h5 import read_tracks
from ccl.masks import MasksConfig, generate_masks, merge_masks, open_masks, open_raw_masks
from ccl.tracks import TracksConfig, track_masks

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sections(tmp_path_factory) -> dict[str, dict]:
    return write_tiny_checkpoints(tmp_path_factory.mktemp("models"))


def test_the_files_are_in_the_official_formats(sections):
    import torch

    sam = torch.load(sections["masks"]["sam_checkpoint"], weights_only=True)  # sam_vit_h_4b8939.pth
    assert all(isinstance(v, torch.Tensor) for v in sam.values())
    assert {k.split(".")[0] for k in sam} == {"image_encoder", "prompt_encoder", "mask_decoder"}
    sam2 = torch.load(sections["tracks"]["sam2_checkpoint"], weights_only=True)  # sam2.1_hiera_large.pt
    assert set(sam2) == {"model"} and "image_encoder.trunk.pos_embed" in sam2["model"]
    clip = torch.load(sections["features"]["pretrained"], weights_only=True)  # open_clip_pytorch_model.bin
    assert all(isinstance(v, torch.Tensor) for v in clip.values())
    assert {"logit_scale", "text_projection", "visual.proj", "token_embedding.weight"} <= set(clip)


def test_the_same_seed_writes_the_same_weights(tmp_path):
    import torch

    def tensors(path):
        state = torch.load(path, weights_only=True)
        return state.get("model", state)

    writers = {
        "sam_checkpoint": write_tiny_sam,
        "sam2_checkpoint": write_tiny_sam2,
        "pretrained": write_tiny_open_clip,
    }
    for key, write in writers.items():
        a, b = tensors(write(tmp_path / "a", seed=0)[key]), tensors(write(tmp_path / "b", seed=0)[key])
        other = tensors(write(tmp_path / "c", seed=1)[key])
        assert a.keys() == b.keys() == other.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), key
        assert not all(torch.equal(a[k], other[k]) for k in a), key


def test_a_config_like_lerf_ovs_takes_the_sections(sections, tmp_path):
    lerf = yaml.safe_load((REPO_ROOT / "configs" / "lerf_ovs.yaml").read_text())
    config = validate_config(deep_update(lerf, {"data_root": str(tmp_path), **sections}), source="tiny.yaml")
    for name, cls in (("masks", MasksConfig), ("tracks", TracksConfig), ("features", FeaturesConfig)):
        built = section(cls, config[name], where=f"tiny.yaml: {name}")
        for key, value in sections[name].items():
            assert getattr(built, key) == (tuple(value) if isinstance(value, list) else value), (name, key)
    assert config["masks"]["sam_model_type"] == lerf["masks"]["sam_model_type"]  # only the sizes differ


def test_every_real_stage_runs_from_its_section_alone(sections, tiny_scene, tmp_path):
    scene = first_frames(tiny_scene, 3)
    masks_cfg = section(MasksConfig, sections["masks"])
    raw = generate_masks(scene, cfg=masks_cfg, out_path=tmp_path / "raw.h5", device="cpu")
    with open_raw_masks(raw) as r:
        assert r.model["sam_overrides"] == TINY_SAM_OVERRIDES and r.model["simulated"] is False
    wp = merge_masks(raw, scale="wp", cfg=masks_cfg, out_path=tmp_path / "wp.h5")
    with open_masks(wp) as r:
        assert all(f.n_masks > 0 for f in r)  # the opened thresholds let a random SAM's masks through

    tracks_cfg = section(TracksConfig, sections["tracks"])
    frames = track_masks(scene, wp, cfg=tracks_cfg, out_path=tmp_path / "tracks.h5", device="cpu")
    assert len(frames) == 3 and frames[0].n_masks > 0
    tracks = read_tracks(tmp_path / "tracks.h5")
    assert tracks.model["overrides"] == list(TINY_SAM2_OVERRIDES)
    assert tracks.model["checkpoint_sha256"] == file_sha256(tracks_cfg.sam2_checkpoint)

    features_cfg = section(FeaturesConfig, sections["features"])
    out = extract_features(scene, wp, cfg=features_cfg, out_path=tmp_path / "wp_f.h5", device="cpu")
    f = read_features(out)
    assert f.model["model_config"] == TINY_CLIP_ARCHITECTURE and f.dim == TINY_CLIP_ARCHITECTURE["embed_dim"]


# A checkpoint of another size per stage, and a tensor whose shape differs there.
OTHER_SIZE = {
    "masks": (lambda d: write_tiny_sam(d, overrides={"prompt_embed_dim": 48}), "image_encoder.neck.0.weight"),
    "tracks": (
        lambda d: write_tiny_sam2(d, overrides=("++model.memory_attention.layer.dim_feedforward=128",)),
        "memory_attention.layers.0.linear1.weight",
    ),
    "features": (lambda d: write_tiny_open_clip(d, embed_dim=24), "text_projection"),
}


@pytest.mark.parametrize("stage", sorted(OTHER_SIZE))
def test_a_checkpoint_of_another_size_is_refused_naming_the_file_and_the_key(sections, tmp_path, stage):
    """The section of one size pointed at the checkpoint of another: refused when the model loads."""
    from ccl.features.backends.open_clip import OpenClipEncoder
    from ccl.masks.backends.sam import SamBackend
    from ccl.tracks.backends.sam2 import build_model

    write_other, key = OTHER_SIZE[stage]
    other = write_other(tmp_path / "other")
    path_key = {"masks": "sam_checkpoint", "tracks": "sam2_checkpoint", "features": "pretrained"}[stage]
    mixed = {**sections[stage], path_key: other[path_key]}
    load = {
        "masks": lambda: SamBackend.build(cfg=section(MasksConfig, mixed), device="cpu", load_image=None),
        "tracks": lambda: build_model(section(TracksConfig, mixed), "cpu"),
        "features": lambda: OpenClipEncoder(section(FeaturesConfig, mixed), device="cpu"),
    }[stage]
    with pytest.raises(ValueError) as e:
        load()
    msg = str(e.value)
    assert other[path_key] in msg and key in msg, msg
