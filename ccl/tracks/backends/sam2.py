"""`sam2` tracks backend: the SAM2 video predictor propagates the seed masks through the frames.

SAM2 reads a folder of JPEG frames named 0.jpg, 1.jpg, …: the frames are linked there (os.symlink) from
the user's files, which are never renamed; a frame that is not a JPEG as the scene sees it (PNG,
downscaled, undistorted, EXIF-rotated) is written there as a JPEG copy instead. The model is built from
its config with random weights, then the user's checkpoint is loaded strictly through ccl.io.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ccl.config import config_source
from ccl.device import autocast, compute_dtype, resolve_device
from ccl.tracks.backends import Seed
from ccl.tracks.backends.sam2_checkpoints import OFFICIAL_CHECKPOINTS
from ccl.tracks.config import TracksConfig

log = logging.getLogger(__name__)

# build_sam2_video_predictor's post-processing, minus hole filling when sam2 was built without its CUDA
# extension (sam2._C: connected components), which a CPU-only install lacks.
_POSTPROCESSING = [
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
]


def _import_sam2():
    try:
        import sam2  # noqa: F401
        from sam2.build_sam import build_sam2_video_predictor
    except ImportError as e:
        raise ImportError(
            f"tracks.backend = 'sam2' needs the sam2 package ({e}); install it after torch with "
            "`SAM2_BUILD_CUDA=0 pip install --no-build-isolation 'sam2==1.1.0'` (or use tracks.backend: sim "
            "on synthetic scenes)"
        ) from e
    return build_sam2_video_predictor


def _official(config: str) -> tuple[str, str]:
    url = OFFICIAL_CHECKPOINTS.get(config, "")
    return (url.rsplit("/", 1)[-1] or "the checkpoint of that config"), url


def check(cfg: TracksConfig, scene) -> None:
    """The user's SAM2 config and checkpoint, before any work."""
    _import_sam2()
    import sam2

    pkg = Path(sam2.__file__).parent
    if not (pkg / cfg.sam2_config).is_file():
        known = sorted(OFFICIAL_CHECKPOINTS)
        raise ValueError(
            f"tracks.sam2_config = {cfg.sam2_config!r} is not a config of the installed sam2 ({pkg}); "
            f"use one of {known}"
        )
    name, url = _official(cfg.sam2_config)
    where = (
        f"download {name} ({url}) and set `tracks: {{sam2_checkpoint: /path/to/{name}}}` in {config_source()}"
    )
    if not cfg.sam2_checkpoint:
        raise FileNotFoundError(f"tracks.sam2_checkpoint is not set (tracks.backend = 'sam2'): {where}")
    ckpt = Path(cfg.sam2_checkpoint).expanduser()
    if not ckpt.is_file():
        from ccl.weights import fetch_hint

        raise FileNotFoundError(
            f"{ckpt}: SAM2 checkpoint not found (tracks.sam2_checkpoint): {where}"
            f"{fetch_hint('tracks.sam2_checkpoint', ckpt)}"
        )
    for other, other_url in OFFICIAL_CHECKPOINTS.items():
        if ckpt.name == other_url.rsplit("/", 1)[-1] and other != cfg.sam2_config:
            raise ValueError(
                f"{ckpt}: this is the checkpoint of {other}, but tracks.sam2_config = {cfg.sam2_config!r}; "
                f"set tracks.sam2_config: {other}, or tracks.sam2_checkpoint to {name} ({url})"
            )


def check_weights(cfg: TracksConfig) -> None:
    """Preflight: `check`, and the checkpoint holds the tensors of the configured SAM2, names and shapes
    (the file's tensors are never read; sam2's modules cannot be built on the meta device, so the
    architecture is built on the CPU: about 2 s and 1 GB for hiera_l)."""
    from ccl.io.checkpoint import check_weight_shapes

    check(cfg, None)
    name, url = _official(cfg.sam2_config)
    fix = f"tracks.sam2_checkpoint must be {name} ({url}) for that config"
    if cfg.sam2_overrides:
        fix = "tracks.sam2_overrides must give the sizes the checkpoint was made with"
    path = Path(cfg.sam2_checkpoint).expanduser()
    check_weight_shapes(path, expected_weight_shapes(cfg), model=cfg.sam2_config, fix=fix)


def expected_weight_shapes(cfg: TracksConfig) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of the SAM2 that `cfg` configures (built on the CPU, then dropped)."""
    model = _architecture(cfg, "cpu")
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def build_model(cfg: TracksConfig, device: str):
    """The SAM2 video predictor of `cfg.sam2_config` with the weights of `cfg.sam2_checkpoint` (strict)."""
    import torch

    from ccl.io import load_torch_weights
    from ccl.io.checkpoint import check_state_dict_keys

    model = _architecture(cfg, device)
    ckpt = Path(cfg.sam2_checkpoint).expanduser()
    state = load_torch_weights(ckpt)  # weights_only; unwraps sam2's {"model": ...}
    check_state_dict_keys(ckpt, state.keys(), model.state_dict().keys())
    name, url = _official(cfg.sam2_config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # same keys, other shapes: another model size
        raise ValueError(
            f"{ckpt}: checkpoint does not match {cfg.sam2_config} ({str(e).splitlines()[1:3]}); "
            f"tracks.sam2_checkpoint must be {name} ({url}) for that config"
        ) from e
    model.eval()
    del state
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return model


def _architecture(cfg: TracksConfig, device: str):
    """SAM2's video predictor of `cfg.sam2_config` and its overrides, randomly initialised."""
    build_sam2_video_predictor = _import_sam2()
    has_ext = importlib.util.find_spec("sam2._C") is not None
    overrides = [*_POSTPROCESSING, f"++model.fill_hole_area={8 if has_ext else 0}", *cfg.sam2_overrides]
    if not has_ext:
        log.info("sam2 was built without its CUDA extension: small holes in masks are not filled")
    try:
        model = build_sam2_video_predictor(
            cfg.sam2_config,
            ckpt_path=None,
            device=device,
            apply_postprocessing=False,
            hydra_overrides_extra=overrides,
        )
    except Exception as e:  # hydra raises its own errors for bad overrides
        raise ValueError(
            f"tracks: cannot build SAM2 from {cfg.sam2_config!r} with overrides {list(cfg.sam2_overrides)} "
            f"({type(e).__name__}: {e}); check tracks.sam2_config and tracks.sam2_overrides"
        ) from e
    return model


