"""Provenance of every hand-off: what a file was made from, recorded by its writer, checked by its reader.

A writer records each input as `file_record(path)` — `{"path": absolute path, "sha256": content hash}` —
in its `inputs` (an HDF5 attribute, a checkpoint's header). A reader that is handed both a file and one
of that file's inputs calls `check_made_from`, which refuses the pair, naming both files, when the
input's content is not what the file was made from: a codebook of another masks file, a language field
of another codebook, a colour field of another scene version. Shapes can agree while contents differ;
hashes cannot.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ccl.io.hashing import file_sha256

_CACHE: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, for files read twice


def content_sha256(path: str | os.PathLike) -> str:
    """`file_sha256`, remembered per (path, size, mtime) within a process (a reader checks a file that
    its writer step hashed a moment ago; raw masks files are gigabytes)."""
    path = Path(path).absolute()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        _CACHE[key] = file_sha256(path)
    return _CACHE[key]


def file_record(path: str | os.PathLike) -> dict[str, str]:
    """What a writer records of one input: its absolute path and content hash."""
    return {"path": str(Path(path).absolute()), "sha256": content_sha256(path)}


def recorded_sha256(record: Any) -> str | None:
    """The hash in a record (`file_record`'s dict, or a bare hash as older files wrote), else None."""
    if isinstance(record, Mapping):
        return record.get("sha256")
    if isinstance(record, str) and len(record) == 64:
        return record
    return None


def check_made_from(
    made: str | os.PathLike, record: Any, actual: str | os.PathLike, *, role: str, fix: str
) -> None:
    """Refuse `actual` as the `role` input of `made` unless its content is the one `made` records.

    A record without a hash (a file of an older version) is not checked: nothing can be told from it.
    """
    want = recorded_sha256(record)
    if want is None:
        return
    got = content_sha256(actual)
    if got != want:
        where = f" ({record['path']})" if isinstance(record, Mapping) and record.get("path") else ""
        raise ValueError(
            f"{made} was made from another {role}{where}, sha256 {want[:12]}…, not from {actual} (sha256 "
            f"{got[:12]}…): the two files are of different runs; {fix}"
        )


def remake(path: str | os.PathLike) -> str:
    """The command that remakes a file the workflow made, for the end of a refusal."""
    return f"remake it: `snakemake {path} --force` (the file is replaced, never read)"


def check_scene_of(
    made: str | os.PathLike, inputs: Mapping[str, Any] | None, manifest: str | os.PathLike
) -> None:
    """Refuse `made` unless the scene manifest it records (`inputs["manifest"]`) is `manifest`: a masks
    file of another scene has the same frame names and sizes often enough, never the same manifest."""
    check_made_from(
        made, (inputs or {}).get("manifest"), manifest, role="scene manifest",
        fix=f"it is another scene's file, or this scene's before its images changed; {remake(made)}",
    )  # fmt: skip

