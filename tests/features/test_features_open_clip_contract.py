"""What the open_clip backend promises, piece by piece, against open_clip's own API: crop features,
frames, the empty cases, the record and log of the model used, weights files as open_clip's training and
DDP save them, the preflight's shape check, the architecture file, and the messages that name the fix."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys

import numpy as np
import pytest
from features_testkit import TINY_CLIP_CFG, clip_cfg, open_clips_own_image_features, save_tiny_clip_weights
from features_testkit import clip_encoder as encoder

from ccl.features import FeaturesConfig

F32 = 1e-5  # float32: open_clip's transform and ours round differently in the last bits

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fresh_name(kind: str) -> str:
    """An architecture name open_clip has not registered in this process (mutmut runs the tests twice in
    one process, with the same tmp_path names)."""
    import uuid

    return f"ccl-{kind}-{uuid.uuid4().hex[:12]}"


def architecture_file(folder, name: str, arch: dict) -> str:
    """`arch` written as open_clip's model config `<name>.json` (what features.model_config_file names)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(arch))
    return str(path)


@pytest.fixture
def crops():
    return np.random.default_rng(1).integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------- features


def test_crop_features_are_open_clips_preprocess_and_encode_image_in_any_batching(tiny_clip, crops):
    want = open_clips_own_image_features(*tiny_clip, crops)  # ToTensor (/255), the model's mean and std
    for batch_size in (4, 9, 64):  # 4 does not divide 9
        got = encoder(tiny_clip, batch_size=batch_size).encode_crops(crops)
        assert got.dtype == np.float32 and got.shape == (9, 16)
        np.testing.assert_allclose(got, want, atol=F32, err_msg=f"batch_size {batch_size}")


def test_a_frame_embeds_each_masks_crop_once_in_batches(tiny_clip):
    from types import SimpleNamespace

    from ccl.features.ops import mask_boxes, masked_crop

    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    seg = np.full((40, 48), -1, np.int32)
    for i, (y, x) in enumerate([(0, 0), (0, 20), (20, 0), (20, 20), (10, 36)]):
        seg[y : y + 12, x : x + 10] = i
    masks = SimpleNamespace(segmentation=seg, n_masks=5)
    from ccl.features.backends.open_clip import OpenClipEncoder

    camera = SimpleNamespace(name="frame_00000")
    enc = OpenClipEncoder(
        clip_cfg(tiny_clip, batch_size=2), device="cpu", load_image={camera.name: image}.__getitem__
    )
    batches = []
    encode = enc.encode_crops
    enc.encode_crops = lambda c: (batches.append(len(c)), encode(c))[1]
    got = enc.encode_frame(0, camera.name, masks)
    assert batches == [2, 2, 1]  # every crop once, at most batch_size in memory
    boxes = mask_boxes(seg, 5)
    crops = np.stack([masked_crop(image, seg == i, boxes[i], 32) for i in range(5)])
    assert got.dtype == np.float32 and got.shape == (5, 16)
    np.testing.assert_allclose(got, open_clips_own_image_features(*tiny_clip, crops), atol=F32)


def test_no_crops_and_no_queries_give_empty_float32_arrays(tiny_clip):
    enc = encoder(tiny_clip)
    for empty in (enc.encode_crops(np.zeros((0, 32, 32, 3), np.uint8)), enc.encode_text([])):
        assert empty.shape == (0, 16) and empty.dtype == np.float32


def test_build_defaults_to_the_auto_device_and_reads_frames_with_the_given_loader(tiny_clip):
    from types import SimpleNamespace

    import torch

    from ccl.features.backends.open_clip import build
    from ccl.features.ops import mask_boxes, masked_crop

    enc = build(clip_cfg(tiny_clip))
    assert enc.device == ("cuda" if torch.cuda.is_available() else "cpu")
    image = np.random.default_rng(3).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    seg = np.zeros((20, 20), np.int32)
    enc = build(clip_cfg(tiny_clip), device="cpu", load_image={"cam": image}.__getitem__)
    got = enc.encode_frame(0, "cam", SimpleNamespace(segmentation=seg, n_masks=1))
    crop = masked_crop(image, seg == 0, mask_boxes(seg, 1)[0], 32)  # the whole image
    np.testing.assert_allclose(got, enc.encode_crops(crop[None]), atol=F32)