def build(cfg: TracksConfig, *, scene, device: str, seed: int | None, load_image=None) -> Sam2Propagator:
    import torch

    device = resolve_device(device)
    if seed is not None:  # inference is deterministic; this pins any random init left in the model
        torch.manual_seed(seed)
    log.info("building SAM2 %s on %s", cfg.sam2_config, device)
    return Sam2Propagator(build_model(cfg, device), cfg, scene=scene, device=device, load_image=load_image)


def _is_plain_jpeg(camera) -> bool:
    """The scene's image of `camera` is its file as it is, and that file is a JPEG SAM2 reads upright."""
    if camera.image_path.suffix.lower() not in (".jpg", ".jpeg") or camera.distortion is not None:
        return False
    if tuple(camera.file_size_wh) != (camera.width, camera.height):
        return False
    from PIL import Image

    try:
        with Image.open(camera.image_path) as im:
            return im.format == "JPEG" and im.getexif().get(0x0112, 1) == 1  # no EXIF rotation
    except OSError:
        return False


def link_frames(scene, folder: Path, *, load_image=None) -> int:
    """Fill `folder` with 0.jpg, 1.jpg, … for SAM2: links to the user's JPEGs, JPEG copies otherwise.

    Returns how many frames were copied rather than linked.
    """
    import cv2

    if load_image is None:
        from ccl.scene import SceneLoadConfig
        from ccl.scene import load_image as _load

        def load_image(cam):
            return _load(cam, cfg=SceneLoadConfig())

    copied = 0
    for i, cam in enumerate(scene.cameras):
        dst = folder / f"{i}.jpg"
        if _is_plain_jpeg(cam):
            os.symlink(Path(cam.image_path).absolute(), dst)
            continue
        img = load_image(cam)
        if not cv2.imwrite(str(dst), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"{dst}: could not write a JPEG frame for SAM2 (disk full?)")
        copied += 1
    return copied


class Sam2Propagator:
    def __init__(self, model, cfg: TracksConfig, *, scene, device: str, load_image=None):
        self.model, self.cfg, self.scene, self.device = model, cfg, scene, device
        self.load_image = load_image
        self._dir: Path | None = None
        self._state = None
        self._added: set[int] = set()

    def model_info(self) -> dict[str, Any]:
        from importlib.metadata import version

        from ccl.io.hashing import weights_sha256

        ckpt = Path(self.cfg.sam2_checkpoint).expanduser().absolute()
        return {
            "backend": "sam2",
            "simulated": False,
            "config": self.cfg.sam2_config,
            "overrides": list(self.cfg.sam2_overrides),
            "checkpoint": str(ckpt),
            "checkpoint_sha256": weights_sha256(ckpt),
            "sam2_version": version("sam2"),
            "dtype": compute_dtype(self.device, self.cfg.precision),  # tracks.precision; float32 on a CPU
            "device": str(self.device),  # what it computed on
        }

    def _init(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="ccl-sam2-frames-"))
        copied = link_frames(self.scene, self._dir, load_image=self.load_image)
        n = len(self.scene.cameras)
        log.info("SAM2 frames in %s: %d linked, %d JPEG copies", self._dir, n - copied, copied)
        self._state = self.model.init_state(
            video_path=str(self._dir),
            offload_video_to_cpu=self.cfg.offload_video_to_cpu,
            offload_state_to_cpu=self.cfg.offload_state_to_cpu,
        )

    def propagate(self, seeds: Sequence[Seed], start_frame: int) -> Iterator[tuple[int, np.ndarray]]:
        import torch

        if self._state is None:
            self._init()
        with torch.inference_mode(), autocast(self.device, self.cfg.precision):
            for s in seeds:
                if s.track_id not in self._added:
                    self.model.add_new_mask(
                        self._state, frame_idx=s.frame_index, obj_id=s.track_id, mask=torch.from_numpy(s.mask)
                    )
                    self._added.add(s.track_id)
            for t, obj_ids, logits in self.model.propagate_in_video(self._state, start_frame_idx=start_frame):
                pos = {int(o): i for i, o in enumerate(obj_ids)}
                idx = torch.tensor([pos[s.track_id] for s in seeds], device=logits.device)
                masks = (logits.index_select(0, idx)[:, 0] > 0.0).cpu().numpy()  # [K, H, W] bool
                for j, s in enumerate(seeds):
                    if t < s.frame_index:
                        masks[j] = False
                yield int(t), masks

    def close(self) -> None:
        self._state = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)  # removes the links, never the files they point to
            self._dir = None
