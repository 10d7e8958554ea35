"""Finished frames of a per-frame stage, kept beside its output until it is written, so that a rerun
after a failure or a kill continues at the first missing frame instead of starting over.

The side folder of output ``raw.h5`` is ``raw.partial/``:

    made_with.json   what its frames were made with (the stage's params, model and checkpoint sha256,
                     the scene's frames, the input files and their sha256), written before any frame
    <frame>.h5       one finished frame in the stage's own layout, written atomically (temporary name,
                     then rename) and stamped complete, so a frame killed mid-write is never read

A folder of per-frame files rather than one side HDF5 file: a process killed while an HDF5 file is
open for writing can leave the whole file unreadable (HDF5 is not crash-safe), which would lose every
finished frame at once; a frame file appears only when complete. The folder is not a declared output
(Snakemake deletes those when a job fails, and leaves other files beside them), and its name does not
start with "." (`ccl.io.atomic.remove_stale_temporaries` removes ``.<output>.*.tmp*`` at job start).

A folder made with anything other than what the rerun has, or one that cannot be read, is set aside
(renamed ``raw.partial.set-aside-<time>``, never deleted) with a warning, and the stage starts over.
The stage removes the folder once its output is written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ccl
from ccl.io.atomic import TEMP_MARK, _json_default, atomic_directory, remove_stale_temporaries
from ccl.io.hashing import file_sha256
from ccl.runlog import warn_user

PARTIAL_SUFFIX = ".partial"
MADE_WITH = "made_with.json"
LAYOUT_VERSION = 1  # of the side folder itself (made_with.json + one file per frame)


def partial_folder(target: str | os.PathLike) -> Path:
    """The side folder of output `target`: ``results/s/masks/raw.h5`` → ``results/s/masks/raw.partial``."""
    target = Path(target)
    return target.with_name(target.stem + PARTIAL_SUFFIX)


def frames_record(cameras: Sequence[Any]) -> list[dict[str, Any]]:
    """The scene's frames as a side folder records them: name, image file and its sha256, size read.

    An image file that does not exist gets sha256 None (a backend that needs no images, on a scene
    described without them)."""
    return [
        {
            "name": c.name,
            "image_path": str(Path(c.image_path).absolute()),
            "image_sha256": file_sha256(c.image_path) if Path(c.image_path).is_file() else None,
            "width": int(c.width),
            "height": int(c.height),
        }
        for c in cameras
    ]


def _normalised(obj: Any) -> Any:
    # what made_with.json gives back: tuples as lists, numpy scalars as numbers, paths as strings
    return json.loads(json.dumps(obj, sort_keys=True, default=_json_default))


class FrameStore:
    """The side folder of one output, opened for a run: `kept` frames from an earlier attempt, and
    `frame_path(name)` where the run writes each frame it makes."""

    def __init__(self, folder: Path, kept: Sequence[str]) -> None:
        self.folder = folder
        self.kept: tuple[str, ...] = tuple(kept)  # in frame order

    def frame_path(self, name: str) -> Path:
        return self.folder / f"{name}.h5"

    @classmethod
    def open(
        cls,
        target: str | os.PathLike,
        *,
        made_with: Mapping[str, Any],
        frame_names: Sequence[str],
        check_frame: Callable[[Path, str], None],
        logger: logging.Logger,
    ) -> FrameStore:
        """The side folder of `target`, reused if it was made with `made_with`, else set aside and
        begun anew.

        `check_frame(path, name)` reads a kept frame file in full and raises if it is not frame `name`
        as this run would make it (the stage's reader: kind, complete mark, frame, size). Call it where
        nothing else writes `target` (a Snakemake job owns its outputs).
        """
        folder = partial_folder(target)
        want = _normalised({**made_with, "layout_version": LAYOUT_VERSION, "ccl_version": ccl.__version__})
        remove_stale_temporaries([folder])  # a folder being created when a run was killed
        if folder.exists() or folder.is_symlink():
            try:
                kept = cls._kept_frames(folder, want, frame_names, check_frame)
            except _NotReusable as e:
                _set_aside(folder, str(e), logger)
            else:
                if kept:
                    logger.info(
                        "%s: %d of %d frames finished by an earlier attempt, kept; making the other %d",
                        folder,
                        len(kept),
                        len(frame_names),
                        len(frame_names) - len(kept),
                    )
                return cls(folder, kept)
        with atomic_directory(folder) as tmp:
            (tmp / MADE_WITH).write_text(json.dumps(want, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        return cls(folder, ())

    @staticmethod
    def _kept_frames(
        folder: Path, want: Any, frame_names: Sequence[str], check_frame: Callable[[Path, str], None]
    ) -> list[str]:
        try:
            got = json.loads((folder / MADE_WITH).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise _NotReusable(f"its {MADE_WITH} cannot be read: {e}") from None
        if got != want:
            raise _NotReusable(f"made with other {', '.join(_differences(got, want))}")
        for stale in folder.glob(f".*{TEMP_MARK}*"):  # a frame killed mid-write: never read
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        kept = []
        for name in frame_names:
            path = folder / f"{name}.h5"
            if not path.exists():
                continue
            try:
                check_frame(path, name)
            except Exception as e:  # any reason a file cannot be read back is a reason not to trust it
                raise _NotReusable(f"its frame file {path.name} cannot be used: {e}") from None
            kept.append(name)
        return kept

    def remove(self, logger: logging.Logger) -> None:
        """Remove the folder, once the output is written (a failure only warns: the output is good)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.folder.exists():
            warn_user(
                logger,
                f"{self.folder}: could not remove this folder of finished frames after its output was "
                "written; it is no longer needed and can be removed",
            )


class _NotReusable(Exception):
    """Why a side folder cannot be reused."""


def _differences(got: Any, want: Any) -> list[str]:
    """The keys (one level into mappings) on which an old made_with and a new one differ, with the
    values when they are short: ["params.pred_iou_thresh (0.7, now 0.8)", "frames"]."""
    if not isinstance(got, dict):
        return [f"contents (not a mapping: {type(got).__name__})"]
    out = []
    for key in sorted(set(got) | set(want)):
        old, new = got.get(key), want.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            keys = sorted(set(old) | set(new))
            out += [
                _difference(f"{key}.{k}", old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)
            ]
        else:
            out.append(_difference(key, old, new))
    return out


def _difference(key: str, old: Any, new: Any) -> str:
    shown = f"{old!r}, now {new!r}"
    return f"{key} ({shown})" if len(shown) <= 60 else key


def _set_aside(folder: Path, reason: str, logger: logging.Logger) -> Path:
    """Rename `folder` out of the way (never delete: it may be the only copy of hours of work)."""
    base = f"{folder.name}.set-aside-{time.strftime('%Y%m%d-%H%M%S')}"
    aside, n = folder.with_name(base), 1
    while aside.exists() or aside.is_symlink():
        n += 1
        aside = folder.with_name(f"{base}-{n}")
    os.rename(folder, aside)
    warn_user(
        logger,
        f"{folder}: frames finished by an earlier attempt are not used ({reason}); moved to {aside} "
        "(kept for you to inspect, remove it when done); making every frame again",
    )
    return aside