# ------------------------------------------------------------------------------ the model's record


def test_the_record_and_the_log_name_the_model_the_weights_and_the_device(tiny_clip, caplog):
    from importlib.metadata import version

    from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    from ccl.io import file_sha256

    name, weights = tiny_clip
    with caplog.at_level(logging.INFO, logger="ccl.features.backends.open_clip"):
        enc = encoder(tiny_clip, precision="fp16")
    assert f"OpenCLIP {name} with weights {weights} on cpu" in [r.getMessage() for r in caplog.records]
    assert enc.model_info() == {
        "backend": "open_clip",
        "simulated": False,
        "model_name": name,
        "pretrained": str(weights.absolute()),
        "pretrained_sha256": file_sha256(weights),
        "open_clip_version": version("open_clip_torch"),
        "dim": TINY_CLIP_CFG["embed_dim"],
        # built without a tag, open_clip's default for an architecture without tags: OpenAI's
        "image_normalisation": {"mean": list(OPENAI_DATASET_MEAN), "std": list(OPENAI_DATASET_STD)},
        "dtype": "float32",  # fp16 asked, a CPU computes in float32
        "device": "cpu",
    }


# ---------------------------------------------------------------------------------- weights files


def test_training_and_ddp_checkpoints_load_the_same_weights(tiny_clip, tmp_path, crops):
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny_clip[1]))
    ddp = {f"module.{k}": v for k, v in state.items()}
    torch.save({"epoch": 3, "name": "run", "state_dict": ddp}, tmp_path / "epoch_3.pt")  # open_clip training
    save_file(ddp, str(tmp_path / "ddp.safetensors"))
    want = open_clips_own_image_features(*tiny_clip, crops)
    for path in (tmp_path / "epoch_3.pt", tmp_path / "ddp.safetensors"):
        np.testing.assert_allclose(
            encoder((tiny_clip[0], path)).encode_crops(crops), want, atol=F32, err_msg=path.name
        )


def test_mismatched_weights_are_refused_naming_file_model_and_key(tiny_clip, tmp_path):
    import torch

    name = tiny_clip[0]
    wide = tmp_path / "wide.bin"
    save_tiny_clip_weights(wide, embed_dim=24)  # same keys, other shapes
    with pytest.raises(ValueError) as e:
        encoder((name, wide))
    msg = str(e.value)
    assert msg.startswith(f"{wide}: weights do not match {name} (["), msg
    assert msg.endswith("features.pretrained must be the weights of features.model_name"), msg
    assert "model_config_file" not in msg  # an architecture open_clip knows: no file to blame
    state = torch.load(wide, weights_only=True)
    state.pop("text_projection")
    torch.save(state, tmp_path / "missing.bin")
    with pytest.raises(ValueError) as e:
        encoder((name, tmp_path / "missing.bin"))
    assert "text_projection" in str(e.value) and str(e.value).endswith(f"({name})"), str(e.value)


def test_the_preflight_checks_names_and_shapes_against_open_clips_model(tiny_clip, tmp_path):
    from open_clip.model import CLIP

    from ccl.features.backends.open_clip import check_weights, expected_weight_shapes

    cfg = clip_cfg(tiny_clip)
    want = {k: tuple(v.shape) for k, v in CLIP(**TINY_CLIP_CFG).state_dict().items()}
    assert expected_weight_shapes(cfg) == want
    check_weights(cfg)  # the right file passes
    assert logging.getLogger("ccl").isEnabledFor(logging.WARNING)  # open_clip's silencing undone
    wide = tmp_path / "wide.bin"
    save_tiny_clip_weights(wide, embed_dim=24)
    with pytest.raises(ValueError) as e:
        check_weights(dataclasses.replace(cfg, pretrained=str(wide)))
    msg = str(e.value)
    assert str(wide) in msg and f"OpenCLIP {cfg.model_name}" in msg and "text_projection" in msg, msg
    assert msg.endswith("features.pretrained must be the weights of features.model_name"), msg
    # an architecture from a file: the fix says the weights must be those of the file's architecture
    name = fresh_name("pre")
    arch_file = architecture_file(tmp_path / "arch", name, TINY_CLIP_CFG)
    cfg = dataclasses.replace(cfg, model_name=name, model_config_file=arch_file, pretrained=str(wide))
    with pytest.raises(
        ValueError, match="weights of features.model_name as features.model_config_file defines"
    ):
        check_weights(cfg)


