"""Loaded at start-up by every Python process of a `python -m bench.verify_cost` run (this folder is put
first on PYTHONPATH there, and nowhere else): times the functions that take ccl's checksums and content
hashes, and at exit appends one JSON line per process to $CCL_BENCH_VERIFY_LOG.

Timed (each is where one kind of hashing happens; none calls another, so no time is counted twice):
- ccl.io.hashing.file_sha256: recorded inputs (`ccl.io.provenance`), the images' content hashes (the
  scene manifest and every reader of it), and the weights' sha256 (`weights_sha256` calls it);
- ccl.io.h5.bytes_sha256: the checksum of an HDF5 file, stamped by its writer and checked by readers
  (h5_content_sha256: the same for the files of an earlier ccl);
- ccl.io.checkpoint.tensors_sha256: the same for a safetensors checkpoint.

The functions are replaced as their modules finish loading, before any other module imports them by
name, so every caller gets the timed one. The product has no timing code of its own.
"""

from __future__ import annotations

import atexit
import functools
import importlib.abc
import importlib.machinery
import json
import os
import sys
import time

_LOG = os.environ.get("CCL_BENCH_VERIFY_LOG")
_STARTED = time.perf_counter()
TIMED = {
    "ccl.io.hashing": ("file_sha256",),
    "ccl.io.h5": ("bytes_sha256", "h5_content_sha256"),
    "ccl.io.checkpoint": ("tensors_sha256",),
}
_seconds = {name: 0.0 for names in TIMED.values() for name in names}
_calls = {name: 0 for names in TIMED.values() for name in names}


def _timed(name, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _seconds[name] += time.perf_counter() - t0
            _calls[name] += 1

    return wrapper


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader, names):
        self.loader, self.names = loader, names

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        for name in self.names:
            setattr(module, name, _timed(name, getattr(module, name)))


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in TIMED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader, TIMED[fullname])
        return spec


def _process_name() -> str:
    """The program this process runs: a script's file name, or a package's run with `python -m`
    (Snakemake's own process is "snakemake")."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    head, name = os.path.split(argv0)
    return os.path.basename(head) if name == "__main__.py" else name


def _report():
    main = sys.modules.get("__main__")
    smk = getattr(main, "snakemake", None)  # a Snakemake `script:` job has its `snakemake` object here
    record = {
        "rule": getattr(smk, "rule", None),
        "wildcards": {k: str(v) for k, v in smk.wildcards.items()} if smk is not None else {},
        "process": _process_name(),
        "pid": os.getpid(),
        "wall_s": time.perf_counter() - _STARTED,
        "hash_s": _seconds,
        "calls": _calls,
    }
    with open(_LOG, "a") as f:  # one short line per process, appended
        f.write(json.dumps(record) + "\n")


if _LOG:
    sys.meta_path.insert(0, _Finder())
    atexit.register(_report)
