"""Resumable mask generation: a rerun after a failure or a kill makes only the missing frames and
writes, byte for byte, the file an uninterrupted run writes; a side folder that does not match is set
aside, never used; the folder is gone once raw.h5 is written."""

from __future__ import annotations

import dataclasses
import functools
import logging
import multiprocessing
import os

import pytest
from masks_testkit import TINY_BUILDERS, blob_image, build_tiny_sam, h5_contents, image_scene

from ccl.io.atomic import remove_stale_temporaries
from ccl.io.resume import MADE_WITH, partial_folder
from ccl.masks import MasksConfig, generate_masks
from ccl.masks.backends.sam import SamBackend
from ccl.masks.backends.sim import SimBackend
from ccl.runlog import script_logging


class Interrupted(RuntimeError):
    """What the patched backend raises: the failure at frame k that the rerun recovers from."""


class FramesMade:
    """Records the frames `backend_cls` makes; with `fail_at` set it raises at that frame instead."""

    def __init__(self, monkeypatch, backend_cls):
        self.made: list[int] = []
        self.fail_at: int | None = None
        real = backend_cls.frame_levels

        def frame_levels(backend, index, camera):
            if index == self.fail_at:
                raise Interrupted(f"interrupted at frame {index}")
            self.made.append(index)
            return real(backend, index, camera)

        monkeypatch.setattr(backend_cls, "frame_levels", frame_levels)


def _interrupt(frames: FramesMade, run, out, *, at: int) -> None:
    """Run `run(out)` failing at frame `at`; leave `frames` counting afresh for the next run."""
    frames.fail_at = at
    with pytest.raises(Interrupted):
        run(out)
    frames.fail_at, frames.made[:] = None, []
    assert not out.exists()
    kept = sorted(p.name for p in partial_folder(out).iterdir())
    assert kept == sorted([MADE_WITH, *(f"frame_{i:05d}.h5" for i in range(at))])


def _sim_run(scene, **cfg):
    def run(out, *, seed=0, scene=scene, inputs=None):
        return generate_masks(scene, cfg=MasksConfig(**cfg), out_path=out, seed=seed, inputs=inputs)

    return run


def test_sim_rerun_makes_only_the_missing_frames_and_writes_the_uninterrupted_file(
    tiny_scene, tmp_path, monkeypatch
):
    frames, run = FramesMade(monkeypatch, SimBackend), _sim_run(tiny_scene)
    reference = run(tmp_path / "uninterrupted" / "raw.h5")
    assert not partial_folder(reference).exists()  # an uninterrupted run leaves nothing beside
    frames.made.clear()

    out = tmp_path / "run" / "raw.h5"
    _interrupt(frames, run, out, at=3)
    remove_stale_temporaries([out])  # what a job's start does: the side folder is not a temporary
    assert (partial_folder(out) / "frame_00002.h5").is_file()
    run(out)
    assert frames.made == list(range(3, len(tiny_scene.cameras)))
    assert h5_contents(out) == h5_contents(reference)
    assert not partial_folder(out).exists()


def test_sam_rerun_makes_only_the_missing_frames_and_writes_the_uninterrupted_file(
    tmp_path, monkeypatch, tiny_sam_cfg
):
    scene = image_scene(tmp_path / "scene", [blob_image(seed=i) for i in range(4)])
    frames = FramesMade(monkeypatch, SamBackend)

    def run(out):
        return generate_masks(scene, cfg=tiny_sam_cfg, out_path=out, device="cpu", sam_builders=TINY_BUILDERS)

    reference = run(tmp_path / "uninterrupted" / "raw.h5")
    frames.made.clear()
    out = tmp_path / "run" / "raw.h5"
    _interrupt(frames, run, out, at=2)
    run(out)
    assert frames.made == [2, 3]
    contents = h5_contents(out)
    assert contents == h5_contents(reference)
    assert any(k.endswith("masks_packed") and v["shape"][0] > 0 for k, v in contents.items())  # real masks
    assert not partial_folder(out).exists()


def test_sam_side_folder_of_another_checkpoint_is_set_aside(tmp_path, monkeypatch, tiny_sam_cfg, caplog):
    import torch

    scene = image_scene(tmp_path / "scene", [blob_image(seed=i) for i in range(3)])
    other = tmp_path / "other_sam.pth"
    state = build_tiny_sam().state_dict()
    state["mask_decoder.iou_token.weight"] += 0.5
    torch.save(state, other)
    frames = FramesMade(monkeypatch, SamBackend)

    def run(out, cfg=tiny_sam_cfg):
        return generate_masks(scene, cfg=cfg, out_path=out, device="cpu", sam_builders=TINY_BUILDERS)

    out = tmp_path / "run" / "raw.h5"
    _interrupt(frames, run, out, at=2)
    other_cfg = dataclasses.replace(tiny_sam_cfg, sam_checkpoint=str(other))
    with caplog.at_level(logging.WARNING):
        run(out, other_cfg)
    assert frames.made == [0, 1, 2]
    assert "model.checkpoint_sha256" in caplog.text and "not used" in caplog.text
    assert h5_contents(out) == h5_contents(run(tmp_path / "other" / "raw.h5", other_cfg))


