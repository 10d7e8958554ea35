"""Write to a temporary name beside the target, then rename: readers never see half a file."""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

TEMP_MARK = ".tmp"  # every temporary name is ".<target name>.<random><TEMP_MARK>[suffix]"


def current_umask() -> int:
    """The process's umask (reading it means setting it: set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


class DiskFullError(OSError):
    """No space left where a file was being written: names the file and the space left."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno 28]" prefix
        return str(self.strerror)


def _disk_full(target: Path, e: BaseException) -> DiskFullError | None:
    # h5py reports ENOSPC as "Disable slist on flush dest failure failed (... errno = 28 ...)", at times
    # in a RuntimeError; safetensors as a SafetensorError "... No space left on device (os error 28)"
    text = str(e)
    if getattr(e, "errno", None) != errno.ENOSPC and not any(
        s in text for s in ("errno = 28", "os error 28", "No space left")
    ):
        return None
    try:
        free = f"{shutil.disk_usage(target.parent).free / 2**20:.0f} MB free"
    except OSError:
        free = "free space unknown"
    return DiskFullError(
        errno.ENOSPC,
        f"{target}: no space left on the device while writing it ({free} in {target.parent}); free some "
        "space there (or point the workflow's working directory elsewhere) and rerun: the file was not written, "
        "and the work the job kept (finished frames, its last partial checkpoint) is resumed, not redone",
    )


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto `target`.

    On an exception the temporary file is removed and `target`, if it existed, is left untouched.
    The temporary name keeps the target's suffix (h5py and PIL choose formats by it). The file gets the
    mode of any new file under the user's umask (mkstemp's 0600 would keep it from collaborators).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = target.suffix if suffix is None else suffix
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f"{TEMP_MARK}{suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        full = _disk_full(target, e) if isinstance(e, Exception) else None
        if full is not None:
            raise full from e
        raise


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it replaces `target` (an older one is moved
    aside, then removed). On an exception the temporary folder goes and `target` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=TEMP_MARK, dir=target.parent))
    try:
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would make the folder private
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old.{os.getpid()}{TEMP_MARK}")
            os.replace(target, old)
            shutil.rmtree(old)
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
        full = _disk_full(target, e) if isinstance(e, Exception) else None
        if full is not None:
            raise full from e
        raise


def remove_stale_temporaries(targets: Iterable[str | os.PathLike]) -> list[Path]:
    """Remove the temporary files and folders that earlier, killed writes of `targets` left beside
    them. Call it where nothing else can be writing the same targets (a Snakemake job owns its outputs
    while it runs). Returns what was removed."""
    removed = []
    for target in map(Path, targets):
        if not target.parent.is_dir():
            continue
        for stale in target.parent.glob(f".{glob.escape(target.name)}.*{TEMP_MARK}*"):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
            removed.append(stale)
    return removed


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def atomic_write_json(target: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    return atomic_write_text(
        target, json.dumps(obj, indent=indent, sort_keys=True, default=_json_default) + "\n"
    )


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths and dataclasses turn up in parameters and metrics.
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
