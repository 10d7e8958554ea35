"""Content hashes that record which checkpoint or input produced an output."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def file_sha256(path: str | os.PathLike, *, chunk_bytes: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in chunks (checkpoints are gigabytes)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    """Where `weights_sha256` remembers hashes: $CCL_HASH_CACHE, else $XDG_CACHE_HOME/ccl/sha256, else
    ~/.cache/ccl/sha256."""
    if os.environ.get("CCL_HASH_CACHE"):
        return Path(os.environ["CCL_HASH_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "ccl" / "sha256"


_REMEMBERED: dict[str, str] = {}  # file identity -> sha256, in this process


def weights_sha256(path: str | os.PathLike) -> str:
    """`file_sha256` of a model's weights, hashed once per file version and remembered across processes.

    Every job and `ccl` command that builds a model records or checks its weights' sha256 (a record
    compared with the hub's published hashes, so sha256); hashing a file of hundreds of MB cost more than
    torch.load of it (bench/integrity.py). The hash is kept in `cache_dir()` under the file's identity:
    absolute path, device, inode, size, mtime_ns and ctime_ns. ctime cannot be set back by a user, so
    weights replaced or rewritten in place (an mtime restored included) are hashed again. A cache that
    cannot be written or read only costs the hash."""
    import json

    path = Path(path).expanduser().absolute()
    st = path.stat()
    identity = f"{path}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}"
    if identity in _REMEMBERED:
        return _REMEMBERED[identity]
    entry = cache_dir() / f"{hashlib.sha256(identity.encode()).hexdigest()}.json"
    try:
        record = json.loads(entry.read_text())
        if record.get("identity") == identity and len(record.get("sha256", "")) == 64:
            _REMEMBERED[identity] = record["sha256"]
            return record["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    digest = file_sha256(path)
    _REMEMBERED[identity] = digest
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_name(f".{entry.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"identity": identity, "sha256": digest}))
        os.replace(tmp, entry)
    except OSError:
        pass
    return digest


def check_content_checksum(
    path: str | os.PathLike,
    recorded: str | None,
    compute: Callable[[], str],
    *,
    error: type[Exception],
    log: Any,
) -> str | None:
    """The one rule for the checksum a ccl file carries of its own contents: none recorded (a file of an
    earlier ccl) is read, with a warning once; one that differs from `compute()` is refused with `error`.
    Returns the checksum computed, None when none was recorded."""
    if recorded is None:
        from ccl.runlog import warn_once

        warn_once(
            log, f"{path}: written by an earlier ccl without a checksum of its contents, so a damaged copy "
            "could not be told; it is read as it is (its readers still compare the inputs it records). "
            "Remake it to have it checked: `snakemake <this file> --force`",
        )  # fmt: skip
        return None
    got = compute()
    if got != recorded:
        raise error(
            f"{path}: its contents are not those it was written with (checksum {str(recorded)[:12]}… recorded, "
            f"{got[:12]}… now): the file was damaged or edited after it was written, and is not used. Remake "
            "it: `snakemake <this file> --force` for a file the workflow made (it is replaced, never read), or "
            "restore it from a good copy"
        )
    return got
