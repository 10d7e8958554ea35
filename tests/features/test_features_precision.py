"""features.precision: on a CPU the image and text embeddings are the same bit for bit whatever it says
(autocast is CUDA's only), and the file records the dtype that was computed in."""

from __future__ import annotations

import numpy as np
import pytest

from ccl.features import FeaturesConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _encoder(tiny_clip, precision: str):
    from ccl.features.backends.open_clip import OpenClipEncoder

    name, weights = tiny_clip
    cfg = FeaturesConfig(
        backend="open_clip", model_name=name, pretrained=str(weights), crop_size=32, precision=precision
    )
    return OpenClipEncoder(cfg, device="cpu")


def test_precision_leaves_cpu_embeddings_bit_identical(tiny_clip):
    import torch

    crops = np.random.default_rng(0).integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
    reference = _encoder(tiny_clip, "fp32")
    want_img, want_txt = reference.encode_crops(crops), reference.encode_text(["mug", "red apple"])
    for precision in ("bf16", "fp16"):
        enc = _encoder(tiny_clip, precision)
        assert enc.encode_crops(crops).tobytes() == want_img.tobytes(), precision
        assert enc.encode_text(["mug", "red apple"]).tobytes() == want_txt.tobytes(), precision
        assert enc.model_info()["dtype"] == "float32"
    # the comparison can fail: the same encoder under CPU autocast does change the embeddings
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert reference.encode_crops(crops).tobytes() != want_img.tobytes()


def test_the_default_precision_and_the_key_checked():
    assert FeaturesConfig().precision == "fp16"
    with pytest.raises(ValueError, match=r"features\.precision = 'half'"):
        FeaturesConfig(precision="half")
