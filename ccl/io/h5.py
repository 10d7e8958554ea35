"""The common frame of every HDF5 file the workflow writes.

Root attributes (all files):
    kind            str   which layout ("masks_raw", "masks", "tracks", "features", "codebook", "gt", ...)
    format_version  int   version of that layout; readers refuse versions they do not know
    params          str   JSON of the stage config that produced the file
    model           str   JSON: backend, model name, checkpoint path and sha256, `simulated` flag
    inputs          str   JSON: the input files this one was derived from, with their sha256 where cheap
    ccl_version     str
    complete        bool  written last, just before the rename: a file without it is never trusted

Frames are groups named after the image's file stem (``frame_00001``), in the scene's frame order
(root attribute ``frame_names``, JSON list). Large arrays are chunked and gzip-compressed.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import ccl
from ccl.io.atomic import _json_default, atomic_path


class H5FormatError(ValueError):
    """An HDF5 file is not what its reader expects (wrong kind, version, or left incomplete)."""


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=_json_default)


@contextlib.contextmanager
def write_h5(
    path: str | os.PathLike,
    *,
    kind: str,
    format_version: int,
    params: Mapping[str, Any] | Any,
    model: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    frame_names: list[str] | None = None,
) -> Iterator[Any]:
    """Open a new HDF5 file under a temporary name; stamp and rename it when the block succeeds."""
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["kind"] = kind
            f.attrs["format_version"] = int(format_version)
            f.attrs["params"] = _json(params)
            f.attrs["model"] = _json(model or {})
            f.attrs["inputs"] = _json(inputs or {})
            f.attrs["ccl_version"] = ccl.__version__
            if frame_names is not None:
                f.attrs["frame_names"] = _json(list(frame_names))
            yield f
            f.attrs["complete"] = True


def open_h5_for_read(path: str | os.PathLike, *, kind: str, format_versions: tuple[int, ...] = (1,)):
    """Open an HDF5 file written by `write_h5`, refusing a wrong kind, unknown version or incomplete file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a {kind!r} HDF5 file written by ccl)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise H5FormatError(
            f"{path}: not a readable HDF5 file ({e}); it was probably left by a killed run: "
            "remake it by asking the workflow for it: `snakemake <this file> --force` (it is replaced, never read)"
        ) from e
    try:
        got_kind = f.attrs.get("kind")
        if got_kind != kind:
            raise H5FormatError(f"{path}: holds {got_kind!r} data, expected {kind!r}")
        version = int(f.attrs.get("format_version", -1))
        if version not in format_versions:
            raise H5FormatError(
                f"{path}: format_version {version}, this ccl reads {format_versions}; rebuild it with this version"
            )
        if not bool(f.attrs.get("complete", False)):
            raise H5FormatError(
                f"{path}: incomplete (no 'complete' mark, left by a killed run); remake it: `snakemake <this file> --force`"
            )
    except BaseException:
        f.close()
        raise
    return f


def read_json_attr(obj: Any, name: str, default: Any = None) -> Any:
    """A JSON-encoded attribute of a file or group, decoded."""
    raw = obj.attrs.get(name)
    if raw is None:
        return default
    return json.loads(raw)


def frame_names_of(f: Any) -> list[str]:
    names = read_json_attr(f, "frame_names")
    if names is None:
        names = sorted(f.keys())
    return list(names)


def put_array(group: Any, name: str, data: np.ndarray, *, compress: bool = True) -> Any:
    """Store an array; arrays above a few KB are chunked and gzip-compressed."""
    data = np.asarray(data)
    if compress and data.size >= 1024:
        return group.create_dataset(name, data=data, compression="gzip", compression_opts=4, shuffle=True)
    return group.create_dataset(name, data=data)
