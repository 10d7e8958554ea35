import pytest
import torch

from ccl.device import resolve_device


def test_auto_picks_cuda_only_when_torch_sees_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_cuda_names_the_config_key_and_the_fix(monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device is '.*' but torch sees no CUDA device; set `device: auto`"):
        resolve_device(device)


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "CPU"])
def test_unknown_device_is_refused(device):
    with pytest.raises(ValueError, match=r"device must be one of auto, cpu, cuda; got"):
        resolve_device(device)


def test_precision_is_the_cuda_dtype_and_float32_on_a_cpu():
    from ccl.device import PRECISIONS, compute_dtype

    assert {p: compute_dtype("cuda:0", p) for p in PRECISIONS} == {
        "fp32": "float32",
        "bf16": "bfloat16",
        "fp16": "float16",
    }
    assert {compute_dtype("cpu", p) for p in PRECISIONS} == {"float32"}
    with pytest.raises(ValueError, match="precision must be one of"):
        compute_dtype("cuda", "fp8")


def test_autocast_is_a_no_op_on_a_cpu():
    from ccl.device import autocast

    x = torch.randn(4, 4)
    for precision in ("fp32", "bf16", "fp16"):
        with autocast("cpu", precision):
            assert not torch.is_autocast_enabled("cpu") and not torch.is_autocast_enabled("cuda")
            assert (x @ x).dtype == torch.float32
