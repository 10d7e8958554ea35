"""Files are written atomically, readable under the user's umask, and a killed write leaves nothing a
later run trusts or keeps: its temporaries are removed by the next job that owns the same outputs."""

from __future__ import annotations

import errno
import os
import stat
from types import SimpleNamespace

import pytest

from ccl.io.atomic import (
    DiskFullError,
    atomic_directory,
    atomic_path,
    atomic_write_json,
    remove_stale_temporaries,
)
from ccl.runlog import script_logging


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_outputs_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        with atomic_directory(tmp_path / "scene") as tmp:
            (tmp / "f.txt").write_text("y")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.json") == file_mode
    assert _mode(tmp_path / "scene") == dir_mode


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert (tmp_path / "a.json").read_text().strip().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_disk_full_names_the_file_and_the_space_left(tmp_path):
    with pytest.raises(DiskFullError) as e, atomic_path(tmp_path / "raw.h5"):
        # what h5py raises on ENOSPC: errno only inside the text
        raise OSError(
            "Unable to synchronously flush file (Disable slist on flush dest failure failed, errno = 28)"
        )
    msg = str(e.value)
    assert e.value.errno == errno.ENOSPC
    assert f"{tmp_path / 'raw.h5'}: no space left" in msg and "MB free" in msg
    assert "delete" not in msg


def test_stale_temporaries_of_a_jobs_outputs_are_removed_when_it_starts(tmp_path):
    out = tmp_path / "masks" / "raw.h5"
    out.parent.mkdir()
    stale_file = out.parent / ".raw.h5.ab12cd.tmp.h5"
    stale_dir = tmp_path / ".scene.x1y2.tmp"
    other = out.parent / ".sp.h5.zz.tmp.h5"  # another output's: not this job's to remove
    for p in (stale_file, other):
        p.write_bytes(b"partial")
    stale_dir.mkdir()
    (stale_dir / "img.png").write_bytes(b"x")
    job = SimpleNamespace(
        log=[str(tmp_path / "job.log")], output=[str(out), str(tmp_path / "scene")], threads=1,
        rule="sam_masks", wildcards={"scene": "ramen"},
    )  # fmt: skip
    with script_logging(job):
        pass
    assert not stale_file.exists() and not stale_dir.exists() and other.exists()
    assert "left by an earlier attempt" in (tmp_path / "job.log").read_text()
    assert remove_stale_temporaries([out]) == []


def test_an_unreadable_safetensors_file_is_never_called_deletable(tmp_path):
    """A user's own .safetensors may be handed to a reader: the message says how the workflow remakes
    its own files and never to delete one."""
    from ccl.io.checkpoint import load_safetensors

    path = tmp_path / "mine.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError) as e:
        load_safetensors(path)
    msg = str(e.value)
    assert str(path) in msg and "delete" not in msg.lower() and "--force" in msg
