"""What the CUDA paths say when they cannot run, checked on any machine (no GPU needed): gsplat's
CUDA build failing or finding no toolkit names the toolkit, TORCH_CUDA_ARCH_LIST and MAX_JOBS; a stage
out of GPU memory names the config keys that lower it."""

from __future__ import annotations

import sys
import types

import pytest

from ccl.splat import _gsplat


@pytest.fixture
def unbuilt(monkeypatch):
    monkeypatch.setattr(_gsplat, "_BUILT", False)
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")


def _fake_backend(monkeypatch, module):
    import gsplat.cuda

    monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", module)
    monkeypatch.setattr(gsplat.cuda, "_backend", module, raising=False)


def test_a_failed_gsplat_build_names_the_toolkit_and_the_arch_list(monkeypatch, unbuilt):
    monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", None)  # `from gsplat.cuda import _backend` fails
    with pytest.raises(RuntimeError) as e:
        _gsplat.ensure_gsplat_cuda()
    msg = str(e.value)
    assert "gsplat could not build its CUDA extension" in msg
    assert "TORCH_CUDA_ARCH_LIST=9.0" in msg and "MAX_JOBS" in msg and "CUDA toolkit (nvcc)" in msg
    assert not _gsplat._BUILT


def test_no_cuda_toolkit_is_named(monkeypatch, unbuilt):
    _fake_backend(monkeypatch, types.SimpleNamespace(_C=None))
    with pytest.raises(RuntimeError, match=r"found no CUDA toolkit \(nvcc\).*TORCH_CUDA_ARCH_LIST=9\.0"):
        _gsplat.ensure_gsplat_cuda()


def test_a_built_extension_is_accepted_once(monkeypatch, unbuilt):
    _fake_backend(monkeypatch, types.SimpleNamespace(_C=object()))
    _gsplat.ensure_gsplat_cuda()
    assert _gsplat._BUILT


@pytest.mark.parametrize(
    "stage, keys",
    [
        ("tracks", "tracks.offload_video_to_cpu"),
        ("features", "features.batch_size"),
        ("rgb", "rgb.grow_grad2d"),
        ("language", "scene_load.downscale"),
    ],
)
def test_out_of_gpu_memory_names_the_keys(stage, keys):
    import importlib

    import torch

    from ccl.device import StageOutOfMemoryError, out_of_memory_names

    modules = {
        "tracks": "ccl.tracks.track",
        "features": "ccl.features.extract",
        "rgb": "ccl.splat.train_rgb",
        "language": "ccl.splat.train_language",
    }
    module = importlib.import_module(modules[stage])
    with pytest.raises(StageOutOfMemoryError) as e:
        with out_of_memory_names(stage, module.OUT_OF_MEMORY_KEYS):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
    assert keys in str(e.value) and "Tried to allocate 1.00 GiB" in str(e.value)
    with pytest.raises(ValueError, match="not memory"):  # anything else passes through unchanged
        with out_of_memory_names(stage, module.OUT_OF_MEMORY_KEYS):
            raise ValueError("not memory")
