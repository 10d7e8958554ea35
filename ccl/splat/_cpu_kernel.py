"""Build and load the C++ CPU kernels of the "cpu" rasterizer backend (source: cpu_kernel.cpp).

Three parts, each the twin of a PyTorch function the tests compare it with (forward and gradients):
the EWA projection with its hand-written backward (`projection.project_gaussians`), the tile binning
(`_cpu_tiles.bin_tiles`) and the depth-sorted tile compositing with its analytic backward
(`_reference.composite_dense`).

One small translation unit with no torch headers, shipped as package data beside this module, compiled
by `g++ -O3 -march=native` into a shared library and called through ctypes on tensors' data pointers:
it builds in about a second (a torch C++ extension takes a minute, which CI would pay on every fresh
cache). The library is cached under ``$CCL_CACHE_DIR/kernels`` (default ``~/.cache/ccl/kernels``),
keyed by a hash of the source's content, the flags and the CPU model/features, and written atomically
(temporary name + rename) so parallel jobs can build it at once. Every exported function has its
argument types declared (`SIGNATURES`), so a call with a wrong count or a tensor of the wrong dtype
raises `ctypes.ArgumentError` instead of reading memory as the wrong type. Threads: plain std::thread
over tiles / Gaussian chunks (no OpenMP runtime to clash with torch's; `-fopenmp-simd` only enables
the vectorisation pragmas), as many as `torch.get_num_threads()`.

Rules of one Gaussian-pixel pair, as gsplat's RasterizeToPixels3DGS{Fwd,Bwd}.cu: sigma from the conic,
alpha = min(0.999, opacity * exp(-sigma)), skipped below 1/255 or for sigma < 0, a pixel stops
(exclusively) when its transmittance would fall to 1e-4 or below. Layout for speed: per tile, Gaussians
in depth order; for each, only the tile rows and 8-pixel chunks its projected box overlaps, evaluated
branch-free in vector registers; per-pixel state channel-major. The backward walks each tile's list
back to front from the last blended Gaussian of the tile, recovering each pixel's transmittance by
division as gsplat does, and accumulates per-Gaussian gradients per thread (no atomics)."""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)

SOURCE_NAME = "cpu_kernel.cpp"  # package data of ccl.splat (pyproject.toml)

CXXFLAGS = [
    "-O3",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-pthread",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-ffp-contract=fast",
    "-fopenmp-simd",
]
# Built on the machine that runs it, so it may use that CPU's vector units; the cache key includes the
# CPU's identity so a home directory shared between different machines keeps one build per CPU kind.
NATIVE_FLAGS = ["-march=native"]

# The exported functions of cpu_kernel.cpp (its CCL_EXPORT macro), `ccl_splat_<op>_<f32|f64>`, argument
# by argument as "name:kind": T = pointer to the suffix's float (f32 float, f64 double), i32 / i64 =
# pointer to int32_t / int64_t, int = a C int. tests/splat/test_rasterize.py holds them equal to the C++.
SIGNATURES: dict[str, tuple[str, ...]] = {
    "project_fwd": (
        "dims:i64", "fp:T", "means:T", "quats:T", "scales:T", "opac:T", "viewmats:T", "Ks:T",
        "means2d:T", "conics:T", "depths:T", "radii:i32", "nthreads:int",
    ),
    "project_bwd": (
        "dims:i64", "fp:T", "means:T", "quats:T", "scales:T", "viewmats:T", "Ks:T", "v_means2d:T",
        "v_conics:T", "v_depths:T", "v_means:T", "v_quats:T", "v_scales:T", "nthreads:int",
    ),
    "bin_count": ("dims:i64", "means2d:T", "radii:i32", "counts:i64"),
    "bin_fill": ("dims:i64", "means2d:T", "radii:i32", "order:i64", "offsets:i64", "ids:i64"),
    "fwd": (
        "dims:i64", "means2d:T", "conics:T", "opac:T", "colors:T", "depths:T", "bg:T", "radii:i32",
        "offsets:i64", "ids:i64", "out:T", "alpha:T", "depth_out:T", "t_final:T", "last:i32",
        "nthreads:int",
    ),
    "bwd": (
        "dims:i64", "means2d:T", "conics:T", "opac:T", "colors:T", "depths:T", "bg:T", "radii:i32",
        "offsets:i64", "ids:i64", "t_final:T", "last:i32", "depth_out:T", "v_out:T", "v_alpha:T",
        "v_depth:T", "v_means2d:T", "v_conics:T", "v_opac:T", "v_colors:T", "v_depths:T", "v_bg:T",
        "nthreads:int",
    ),
}  # fmt: skip
FLOAT_SUFFIXES = {"f32": ctypes.c_float, "f64": ctypes.c_double}


