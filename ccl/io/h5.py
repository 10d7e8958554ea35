"""The common frame of every HDF5 file the workflow writes.

Root attributes (all files):
    kind            str   which layout ("masks_raw", "masks", "tracks", "features", "codebook", "gt", ...)
    format_version  int   version of that layout; readers refuse versions they do not know
    params          str   JSON of the stage config that produced the file
    model           str   JSON: backend, model name, checkpoint path and sha256, `simulated` flag
    inputs          str   JSON: the input files this one was derived from, with their sha256 where cheap
    ccl_version     str
    complete        bool  written last, just before the rename: a file without it is never trusted

The file's checksum is not an attribute: the file starts with a 512-byte HDF5 user block (bytes HDF5
reserves for its user and never reads) holding `ccl content sha256 <64 hex digits>`, the sha256 of
every byte after the user block, stamped once the file is closed and before its rename
(`stamp_checksum`), and verified by `open_h5_for_read`: a file damaged or edited after it was written
is refused. Hashing the bytes costs what reading them costs. Files of the previous release carry their
checksum as root attribute `content_sha256`, taken over every group, dataset and attribute
(`h5_content_sha256`); visiting each object cost up to 16 % of a merge job (bench/verify_cost.py).
Those files are still verified by it.

Frames are groups named after the image's file stem (``frame_00001``), in the scene's frame order
(root attribute ``frame_names``, JSON list). Large arrays are chunked and gzip-compressed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import ccl
from ccl.io.atomic import _json_default, atomic_path

log = logging.getLogger(__name__)

CHECKSUM_ATTR = "content_sha256"  # the checksum as files of an earlier ccl carry it
_UNHASHED_ROOT_ATTRS = (CHECKSUM_ATTR, "complete")  # set after that checksum was taken
USERBLOCK_BYTES = 512  # HDF5's smallest user block
_STAMP = b"ccl content sha256 "  # + 64 hex digits + newline, the rest of the user block zeros
_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> checksum: once per process


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
        with h5py.File(tmp, "w", userblock_size=USERBLOCK_BYTES) as f:
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
        digest = stamp_checksum(tmp)
    _remember_verified(Path(path), digest)  # this process wrote it: its own reads need no second hash


def bytes_sha256(path: str | os.PathLike, *, skip: int = USERBLOCK_BYTES) -> str:
    """sha256 of a file's bytes after its first `skip` (the user block the checksum is stamped in)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(skip)
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def stamp_checksum(path: str | os.PathLike) -> str:
    """Write the checksum of a closed file's contents into its user block; returns it."""
    digest = bytes_sha256(path)
    with open(path, "r+b") as fh:
        fh.write(_STAMP + digest.encode() + b"\n")
    return digest


def stamped_sha256(path: str | os.PathLike) -> str | None:
    """The checksum stamped in a file's user block, None when there is no stamp."""
    with open(path, "rb") as fh:
        head = fh.read(len(_STAMP) + 64)
    if not head.startswith(_STAMP):
        return None
    return head[len(_STAMP) :].decode("ascii", errors="replace")


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
        _verify_checksum(path, f)
    except BaseException:
        f.close()
        raise
    return f


def _hash_value(h: Any, value: Any) -> None:
    """Feed an attribute's or a contiguous dataset's value to `h`, independent of numpy's repr."""
    a = np.asarray(value)
    if a.dtype.kind in "OSU":  # strings (h5py gives str or bytes): their text
        items = [x.decode() if isinstance(x, bytes) else str(x) for x in a.ravel().tolist()]
        h.update(f"s{list(a.shape)}".encode() + json.dumps(items).encode())
    else:
        h.update(f"{a.dtype.str}{list(a.shape)}".encode() + np.ascontiguousarray(a).tobytes())


def h5_content_sha256(f: Any) -> str:
    """sha256 of an open HDF5 file's contents: every group's and dataset's name and attributes (the
    root's but `content_sha256` and `complete`) and every dataset's stored bytes, chunk by chunk as
    they lie on disk (compressed chunks are hashed as stored, never decompressed), in name order.

    A dataset's chunks are listed in one pass (`chunk_iter`) and their bytes read straight from the
    file at the offsets it gives: asking HDF5 for each chunk by index costs a search per chunk, and was
    most of the checksum's time for files of many small chunks (raw masks; bench/integrity.py)."""
    h = hashlib.sha256()
    if f.mode != "r":
        f.flush()  # what HDF5 still buffers reaches the file the chunks are read from
    fd = os.open(f.filename, os.O_RDONLY) if f.driver == "sec2" and os.path.isfile(f.filename) else None
    base = f.userblock_size  # chunk addresses are relative to the end of the user block

    def visit(obj: Any) -> None:
        h.update(f"\0{obj.name}\0".encode())
        for key in sorted(obj.attrs):
            if obj.name == "/" and key in _UNHASHED_ROOT_ATTRS:
                continue
            h.update(f"@{key}=".encode())
            _hash_value(h, obj.attrs[key])
        if hasattr(obj, "keys"):  # a group
            for key in sorted(obj.keys()):
                visit(obj[key])
        elif obj.chunks is None:  # a contiguous (small) dataset
            _hash_value(h, obj[()])
        else:
            h.update(f"{obj.dtype.str}{list(obj.shape)}".encode())
            dsid = obj.id
            if fd is not None and hasattr(dsid, "chunk_iter"):  # HDF5 >= 1.12.3
                chunks: list[Any] = []
                dsid.chunk_iter(chunks.append)
                for c in sorted(chunks, key=lambda c: c.chunk_offset):
                    h.update(f"{c.chunk_offset}{c.filter_mask}".encode())
                    h.update(os.pread(fd, c.size, base + c.byte_offset))
                return
            offsets = sorted(dsid.get_chunk_info(i).chunk_offset for i in range(dsid.get_num_chunks()))
            for offset in offsets:
                mask, data = dsid.read_direct_chunk(offset)
                h.update(f"{offset}{mask}".encode())
                h.update(data)

    try:
        visit(f)
    finally:
        if fd is not None:
            os.close(fd)
    return h.hexdigest()


def _verify_checksum(path: Path, f: Any) -> None:
    """Refuse a file whose contents are not those its writer took the checksum of (once per file
    version and process); accept, with a warning, a file of an earlier ccl that has none."""
    from ccl.io.hashing import check_content_checksum

    if f.userblock_size:  # this ccl's files: the stamp in the user block, over the bytes after it
        want = stamped_sha256(path)
        if want is None:
            raise H5FormatError(
                f"{path}: its checksum stamp is missing or damaged (the file's first bytes were overwritten), "
                "so its contents cannot be trusted; remake it: `snakemake <this file> --force`"
            )

        def compute() -> str:
            return bytes_sha256(path, skip=f.userblock_size)

    else:  # an earlier ccl's: the root attribute over every object, or none
        want = f.attrs.get(CHECKSUM_ATTR)

        def compute() -> str:
            return h5_content_sha256(f)

    if want is not None and _verified.get(_version(path)) == want:
        return
    got = check_content_checksum(path, want, compute, error=H5FormatError, log=log)
    if got is not None:
        _remember_verified(path, got)


def _version(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.absolute()), st.st_size, st.st_mtime_ns)


def _remember_verified(path: Path, checksum: str) -> None:
    """`path`, as it is now, has contents of `checksum` (once per file version and process)."""
    _verified[_version(path)] = checksum


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
