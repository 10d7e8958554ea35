"""What the CUDA paths say when they cannot run, checked on any machine (no GPU needed): a CUDA_HOME
without the toolkit's headers, or a toolkit of another CUDA major version than torch's, is named before
gsplat's build starts; the build failing or finding no toolkit names the toolkit, TORCH_CUDA_ARCH_LIST and
MAX_JOBS; a stage out of GPU memory names the config keys that lower it."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch.utils.cpp_extension

from ccl.splat import _gsplat

HERE = Path(__file__).resolve().parent


def fake_toolkit(folder: Path, *, release: str, headers: bool = True) -> Path:
    """A folder laid out as a CUDA toolkit: bin/nvcc that reports `release`, include/cuda_runtime.h."""
    (folder / "bin").mkdir(parents=True)
    nvcc = folder / "bin" / "nvcc"
    nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.1'\n")
    nvcc.chmod(0o755)
    if headers:
        (folder / "include").mkdir()
        (folder / "include" / "cuda_runtime.h").write_text("/* the header torch's build includes */\n")
    return folder


@pytest.fixture
def torch_cuda():
    """The CUDA version of this torch build (its wheels name one even without a GPU)."""
    import torch

    if not torch.version.cuda:
        pytest.skip(f"torch {torch.__version__} is a CPU-only build: it names no CUDA version to compare")
    return torch.version.cuda


@pytest.fixture
def unbuilt(monkeypatch, tmp_path, torch_cuda):
    """gsplat not built yet, with a toolkit of torch's CUDA version as torch's CUDA_HOME."""
    monkeypatch.setattr(_gsplat, "_BUILT", False)
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    home = fake_toolkit(tmp_path / "cuda", release=torch_cuda)
    monkeypatch.setattr(torch.utils.cpp_extension, "CUDA_HOME", str(home))
    return home


def _fake_backend(monkeypatch, module):
    import gsplat.cuda

    monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", module)
    monkeypatch.setattr(gsplat.cuda, "_backend", module, raising=False)


def test_a_failed_gsplat_build_names_the_toolkit_and_the_arch_list(unbuilt):
    """In a process of its own: once gsplat is imported, its backend's import can no longer be made to fail."""
    env = {**os.environ, "TORCH_CUDA_ARCH_LIST": "9.0", "PYTHONPATH": str(HERE.parent.parent)}
    r = subprocess.run(
        [sys.executable, str(HERE / "failed_gsplat_build.py"), str(unbuilt)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    msg = r.stdout
    assert "gsplat could not build its CUDA extension" in msg
    assert "TORCH_CUDA_ARCH_LIST=9.0" in msg and "MAX_JOBS" in msg and "CUDA toolkit (nvcc)" in msg


def test_a_cuda_home_without_headers_is_named_with_the_toolkit_to_use(
    monkeypatch, tmp_path, unbuilt, torch_cuda
):
    """nvcc reached through a wrapper outside the toolkit (/usr/local/bin/nvcc → /usr/local/cuda-13.0):
    torch guesses CUDA_HOME=/usr/local, where the build would fail on cuda_runtime.h minutes in."""
    wrapper_home = fake_toolkit(tmp_path / "usr_local", release=torch_cuda, headers=False)
    monkeypatch.setattr(torch.utils.cpp_extension, "CUDA_HOME", str(wrapper_home))
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr(_gsplat, "TOOLKIT_GLOBS", (str(tmp_path / "cud*"),))  # `unbuilt`'s toolkit is found
    imported = []
    monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", types.SimpleNamespace(_C=object()))
    monkeypatch.setattr(_gsplat, "nvcc_version", lambda nvcc: imported.append(nvcc) or torch_cuda)
    with pytest.raises(RuntimeError) as e:
        _gsplat.ensure_gsplat_cuda()
    msg = str(e.value)
    assert f"CUDA_HOME={wrapper_home}" in msg and "include/cuda_runtime.h" in msg
    assert "guess from the nvcc on PATH" in msg and f"Toolkits found here: {unbuilt}" in msg
    assert not _gsplat._BUILT


def test_a_toolkit_of_another_cuda_version_is_named_before_the_build(
    monkeypatch, tmp_path, unbuilt, torch_cuda
):
    major = int(torch_cuda.split(".")[0])
    other = fake_toolkit(tmp_path / "cuda-old", release=f"{major - 1}.4")
    monkeypatch.setattr(torch.utils.cpp_extension, "CUDA_HOME", str(other))
    with pytest.raises(RuntimeError) as e:
        _gsplat.ensure_gsplat_cuda()
    msg = str(e.value)
    assert f"is CUDA {major - 1}.4 but torch is built for CUDA {torch_cuda}" in msg and str(other) in msg
    assert "set CUDA_HOME" in msg and not _gsplat._BUILT


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
        ("masks", "masks.points_per_batch"),
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
        "masks": "ccl.masks.generate",
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
