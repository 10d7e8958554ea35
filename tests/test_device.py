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
