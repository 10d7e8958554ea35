"""Thin wrapper over `gsplat.rasterization` (CUDA only; gsplat has no CPU path).

Imported lazily by `ccl.splat.rasterize` so `import ccl.splat` never needs gsplat or CUDA. gsplat's wheel
holds CUDA sources that it compiles on first use (torch's JIT, with the CUDA toolkit's nvcc, for the
architectures in TORCH_CUDA_ARCH_LIST, MAX_JOBS at a time, cached under ~/.cache/torch_extensions);
`ensure_gsplat_cuda` turns a failure there into a message naming the toolkit and those variables.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from ccl.splat.render_output import RenderOutput

if TYPE_CHECKING:
    from torch import Tensor


_BUILT = False


def ensure_gsplat_cuda() -> None:
    """gsplat's CUDA extension, built (or loaded from its cache) now; refused, naming the CUDA toolkit,
    TORCH_CUDA_ARCH_LIST and MAX_JOBS, when it cannot be built."""
    global _BUILT
    if _BUILT:
        return
    import torch

    where = (
        f"torch {torch.__version__} is built for CUDA {torch.version.cuda}; CUDA_HOME="
        f"{os.environ.get('CUDA_HOME', '(unset)')}, TORCH_CUDA_ARCH_LIST="
        f"{os.environ.get('TORCH_CUDA_ARCH_LIST', '(unset: every architecture torch knows, slow)')}, "
        f"MAX_JOBS={os.environ.get('MAX_JOBS', '(unset: gsplat uses 10)')}"
    )
    fix = (
        "install a CUDA toolkit (nvcc) of the CUDA version torch is built for and put it on PATH or in "
        "CUDA_HOME, set TORCH_CUDA_ARCH_LIST to this GPU's architecture (e.g. 9.0 for an H100/H200, 8.9 "
        "for an RTX 4090; `make gpu-check` sets it from the GPU) and MAX_JOBS to the cores to compile "
        "with; or run on the CPU with device: cpu"
    )
    from torch.utils.cpp_extension import CUDA_HOME

    check_cuda_toolkit(CUDA_HOME, torch.version.cuda, fix=fix)  # before a build that fails minutes in
    try:
        from gsplat.cuda import _backend
    except Exception as e:  # torch's JIT raises RuntimeError / OSError / subprocess errors
        raise RuntimeError(
            f"gsplat could not build its CUDA extension ({type(e).__name__}: {str(e)[-600:]}); {where}. "
            f"Fix: {fix}"
        ) from e
    if getattr(_backend, "_C", None) is None:
        raise RuntimeError(
            f"gsplat found no CUDA toolkit (nvcc) to build its CUDA extension; {where}. Fix: {fix}"
        )
    _BUILT = True


# where toolkits are installed when CUDA_HOME is not the one (the NVIDIA installers' default folders)
TOOLKIT_GLOBS = ("/usr/local/cuda*", "/opt/cuda*", "/opt/nvidia/cuda*")


def check_cuda_toolkit(cuda_home: str | None, torch_cuda: str | None, *, fix: str) -> None:
    """The CUDA toolkit torch will build gsplat with (`cuda_home`, torch's CUDA_HOME: the CUDA_HOME
    variable, else two folders above the `nvcc` on PATH) has nvcc and the CUDA headers, and its CUDA major
    version is torch's (`torch_cuda`); refused, naming the folder and what to set, otherwise."""
    if not cuda_home:
        raise RuntimeError(
            f"gsplat found no CUDA toolkit (nvcc): CUDA_HOME is unset and no nvcc is on PATH. Fix: {fix}"
        )
    home = Path(cuda_home)
    nvcc = home / "bin" / "nvcc"
    header = home / "include" / "cuda_runtime.h"
    if not nvcc.exists() or not header.is_file():
        missing = "bin/nvcc" if not nvcc.exists() else "include/cuda_runtime.h"
        how = (
            "the CUDA_HOME variable"
            if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
            else "torch's guess from the nvcc on PATH (two folders up; an nvcc reached through a link or "
            "a wrapper script outside the toolkit gives a folder without the headers)"
        )
        found = [d for pattern in TOOLKIT_GLOBS for d in sorted(glob.glob(pattern)) if _is_toolkit(Path(d))]
        hint = f" Toolkits found here: {', '.join(found)}." if found else ""
        raise RuntimeError(
            f"CUDA_HOME={cuda_home} (from {how}) has no {missing}, so gsplat's CUDA build would fail on "
            f"it.{hint} Fix: set CUDA_HOME to the CUDA toolkit's own folder (the one holding bin/nvcc and "
            "include/cuda_runtime.h, e.g. /usr/local/cuda-13.0) and rerun."
        )
    version = nvcc_version(nvcc)
    if torch_cuda and version and version.split(".")[0] != torch_cuda.split(".")[0]:
        raise RuntimeError(
            f"the CUDA toolkit at {cuda_home} is CUDA {version} but torch is built for CUDA {torch_cuda}: "
            f"gsplat's extension must be built with torch's CUDA major version. Fix: set CUDA_HOME to a "
            f"CUDA {torch_cuda.split('.')[0]}.x toolkit, or install the torch build for CUDA {version}."
        )


def _is_toolkit(folder: Path) -> bool:
    return (folder / "bin" / "nvcc").exists() and (folder / "include" / "cuda_runtime.h").is_file()


def nvcc_version(nvcc: Path) -> str | None:
    """`nvcc --version`'s release ("13.0"), or None if it does not say."""
    try:
        out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else None


def rasterize_gsplat(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, D]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    *,
    backgrounds: Tensor | None,  # [C, D]
    near_plane: float,
    far_plane: float,
    eps2d: float,
    tile_size: int,
) -> RenderOutput:
    try:
        from gsplat import rasterization
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "backend='gsplat' needs gsplat (pip install gsplat==1.5.3) and a CUDA build of torch; "
            "on the CPU use backend='cpu'"
        ) from e

    if means.is_cuda:  # (the tests' recorder of gsplat's arguments takes CPU tensors and builds nothing)
        ensure_gsplat_cuda()
    d = colors.shape[-1]
    out, alpha, meta = rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, packed=False, tile_size=tile_size,
        backgrounds=backgrounds, render_mode="RGB+ED", rasterize_mode="classic", sh_degree=None,
    )  # fmt: skip
    return RenderOutput(
        colors=out[..., :d], alpha=alpha, depth=out[..., d:], means2d=meta["means2d"], radii=meta["radii"]
    )