# ------------------------------------------------------------------------------ architecture file


def test_an_architecture_file_is_registered_and_an_edited_one_replaces_it(tmp_path, crops):
    import open_clip

    from ccl.features.backends.open_clip import OpenClipEncoder, register_model_config

    name = fresh_name("arch")
    path = architecture_file(tmp_path / "arch", name, TINY_CLIP_CFG)
    cfg = FeaturesConfig(backend="open_clip", model_name=name, model_config_file=path, crop_size=32)
    assert open_clip.get_model_config(name) is None
    assert register_model_config(cfg) == TINY_CLIP_CFG
    assert open_clip.get_model_config(name) == TINY_CLIP_CFG
    wider = {**TINY_CLIP_CFG, "embed_dim": 24}
    architecture_file(tmp_path / "arch", name, wider)  # edited in place, same process
    save_tiny_clip_weights(tmp_path / "w.bin", embed_dim=24)
    enc = OpenClipEncoder(dataclasses.replace(cfg, pretrained=str(tmp_path / "w.bin")), device="cpu")
    assert open_clip.get_model_config(name) == wider and enc.dim == 24
    assert enc.encode_crops(crops[:2]).shape == (2, 24)


def test_unusable_architecture_files_are_refused_naming_the_key_and_the_fix(tmp_path):
    from ccl.features.backends.open_clip import register_model_config

    name = fresh_name("bad")
    path = tmp_path / f"{name}.json"
    cfg = FeaturesConfig(backend="open_clip", model_name=name, model_config_file=str(path))
    path.write_text("{not json")
    with pytest.raises(ValueError, match=rf"{name}\.json: not a JSON file \(features\.model_config_file; "):
        register_model_config(cfg)
    path.write_text(json.dumps({"model_cfg": TINY_CLIP_CFG}))  # a Hugging Face open_clip_config.json
    with pytest.raises(ValueError) as e:
        register_model_config(cfg)
    msg = str(e.value)
    assert "not an open_clip model config (features.model_config_file): no ['embed_dim'," in msg, msg
    assert "as open_clip/model_configs/ViT-B-16.json does" in msg, msg  # a file name: its case matters
    assert msg.endswith(
        "(a Hugging Face open_clip_config.json has them under model_cfg: save that part as its own file)"
    ), msg


def test_crop_size_is_checked_against_the_size_open_clip_builds(tiny_clip, tmp_path):
    from ccl.features.backends.open_clip import check

    def cfg_for(vision_cfg: dict, crop_size: int) -> FeaturesConfig:
        name = fresh_name("size")
        arch = {**TINY_CLIP_CFG, "vision_cfg": vision_cfg}
        return dataclasses.replace(
            clip_cfg(tiny_clip),
            model_name=name,
            model_config_file=architecture_file(tmp_path / name, name, arch),
            crop_size=crop_size,
        )

    from open_clip.model import CLIP

    vision = {k: v for k, v in TINY_CLIP_CFG["vision_cfg"].items() if k != "image_size"}
    default = CLIP(**{**TINY_CLIP_CFG, "vision_cfg": vision}).visual.image_size  # open_clip's own default
    with pytest.raises(
        ValueError, match=rf"takes {default[0]} px images; set features.crop_size: {default[0]}"
    ):
        check(cfg_for(vision, 32))
    check(cfg_for(vision, default[0]))
    check(cfg_for({**vision, "image_size": [32, 32]}, 32))  # a size as [height, width]
    with pytest.raises(ValueError) as e:
        check(cfg_for({**vision, "image_size": [32, 48]}, 32))
    assert "takes 32×48 px images and the mask crops are square" in str(e.value), str(e.value)
    assert str(e.value).endswith("use a model whose vision_cfg.image_size is one number"), str(e.value)
    with pytest.raises(ValueError) as e:
        check(dataclasses.replace(clip_cfg(tiny_clip), model_name="ViT-Q-99"))
    assert str(e.value).endswith("see open_clip.list_models() (the paper uses ViT-B-16)"), str(e.value)


