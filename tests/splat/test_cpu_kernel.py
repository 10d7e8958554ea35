"""The C++ kernel's packaging and ABI: the source ships with the package, the cache key follows its
content, and every exported function has ctypes argtypes that match the C++ and refuse wrong arguments."""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import pytest
import torch

from ccl.splat import _cpu_kernel
from ccl.splat._cpu_kernel import SIGNATURES, library_path, load_kernel, read_source, tensor_pointer

SOURCE_FILE = Path(_cpu_kernel.__file__).with_name("cpu_kernel.cpp")
C_KINDS = {"const T*": "T", "T*": "T", "const int32_t*": "i32", "int32_t*": "i32", "const int64_t*": "i64",
           "int64_t*": "i64", "int": "int"}  # fmt: skip


def _exported_signatures(source: str) -> dict[str, tuple[str, ...]]:
    """The parameter lists of the `extern "C"` functions of the CCL_EXPORT macro, as "name:kind"."""
    macro = source[source.index("#define CCL_EXPORT") :].replace("\\\n", " ")
    found = {}
    for op, params in re.findall(r'extern "C" void ccl_splat_(\w+?)_##SFX\(([^)]*)\)', macro):
        args = []
        for p in params.split(","):
            ctype, name = re.match(r"\s*(.*?)\s*(\w+)\s*$", p).groups()
            ctype = " ".join(ctype.split()).replace(" *", "*")
            args.append(f"{name}:{C_KINDS[ctype]}")
        found[op] = tuple(args)
    return found


def test_the_source_is_read_from_the_package_file():
    assert read_source() == SOURCE_FILE.read_text(encoding="utf-8")
    assert "CCL_EXPORT(float, f32)" in read_source()


def test_argtypes_are_declared_as_the_cpp_defines_them():
    assert _exported_signatures(read_source()) == SIGNATURES
    lib = load_kernel()
    assert lib is not None, "the C++ CPU rasterizer did not build; is g++ installed?"
    for op in SIGNATURES:
        for sfx, ctype in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
            fn = getattr(lib, f"ccl_splat_{op}_{sfx}")
            assert fn.restype is None and len(fn.argtypes) == len(SIGNATURES[op]), (op, sfx)
            assert fn.argtypes[1] == ctypes.POINTER(ctype), (op, sfx)  # arg 1 is a float array in every op


def test_a_wrong_argument_is_refused_before_the_call():
    lib = load_kernel()
    assert lib is not None, "the C++ CPU rasterizer did not build; is g++ installed?"
    dims = torch.tensor([1, 1, 3, 16, 16, 16, 1, 1], dtype=torch.int64)
    radii = torch.ones(1, 1, 2, dtype=torch.int32)
    counts = torch.zeros(1, dtype=torch.int64)
    means2d = torch.full((1, 1, 2), 8.0)
    lib.ccl_splat_bin_count_f32(*map(tensor_pointer, (dims, means2d, radii, counts)))
    assert counts.tolist() == [1]  # the right call works
    with pytest.raises(ctypes.ArgumentError, match="argument 2"):  # float64 data to the float32 kernel
        lib.ccl_splat_bin_count_f32(*map(tensor_pointer, (dims, means2d.double(), radii, counts)))
    with pytest.raises(ctypes.ArgumentError, match="argument 3"):  # int64 radii where int32 are read
        lib.ccl_splat_bin_count_f32(*map(tensor_pointer, (dims, means2d, radii.long(), counts)))
    with pytest.raises(TypeError, match=r"4 arguments \(3 given\)"):  # one missing
        lib.ccl_splat_bin_count_f32(*map(tensor_pointer, (dims, means2d, radii)))
    with pytest.raises(TypeError, match="float32, float64, int32 or int64, got torch.float16"):
        tensor_pointer(means2d.half())


def test_the_cache_key_follows_the_sources_content():
    source = read_source()
    assert library_path(source) == library_path(source)
    assert library_path(source) != library_path(source + "\n// an edit\n")
    assert library_path(source).parent == _cpu_kernel.cache_dir()
