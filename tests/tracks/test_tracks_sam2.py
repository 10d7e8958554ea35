"""The sam2 backend's real code path with a tiny, randomly initialised SAM2 of the real architecture.

The tiny model is the sam2.1 Hiera-T config with Hydra overrides (a 4-stage Hiera of width 8, 128 px
input, 32-dim heads, one memory-attention layer): the same modules, built by sam2's own
build_sam2_video_predictor, its checkpoint saved as sam2 saves them ({"model": state_dict}).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from realpath.tiny_checkpoints import TINY_SAM2_OVERRIDES
from tracks_testkit import first_frames, write_gt_masks

from ccl.io.tracks_h5 import read_tracks
from ccl.tracks import TracksConfig, track_masks
from ccl.tracks.backends.sam2 import check, link_frames

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
# tiny models on a shared CPU: thread start-up costs more than the work (x10 on a loaded machine)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_overrides(d: int = 32) -> tuple[str, ...]:
    """The tiny SAM2 of tests/realpath/tiny_checkpoints.py, with its 32-dim heads made `d`-dim (a model of
    the same tensor names and other shapes)."""
    return tuple(o.replace("=32", f"={d}") for o in TINY_SAM2_OVERRIDES)


def save_tiny_checkpoint(path, overrides) -> None:
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    torch.manual_seed(0)
    model = build_sam2_video_predictor(
        CONFIG,
        ckpt_path=None,
        device="cpu",
        apply_postprocessing=False,
        hydra_overrides_extra=list(overrides),
    )
    torch.save({"model": model.state_dict()}, path)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("sam2") / "tiny_sam2.pt"
    save_tiny_checkpoint(path, tiny_overrides())
    return path


def tiny_cfg(ckpt, **kw) -> TracksConfig:
    return TracksConfig(
        backend="sam2", sam2_config=CONFIG, sam2_checkpoint=str(ckpt), sam2_overrides=tiny_overrides(), **kw
    )


def test_tiny_sam2_tracks_three_frames(tiny_scene, tiny_ckpt, tmp_path, monkeypatch):
    import tempfile

    scene = first_frames(tiny_scene, 3)
    masks = write_gt_masks(scene, tmp_path / "wp.h5", layer="whole_id", level=2)
    images_before = {p.name: p.stat().st_mtime_ns for p in (scene.root / "images").iterdir()}
    # this process's temporary folders go to a folder of its own (others may use the system's meanwhile)
    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(own_tmp))
    frames = track_masks(scene, masks, cfg=tiny_cfg(tiny_ckpt), out_path=tmp_path / "t.h5", device="cpu")
    k = frames[0].n_masks
    assert k > 0
    np.testing.assert_array_equal(frames[0].labels, np.arange(k))  # seeds keep their own tracks
    for f in frames:
        assert f.labels.dtype == np.int32 and ((f.labels >= -1) & (f.labels < k)).all()
        assert ((f.best_iou >= 0) & (f.best_iou <= 1)).all()
    out = read_tracks(tmp_path / "t.h5")
    assert out.n_tracks == k
    assert out.model["backend"] == "sam2" and out.model["simulated"] is False
    assert len(out.model["checkpoint_sha256"]) == 64 and out.model["config"] == CONFIG
    # the user's images are untouched and the temporary frame folder is gone
    assert {p.name: p.stat().st_mtime_ns for p in (scene.root / "images").iterdir()} == images_before
    assert sorted(os.listdir(own_tmp)) == []


def test_frames_are_linked_when_jpeg_and_copied_otherwise(tiny_scene, tmp_path):
    import cv2
    from PIL import Image

    from ccl.scene import SceneLoadConfig, load_image

    scene = first_frames(tiny_scene, 3)
    src = tmp_path / "user"
    src.mkdir()
    cams = []
    for i, cam in enumerate(scene.cameras):
        img = load_image(cam, cfg=SceneLoadConfig())
        if i == 0:
            path = src / "a.jpg"
            cv2.imwrite(str(path), img[:, :, ::-1])
        elif i == 1:  # a JPEG with an EXIF rotation: SAM2's reader would see it unrotated
            path = src / "b.jpeg"
            exif = Image.Exif()
            exif[0x0112] = 3
            Image.fromarray(img).save(path, exif=exif)
        else:
            path = cam.image_path  # the synthetic scene's PNG
        cams.append(dataclasses.replace(cam, image_path=path))
    user = dataclasses.replace(scene, cameras=tuple(cams))
    before = sorted(os.listdir(src))
    folder = tmp_path / "frames"
    folder.mkdir()
    copied = link_frames(user, folder)
    assert sorted(os.listdir(folder)) == ["0.jpg", "1.jpg", "2.jpg"] and copied == 2
    assert os.path.islink(folder / "0.jpg") and os.readlink(folder / "0.jpg") == str(
        (src / "a.jpg").absolute()
    )
    assert not os.path.islink(folder / "1.jpg") and not os.path.islink(folder / "2.jpg")
    assert cv2.imread(str(folder / "2.jpg")).shape == (scene.cameras[2].height, scene.cameras[2].width, 3)
    assert sorted(os.listdir(src)) == before  # never renamed


def test_missing_checkpoint_names_the_official_file(tiny_scene):
    with pytest.raises(FileNotFoundError, match=r"sam2\.1_hiera_large\.pt.*tracks: \{sam2_checkpoint"):
        check(TracksConfig(backend="sam2"), tiny_scene)
    with pytest.raises(FileNotFoundError, match=r"nope\.pt.*sam2\.1_hiera_large\.pt"):
        check(TracksConfig(backend="sam2", sam2_checkpoint="/nonexistent/nope.pt"), tiny_scene)
    with pytest.raises(ValueError, match="not a config of the installed sam2"):
        check(TracksConfig(backend="sam2", sam2_config="configs/sam3/x.yaml"), tiny_scene)


def test_checkpoint_of_another_config_is_refused_by_name(tiny_scene, tmp_path):
    ckpt = tmp_path / "sam2.1_hiera_tiny.pt"
    ckpt.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"checkpoint of configs/sam2\.1/sam2\.1_hiera_t\.yaml"):
        check(TracksConfig(backend="sam2", sam2_checkpoint=str(ckpt)), tiny_scene)


def test_mismatched_checkpoint_is_refused_before_any_frame(tiny_scene, tmp_path):
    scene = first_frames(tiny_scene, 2)
    masks = write_gt_masks(scene, tmp_path / "wp.h5", layer="whole_id", level=2)
    other = tmp_path / "other.pt"
    save_tiny_checkpoint(other, tiny_overrides(d=16))  # same keys, other shapes
    with pytest.raises(ValueError, match="does not match"):
        track_masks(scene, masks, cfg=tiny_cfg(other), out_path=tmp_path / "t.h5", device="cpu")
    import torch

    state = torch.load(other, weights_only=True)["model"]
    state.pop(next(iter(state)))
    torch.save({"model": state}, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="missing"):
        track_masks(
            scene, masks, cfg=tiny_cfg(tmp_path / "missing.pt"), out_path=tmp_path / "t.h5", device="cpu"
        )
    assert not (tmp_path / "t.h5").exists()


def test_tiny_sam2_reseeds_unmatched_masks_after_tracking_started(tiny_scene, tiny_ckpt, tmp_path):
    # Random weights lose every track after frame 0, so frames 1 and 2 seed new tracks: SAM2 gets new
    # objects on a frame it has already tracked, and propagates again from there.
    scene = first_frames(tiny_scene, 3)
    masks = write_gt_masks(scene, tmp_path / "wp.h5", layer="whole_id", level=2)
    frames = track_masks(
        scene, masks, cfg=tiny_cfg(tiny_ckpt, reseed_unmatched=True), out_path=tmp_path / "t.h5", device="cpu"
    )
    k0 = frames[0].n_masks
    n_tracks = read_tracks(tmp_path / "t.h5").n_tracks
    assert n_tracks > k0
    later = np.concatenate([f.labels for f in frames[1:]])
    assert (later >= 0).all() and later.max() == n_tracks - 1  # every mask unmatched at first now has a track