# ------------------------------------------------------------------------------------- messages


def test_without_open_clip_the_error_says_what_to_install(tiny_clip, monkeypatch):
    from ccl.features.backends.open_clip import check

    monkeypatch.setitem(sys.modules, "open_clip", None)  # `import open_clip` raises ImportError
    with pytest.raises(ImportError) as e:
        check(clip_cfg(tiny_clip))
    msg = str(e.value)
    assert msg.startswith("features.backend = 'open_clip' needs open_clip (")
    assert msg.endswith(
        "install it with `pip install open_clip_torch` (or use features.backend: sim on synthetic scenes)"
    )


def test_a_tag_says_where_to_get_the_file_and_a_missing_file_lists_the_tags(tmp_path):
    import open_clip

    from ccl.features.backends.open_clip import weights_path
    from ccl.weights import WEIGHTS

    cfg = FeaturesConfig(backend="open_clip", model_name="ViT-B-16", pretrained="laion2b_s34b_b88k")
    with pytest.raises(FileNotFoundError) as e:
        weights_path(cfg)
    msg = str(e.value)
    repo = "laion/CLIP-ViT-B-16-laion2B-s34B-b88K"  # the weights' Hugging Face repository
    assert f"from https://huggingface.co/{repo}, put it anywhere (e.g. models/{repo.split('/')[1]}/)" in msg
    fetched = next(w.file for w in WEIGHTS if w.config_key == "features.pretrained")
    missing = tmp_path / "checkpoints" / fetched
    with pytest.raises(FileNotFoundError) as e:
        weights_path(dataclasses.replace(cfg, pretrained=str(missing)))
    msg = str(e.value)
    assert f"(tags: {open_clip.list_pretrained_tags_by_model('ViT-B-16')})" in msg, msg
    assert msg.endswith(f"; `make checkpoints` fetches it to checkpoints/{fetched}"), msg


def test_the_cut_warning_comes_past_the_context_and_quotes_the_query(tiny_clip, caplog, monkeypatch):
    import open_clip

    import ccl.runlog

    monkeypatch.setattr(ccl.runlog, "_warned", set())  # warn_once: forget earlier runs in this process
    name = tiny_clip[0]
    tokenizer = open_clip.get_tokenizer(name)
    context = TINY_CLIP_CFG["text_cfg"]["context_length"]
    fits, cut = " ".join(["mug"] * (context - 2)), " ".join(["mug"] * (context - 1))
    # open_clip's tokenizer keeps start + words + end in `context` tokens: every word of `fits`, not of `cut`
    assert (tokenizer([fits])[0] != 0).sum() == context and len(tokenizer.encode(fits)) == context - 2
    assert (tokenizer([cut])[0] != 0).sum() == context and len(tokenizer.encode(cut)) == context - 1
    enc = encoder(tiny_clip)

    def warnings_for(query: str) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            enc.encode_text([query])
        return [r.getMessage() for r in caplog.records if "tokens long" in r.getMessage()]

    assert warnings_for(fits) == []
    (said,) = warnings_for(cut)
    assert said.startswith(
        f"query {cut!r} is {context + 1} tokens long; the text encoder {name} reads {context}"
    )
    assert said.endswith("so it is cut there and the words after do not count: shorten the query")
    sixty = "mug " * 15  # 60 characters: quoted whole
    (said,) = warnings_for(sixty)
    assert said.startswith(f"query {sixty!r} is ")
    longer = sixty + "s"  # 61: the first 60 and an ellipsis
    (said,) = warnings_for(longer)
    assert said.startswith(f"query {longer[:60]!r}… is ")