@pytest.mark.parametrize("change", ["params", "seed", "frames", "manifest"])
def test_side_folder_made_with_other_settings_is_set_aside_not_used(
    tiny_scene, tmp_path, monkeypatch, caplog, change
):
    from ccl.io.provenance import file_record

    manifest = tmp_path / "scene.json"
    manifest.write_text('{"name": "tiny"}')
    inputs = {"manifest": file_record(manifest)}  # as the workflow's script passes it
    frames, run = FramesMade(monkeypatch, SimBackend), _sim_run(tiny_scene)
    other_run, other = run, {"inputs": inputs}
    if change == "params":
        other_run = _sim_run(tiny_scene, sim_miss_rate=0.3)
    elif change == "seed":
        other["seed"] = 1
    elif change == "frames":
        other["scene"] = dataclasses.replace(tiny_scene, cameras=tiny_scene.cameras[1:])
    else:  # the manifest remade, at the same path, with other contents
        manifest.write_text('{"name": "tiny", "downscale": 2}')
        other["inputs"] = {"manifest": file_record(manifest)}
    out = tmp_path / "run" / "raw.h5"
    _interrupt(frames, functools.partial(run, inputs=inputs), out, at=3)
    before = {p.name: p.read_bytes() for p in partial_folder(out).iterdir()}

    with caplog.at_level(logging.WARNING):
        other_run(out, **other)
    n_frames = len(other.get("scene", tiny_scene).cameras)
    assert frames.made == list(range(n_frames))  # nothing reused
    why = {
        "params": "params.sim_miss_rate (0.1, now 0.3)",
        "seed": "params.seed (0, now 1)",
        "frames": "frames",
        "manifest": "inputs.manifest",
    }
    assert f"made with other {why[change]}" in caplog.text
    (aside,) = out.parent.glob("raw.partial.set-aside-*")
    assert {p.name: p.read_bytes() for p in aside.iterdir()} == before  # renamed, untouched
    assert not partial_folder(out).exists()
    assert h5_contents(out) == h5_contents(other_run(tmp_path / "other" / "raw.h5", **other))


def _unmark_complete(path):
    import h5py

    with h5py.File(path, "a") as f:
        del f.attrs["complete"]


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda folder: (folder / "frame_00001.h5").write_bytes(b"not HDF5"), id="frame-garbage"),
        pytest.param(lambda folder: _unmark_complete(folder / "frame_00001.h5"), id="frame-incomplete"),
        pytest.param(lambda folder: (folder / MADE_WITH).write_text("{"), id="made-with-garbage"),
    ],
)
def test_corrupt_side_folder_is_set_aside_not_used(tiny_scene, tmp_path, monkeypatch, caplog, corrupt):
    frames, run = FramesMade(monkeypatch, SimBackend), _sim_run(tiny_scene)
    reference = run(tmp_path / "uninterrupted" / "raw.h5")
    out = tmp_path / "run" / "raw.h5"
    _interrupt(frames, run, out, at=3)
    corrupt(partial_folder(out))
    with caplog.at_level(logging.WARNING):
        run(out)
    assert frames.made == list(range(len(tiny_scene.cameras)))
    assert "not used" in caplog.text and "cannot" in caplog.text
    assert len(list(out.parent.glob("raw.partial.set-aside-*"))) == 1
    assert h5_contents(out) == h5_contents(reference)


def _die_while_writing_frame(scene, out, frame_name: str) -> None:
    """Child process: generate, and die (no cleanup, as on SIGKILL) half-way through writing `frame_name`."""
    import ccl.io.masks_h5 as masks_h5

    real, written = masks_h5.put_array, []

    def put_array(group, name, data, **kw):
        if f".{frame_name}.h5." in group.file.filename:  # the frame file's temporary name
            written.append(name)
            if len(written) == 4:
                group.file.flush()  # some of the frame on disk, the rest never
                os._exit(9)
        return real(group, name, data, **kw)

    masks_h5.put_array = put_array
    generate_masks(scene, cfg=MasksConfig(), out_path=out, seed=0)


def test_frame_killed_mid_write_is_never_read(tiny_scene, tmp_path, monkeypatch):
    run = _sim_run(tiny_scene)
    reference = run(tmp_path / "uninterrupted" / "raw.h5")
    out = tmp_path / "run" / "raw.h5"
    child = multiprocessing.get_context("spawn").Process(
        target=_die_while_writing_frame, args=(tiny_scene, out, "frame_00003")
    )
    child.start()
    child.join(120)
    assert child.exitcode == 9
    folder = partial_folder(out)
    names = sorted(p.name for p in folder.iterdir())
    assert names[:1] and names[0].startswith(".frame_00003.h5.") and ".tmp" in names[0], names
    assert names[1:] == sorted([MADE_WITH, "frame_00000.h5", "frame_00001.h5", "frame_00002.h5"])

    frames = FramesMade(monkeypatch, SimBackend)
    run(out)
    assert frames.made == list(range(3, len(tiny_scene.cameras)))
    assert h5_contents(out) == h5_contents(reference)
    assert not folder.exists()


def test_progress_counts_from_the_resumed_frame(tiny_scene, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CCL_PROGRESS_EVERY_S", "3600")  # the first line and the closing one only
    frames, run = FramesMade(monkeypatch, SimBackend), _sim_run(tiny_scene)
    out = tmp_path / "raw.h5"
    _interrupt(frames, run, out, at=3)
    capsys.readouterr()
    with script_logging(tmp_path / "job.log", job="sam_masks tiny"):
        run(out)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("sam_masks tiny:")]
    n = len(tiny_scene.cameras)
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"sam_masks tiny: 4/{n} frames, ") and "left" in lines[0]
    assert lines[1].startswith(f"sam_masks tiny: {n}/{n} frames, ") and "done in" in lines[1]
    log = (tmp_path / "job.log").read_text()
    assert f"3 of {n} frames finished by an earlier attempt, kept" in log
