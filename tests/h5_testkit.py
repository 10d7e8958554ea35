"""Editing a ccl HDF5 file as if ccl had written it so (tests of the checks behind the content checksum)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py

from ccl.io.h5 import stamp_checksum


@contextlib.contextmanager
def rewritten_h5(path: str | Path) -> Iterator[Any]:
    """`path` opened for writing; on leaving, its checksum is stamped again, as ccl's writer stamps it.

    A test that plants a bad value to test a reader's check (features not unit vectors, another scene's
    record) needs the file as a buggy or older writer would have made it: with a checksum of its contents,
    else the checksum refuses it first and the check behind it is never reached (damage: test_integrity.py)."""
    with h5py.File(path, "r+") as f:
        yield f
    stamp_checksum(path)