@pytest.mark.parametrize(
    "tag, source",
    [
        ({"hf_hub": "", "url": "https://example.org/w.pt"}, "https://example.org/w.pt"),  # open_clip 2's
        ({}, "the open_clip release of that tag"),
    ],
)
def test_a_tag_without_a_hub_repository_says_its_url(tag, source, monkeypatch):
    import open_clip

    from ccl.features.backends.open_clip import weights_path

    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda model, name: {**tag, "mean": (0.5,) * 3})
    cfg = FeaturesConfig(backend="open_clip", model_name="ViT-B-16", pretrained="openai")
    with pytest.raises(FileNotFoundError) as e:
        weights_path(cfg)
    assert f"from {source}, put it anywhere (e.g. models/ViT-B-16/)" in str(e.value), str(e.value)


def test_a_tokenizer_without_encode_embeds_queries_without_a_cut_warning(tiny_clip, caplog, monkeypatch):
    """open_clip's HFTokenizer (SigLIP's and other Hugging Face text towers) has no `encode`: the cut
    cannot be counted, and the queries are embedded all the same."""

    import ccl.runlog

    class CallOnly:  # HFTokenizer's interface: called with the texts, a context_length
        def __init__(self, tokenizer):
            self.tokenizer, self.context_length = tokenizer, tokenizer.context_length

        def __call__(self, texts):
            return self.tokenizer(texts)

    enc = encoder(tiny_clip)
    long = "a " + "very " * 30 + "red mug"
    want = enc.encode_text([long])
    enc.tokenizer = CallOnly(enc.tokenizer)
    monkeypatch.setattr(ccl.runlog, "_warned", set())  # warn_once would not say it twice anyway
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        np.testing.assert_array_equal(enc.encode_text([long]), want)
    assert "tokens long" not in caplog.text


# ------------------------------------------------------------------------------------ normalisation


def test_crops_are_normalised_as_the_architectures_tags_were_trained(tiny_clip, crops, monkeypatch):
    """Built without a tag, open_clip's model says OpenAI's mean and std whatever the weights; the tags of
    an architecture (SigLIP's, MobileCLIP's) say what its weights were trained on."""
    import open_clip

    half = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    tags = {"a": half, "b": half}  # the tiny architecture has no tags of its own: these stand in
    name = tiny_clip[0]
    monkeypatch.setattr(open_clip, "list_pretrained_tags_by_model", lambda m: list(tags) if m == name else [])
    monkeypatch.setattr(
        open_clip, "get_pretrained_cfg", lambda m, tag: tags.get(tag, {}) if m == name else {}
    )
    want = open_clips_own_image_features(*tiny_clip, crops, image_mean=half["mean"], image_std=half["std"])
    enc = encoder(tiny_clip)
    np.testing.assert_allclose(enc.encode_crops(crops), want, atol=F32)
    assert enc.model_info()["image_normalisation"] == {"mean": [0.5] * 3, "std": [0.5] * 3}  # recorded
    assert np.abs(want - open_clips_own_image_features(*tiny_clip, crops)).max() > 100 * F32


def test_the_real_tags_normalisation_and_a_warning_where_they_disagree(caplog):
    import open_clip

    from ccl.features.backends.open_clip import image_normalisation

    openai = {"mean": open_clip.OPENAI_DATASET_MEAN, "std": open_clip.OPENAI_DATASET_STD}
    as_tuples = (tuple(openai["mean"]), tuple(openai["std"]))
    assert image_normalisation("ViT-B-16", openai) == as_tuples  # the paper's: every tag OpenAI's
    assert image_normalisation("MobileCLIP-S1", openai) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert image_normalisation("ViT-B-16-SigLIP", openai) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    with caplog.at_level(logging.WARNING, logger="ccl.features.backends.open_clip"):
        assert image_normalisation("ViT-L-14", openai) == as_tuples  # most of its tags
    (said,) = [r.getMessage() for r in caplog.records]
    assert said == (
        "OpenCLIP ViT-L-14: its open_clip tags ['laion2b_s32b_b82k'] were trained on images normalised "
        f"otherwise than the mean {as_tuples[0]} and std {as_tuples[1]} used here; weights of those tags are "
        "embedded off"
    ), said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ccl.features.backends.open_clip"):
        image_normalisation("ViT-B-16", openai)
    assert caplog.records == []
