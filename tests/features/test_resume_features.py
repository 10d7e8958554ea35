"""Resumable feature extraction: a rerun after a failure embeds only the missing frames and writes, byte
for byte, the file an uninterrupted run writes; a side folder that does not match is set aside; the
folder is gone once the features file is written."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from features_testkit import first_frames, write_gt_masks
from masks.masks_testkit import h5_contents

from ccl.features import FeaturesConfig, extract_features
from ccl.features.backends.open_clip import OpenClipEncoder
from ccl.features.backends.sim import SimEncoder
from ccl.io.resume import MADE_WITH, partial_folder
from ccl.runlog import script_logging


class Interrupted(RuntimeError):
    """What the patched encoder raises: the failure at frame k that the rerun recovers from."""


class FramesEmbedded:
    """Records the frames `encoder_cls` embeds; with `fail_at` set it raises at that frame instead."""

    def __init__(self, monkeypatch, encoder_cls):
        self.embedded: list[int] = []
        self.fail_at: int | None = None
        real = encoder_cls.encode_frame

        def encode_frame(encoder, frame_index, camera, masks):
            if frame_index == self.fail_at:
                raise Interrupted(f"interrupted at frame {frame_index}")
            self.embedded.append(frame_index)
            return real(encoder, frame_index, camera, masks)

        monkeypatch.setattr(encoder_cls, "encode_frame", encode_frame)


def _interrupt(frames: FramesEmbedded, run, out, *, at: int) -> None:
    frames.fail_at = at
    with pytest.raises(Interrupted):
        run(out)
    frames.fail_at, frames.embedded[:] = None, []
    assert not out.exists()
    kept = sorted(p.name for p in partial_folder(out).iterdir())
    assert kept == sorted([MADE_WITH, *(f"frame_{i:05d}.h5" for i in range(at))])


def test_sim_rerun_embeds_only_the_missing_frames_and_writes_the_uninterrupted_file(
    tiny_scene, part_masks, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("CCL_PROGRESS_EVERY_S", "3600")  # the first progress line and the closing one
    frames = FramesEmbedded(monkeypatch, SimEncoder)

    def run(out):
        return extract_features(tiny_scene, part_masks, cfg=FeaturesConfig(), out_path=out, seed=0)

    reference = run(tmp_path / "uninterrupted" / "sp.h5")
    assert not partial_folder(reference).exists()
    out = tmp_path / "run" / "sp.h5"
    _interrupt(frames, run, out, at=3)
    capsys.readouterr()
    with script_logging(tmp_path / "job.log", job="clip_features tiny sp"):
        run(out)
    n = len(tiny_scene.cameras)
    assert frames.embedded == list(range(3, n))
    assert h5_contents(out) == h5_contents(reference)
    assert not partial_folder(out).exists()
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("clip_features tiny sp:")]
    assert [ln.split(",")[0] for ln in lines] == [f"clip_features tiny sp: {k}/{n} frames" for k in (4, n)]


def _open_clip_run(tiny_scene, tiny_clip, tmp_path, *, device: str):
    """run(out): the tiny OpenCLIP's features of the first 3 frames' ground-truth masks, written to out."""
    scene = first_frames(tiny_scene, 3)
    masks = write_gt_masks(scene, tmp_path / "sp.h5")
    name, weights = tiny_clip
    cfg = FeaturesConfig(backend="open_clip", model_name=name, pretrained=str(weights), crop_size=32)
    return lambda out: extract_features(scene, masks, cfg=cfg, out_path=out, device=device)


@pytest.mark.usefixtures("one_torch_thread")
def test_open_clip_rerun_embeds_only_the_missing_frames_and_writes_the_uninterrupted_file(
    tiny_scene, tiny_clip, tmp_path, monkeypatch
):
    frames = FramesEmbedded(monkeypatch, OpenClipEncoder)
    run = _open_clip_run(tiny_scene, tiny_clip, tmp_path, device="cpu")
    reference = run(tmp_path / "uninterrupted" / "f.h5")
    out = tmp_path / "run" / "f.h5"
    _interrupt(frames, run, out, at=1)
    run(out)
    assert frames.embedded == [1, 2]
    assert h5_contents(out) == h5_contents(reference)
    assert not partial_folder(out).exists()


@pytest.mark.parametrize("change", ["params", "masks"])
def test_side_folder_made_with_other_settings_is_set_aside_not_used(
    tiny_scene, part_masks, tmp_path, monkeypatch, caplog, change
):
    frames = FramesEmbedded(monkeypatch, SimEncoder)
    masks, cfg = part_masks, FeaturesConfig()

    def run(out, masks=masks, cfg=cfg):
        return extract_features(tiny_scene, masks, cfg=cfg, out_path=out, seed=0)

    out = tmp_path / "run" / "sp.h5"
    _interrupt(frames, run, out, at=3)
    if change == "params":
        cfg = dataclasses.replace(cfg, sim_noise=cfg.sim_noise + 0.05)
    else:  # the same masks, written again: another file (its path) of the same content
        masks = write_gt_masks(tiny_scene, tmp_path / "other" / "sp.h5")
    with caplog.at_level(logging.WARNING):
        run(out, masks, cfg)
    assert frames.embedded == list(range(len(tiny_scene.cameras)))
    assert f"made with other {change}." in caplog.text
    assert len(list(out.parent.glob("sp.partial.set-aside-*"))) == 1
    assert h5_contents(out) == h5_contents(run(tmp_path / "reference" / "sp.h5", masks, cfg))


def test_corrupt_frame_file_is_set_aside_not_used(tiny_scene, part_masks, tmp_path, monkeypatch, caplog):
    frames = FramesEmbedded(monkeypatch, SimEncoder)

    def run(out):
        return extract_features(tiny_scene, part_masks, cfg=FeaturesConfig(), out_path=out, seed=0)

    reference = run(tmp_path / "uninterrupted" / "sp.h5")
    out = tmp_path / "run" / "sp.h5"
    _interrupt(frames, run, out, at=3)
    (partial_folder(out) / "frame_00002.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    with caplog.at_level(logging.WARNING):
        run(out)
    assert frames.embedded == list(range(len(tiny_scene.cameras)))
    assert "frame file frame_00002.h5 cannot be used" in caplog.text
    assert h5_contents(out) == h5_contents(reference)


@pytest.mark.usefixtures("one_torch_thread")
def test_open_clip_frames_embedded_on_another_device_are_set_aside_not_used(
    tiny_scene, tiny_clip, tmp_path, monkeypatch, caplog
):
    """A GPU job that failed half-way on a shared disk, run again on a CPU node: the GPU embedded in float16
    autocast, the CPU in float32, so its frames are not mixed into the CPU's file."""
    import json

    frames = FramesEmbedded(monkeypatch, OpenClipEncoder)
    run = _open_clip_run(tiny_scene, tiny_clip, tmp_path, device="auto")
    out = tmp_path / "run" / "f.h5"
    _interrupt(frames, run, out, at=2)
    record = partial_folder(out) / MADE_WITH
    made_with = json.loads(record.read_text())
    assert made_with["model"]["device"] == "cpu"  # "auto", resolved on this machine
    made_with["model"]["device"] = "cuda:0"  # as the GPU job wrote it
    record.write_text(json.dumps(made_with))
    with caplog.at_level(logging.WARNING):
        run(out)
    assert frames.embedded == [0, 1, 2]
    assert "made with other model." in caplog.text
    assert len(list(out.parent.glob("f.partial.set-aside-*"))) == 1