def argtypes(op: str, suffix: str) -> list[type]:
    """The ctypes argtypes of `ccl_splat_<op>_<suffix>`, from SIGNATURES."""
    kinds = {
        "T": ctypes.POINTER(FLOAT_SUFFIXES[suffix]),
        "i32": ctypes.POINTER(ctypes.c_int32),
        "i64": ctypes.POINTER(ctypes.c_int64),
        "int": ctypes.c_int,
    }
    return [kinds[arg.split(":")[1]] for arg in SIGNATURES[op]]


def tensor_pointer(t: Tensor | None) -> ctypes._Pointer | None:
    """A typed pointer to a contiguous tensor's data (None → NULL), to pass to the kernel.

    Typed by the tensor's dtype, so the declared argtypes refuse a tensor of the wrong dtype."""
    if t is None:
        return None
    import torch

    ctype = {
        torch.float32: ctypes.c_float,
        torch.float64: ctypes.c_double,
        torch.int32: ctypes.c_int32,
        torch.int64: ctypes.c_int64,
    }.get(t.dtype)
    if ctype is None:
        raise TypeError(
            f"ccl.splat CPU kernel: tensors must be float32, float64, int32 or int64, got {t.dtype}"
        )
    return ctypes.cast(t.data_ptr(), ctypes.POINTER(ctype))


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_failed: str | None = None


def cache_dir() -> Path:
    root = os.environ.get("CCL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "ccl")
    return Path(root) / "kernels"


def read_source() -> str:
    """The C++ source, as installed with the package."""
    return resources.files(__package__).joinpath(SOURCE_NAME).read_text(encoding="utf-8")


def library_path(source: str) -> Path:
    """Where the library built from `source` is cached: keyed by the source's content, the compiler
    flags and the CPU (a changed source or flag is a new build; an unchanged one is reused)."""
    key = hashlib.sha256("\n".join([source, *CXXFLAGS, *NATIVE_FLAGS, _cpu_id()]).encode()).hexdigest()[:16]
    return cache_dir() / f"ccl_splat_tiles_{key}.so"


def _cpu_id() -> str:
    """Machine type plus the CPU model and feature flags (what -march=native depends on)."""
    info = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = [ln for ln in f.read().splitlines() if ln.startswith(("model name", "flags", "Features"))]
        info = "\n".join(dict.fromkeys(lines))
    except OSError:
        pass
    return platform.machine() + "\n" + info


def _build(source: str, target: Path) -> None:
    """Compile `source` (the text the cache key was made of, not the file, which may change meanwhile)."""
    cxx = os.environ.get("CXX", "g++")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "splat_tiles.cpp"
        src.write_text(source, encoding="utf-8")
        out = Path(tmp) / target.name
        proc = subprocess.run(
            [cxx, *CXXFLAGS, *NATIVE_FLAGS, str(src), "-o", str(out)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{cxx} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        os.replace(out, target)


def load_kernel() -> ctypes.CDLL | None:
    """The compiled kernel, building it on first use; None (with one warning) if it cannot be built.

    Set CCL_SPLAT_KERNEL=0 to skip it and use the PyTorch tile path.
    """
    global _lib, _failed
    if os.environ.get("CCL_SPLAT_KERNEL", "1") == "0":
        return None
    with _lock:
        if _lib is not None or _failed is not None:
            return _lib
        try:
            source = read_source()
        except OSError as e:
            _failed = str(e)
            log.warning(
                "ccl.splat: the C++ CPU rasterizer's source %s is missing from the installed package (%s); "
                "using the slower PyTorch tile path. Reinstall ccl-lgs (pip install .) to get the fast one.",
                SOURCE_NAME, e,
            )  # fmt: skip
            return None
        target = library_path(source)
        try:
            if not target.exists():
                log.info("building the CPU rasterizer kernel into %s", target)
                _build(source, target)
            lib = ctypes.CDLL(str(target))
            for suffix in FLOAT_SUFFIXES:
                for op in SIGNATURES:
                    fn = getattr(lib, f"ccl_splat_{op}_{suffix}")
                    fn.restype = None
                    fn.argtypes = argtypes(op, suffix)
            _lib = lib
        except (OSError, RuntimeError) as e:
            _failed = str(e)
            log.warning(
                "ccl.splat: the C++ CPU rasterizer could not be built or loaded (%s); using the slower "
                "PyTorch tile path. Install g++ (build-essential) to get the fast one.",
                str(e).splitlines()[0] if str(e) else type(e).__name__,
            )
        return _lib
