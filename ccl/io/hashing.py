"""Content hashes that record which checkpoint or input produced an output."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def file_sha256(path: str | os.PathLike, *, chunk_bytes: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in chunks (checkpoints are gigabytes)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()
