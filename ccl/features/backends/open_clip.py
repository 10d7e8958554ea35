"""`open_clip` features backend: OpenCLIP's image encoder on masked crops, its text encoder on queries.

The model is built from its open_clip config with random weights (`pretrained=None`: open_clip never
downloads here), then the user's weights file is loaded strictly through ccl.io. A `pretrained` tag
without a local file is refused before any work, with the file to get and where to point config.
An architecture open_clip does not ship comes from `features.model_config_file`, a JSON of open_clip's
own model config format, registered with open_clip (`add_model_config`) before anything is built.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ccl.config import config_source
from ccl.device import autocast, compute_dtype, resolve_device
from ccl.features.config import FeaturesConfig
from ccl.features.ops import l2_normalize, mask_boxes, masked_crop

log = logging.getLogger(__name__)


def _import_open_clip():
    try:
        import open_clip
    except ImportError as e:
        raise ImportError(
            f"features.backend = 'open_clip' needs open_clip ({e}); install it with "
            "`pip install open_clip_torch` (or use features.backend: sim on synthetic scenes)"
        ) from e
    return open_clip


def register_model_config(cfg: FeaturesConfig) -> dict[str, Any] | None:
    """Register `features.model_config_file` with open_clip, under its file name (= `features.model_name`);
    the architecture it defines, or None without one. Refused, with the fix, if open_clip cannot use it."""
    import json

    if cfg.model_config_file is None:
        return None
    open_clip = _import_open_clip()
    path = Path(cfg.model_config_file).expanduser()
    what = "features.model_config_file"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: open_clip model config not found ({what}); set it to the JSON file defining "
            f"features.model_name {cfg.model_name!r}, or to null for an architecture open_clip ships"
        )
    try:
        arch = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a JSON file ({what}; {e})") from e
    missing = [
        k for k in ("embed_dim", "vision_cfg", "text_cfg") if not isinstance(arch, dict) or k not in arch
    ]
    if missing:
        raise ValueError(
            f"{path}: not an open_clip model config ({what}): no {missing}; it holds embed_dim, vision_cfg "
            "and text_cfg, as open_clip/model_configs/ViT-B-16.json does (a Hugging Face "
            "open_clip_config.json has them under model_cfg: save that part as its own file)"
        )
    if path.suffix != ".json" or path.stem != cfg.model_name:
        # open_clip reads only *.json files and names each architecture after its file
        raise ValueError(
            f"{path}: open_clip registers this architecture as {path.stem!r} (the file's name) and only from "
            f"a .json file, but features.model_name is {cfg.model_name!r}; name the file "
            f"{cfg.model_name}.json, or set features.model_name: {path.stem}"
        )
    if open_clip.get_model_config(cfg.model_name) != arch:  # registering again would only add a path
        open_clip.add_model_config(path)
    return arch


def check(cfg: FeaturesConfig, scene=None) -> None:
    """The user's model name, architecture file and weights file, before any work."""
    open_clip = _import_open_clip()
    register_model_config(cfg)
    model_cfg = open_clip.get_model_config(cfg.model_name)
    if model_cfg is None:
        raise ValueError(
            f"features.model_name = {cfg.model_name!r} is not an open_clip architecture; "
            "see open_clip.list_models() (the paper uses ViT-B-16)"
        )
    from open_clip.model import CLIPVisionCfg

    # every open_clip architecture has a vision_cfg (CLIP's required argument); without image_size in
    # it the tower takes open_clip's default size, not whatever features.crop_size says
    size = model_cfg["vision_cfg"].get("image_size", CLIPVisionCfg.image_size)
    h, w = (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size), int(size))
    if (h, w) != (cfg.crop_size, cfg.crop_size):
        if h != w:  # the crops are square
            raise ValueError(
                f"features.crop_size = {cfg.crop_size}, but {cfg.model_name} takes {h}×{w} px images and "
                "the mask crops are square; use a model whose vision_cfg.image_size is one number"
            )
        raise ValueError(
            f"features.crop_size = {cfg.crop_size}, but {cfg.model_name} takes {h} px images; "
            f"set features.crop_size: {h}"
        )
    weights_path(cfg)


def check_weights(cfg: FeaturesConfig) -> None:
    """Preflight: `check`, and the weights file holds the tensors of features.model_name, names and shapes
    (cheap: the model is built on the meta device and the file's tensors are never read)."""
    from ccl.io.checkpoint import check_weight_shapes

    check(cfg)
    fix = "features.pretrained must be the weights of features.model_name"
    if cfg.model_config_file is not None:
        fix += " as features.model_config_file defines it"
    check_weight_shapes(
        weights_path(cfg), expected_weight_shapes(cfg), model=f"OpenCLIP {cfg.model_name}", fix=fix
    )


def expected_weight_shapes(cfg: FeaturesConfig) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of the CLIP that `cfg` configures (built on the meta device)."""
    from ccl.io.checkpoint import meta_state_shapes

    open_clip = _import_open_clip()
    register_model_config(cfg)
    logging.disable(logging.WARNING)  # open_clip warns "initialized randomly"
    try:
        return meta_state_shapes(
            lambda: open_clip.create_model(cfg.model_name, pretrained=None, device="meta")
        )
    finally:
        logging.disable(logging.NOTSET)


def weights_path(cfg: FeaturesConfig) -> Path:
    """The local weights file named by `cfg.pretrained`; a tag or a missing file is refused with the fix."""
    open_clip = _import_open_clip()
    path = Path(cfg.pretrained).expanduser()
    if path.is_file():
        return path
    tag = open_clip.get_pretrained_cfg(cfg.model_name, cfg.pretrained)
    if tag:
        repo = str(tag.get("hf_hub", "")).strip("/")
        src = (
            f"https://huggingface.co/{repo}" if repo else tag.get("url", "the open_clip release of that tag")
        )
        raise FileNotFoundError(
            f"features.pretrained = {cfg.pretrained!r} is an open_clip tag, which open_clip would download; "
            f"this workflow never downloads weights. Get open_clip_pytorch_model.bin (or "
            f"open_clip_model.safetensors) from {src}, put it anywhere (e.g. models/{repo.split('/')[-1] or cfg.model_name}/), "
            f"and set `features: {{pretrained: /path/to/open_clip_pytorch_model.bin}}` in {config_source()}"
        )
    from ccl.weights import fetch_hint

    tags = open_clip.list_pretrained_tags_by_model(cfg.model_name)
    raise FileNotFoundError(
        f"{path}: features.pretrained is neither an existing weights file nor an open_clip tag of "
        f"{cfg.model_name} (tags: {tags}); set it to the path of the model's weights file"
        + fetch_hint("features.pretrained", path)
    )


def load_weights(model, path: Path, model_name: str, *, model_config_file: str | None = None) -> None:
    """Load a CLIP state dict strictly: every key of the model, nothing else, same shapes."""
    from ccl.io import load_torch_weights
    from ccl.io.checkpoint import check_state_dict_keys

    state = load_torch_weights(path)  # a training checkpoint's "state_dict" unwrapped, a .bin's "module."
    if state and all(k.startswith("module.") for k in state):  # cut: a .safetensors saved from DDP
        state = {k[len("module.") :]: v for k, v in state.items()}
    where = (
        f" (architecture from features.model_config_file {model_config_file})" if model_config_file else ""
    )
    try:
        check_state_dict_keys(path, state.keys(), model.state_dict().keys())
    except ValueError as e:
        raise ValueError(f"{e} ({model_name}{where})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(
            f"{path}: weights do not match {model_name}{where} ({str(e).splitlines()[1:3]}); "
            "features.pretrained must be the weights of features.model_name"
        ) from e


def image_normalisation(
    model_name: str, default: dict[str, Any]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std of the images `model_name`'s weights were trained on: those of its open_clip tags
    when they agree (SigLIP's 0.5 and 0.5, MobileCLIP's 0 and 1, OpenAI's for ViT-B-16), else `default`,
    the model's `preprocess_cfg` (built without a tag, as here, open_clip sets OpenAI's), with a warning
    when the tags disagree: a weights file does not say which tag it is."""
    open_clip = _import_open_clip()
    tags: dict[tuple[tuple[float, ...], tuple[float, ...]], list[str]] = {}
    for tag in open_clip.list_pretrained_tags_by_model(model_name):
        pcfg = open_clip.get_pretrained_cfg(model_name, tag)
        tags.setdefault((tuple(pcfg["mean"]), tuple(pcfg["std"])), []).append(tag)
    if len(tags) == 1:
        return next(iter(tags))
    mean, std = tuple(default["mean"]), tuple(default["std"])
    others = sorted(t for norm, names in tags.items() if norm != (mean, std) for t in names)
    if others:
        log.warning(
            "OpenCLIP %s: its open_clip tags %s were trained on images normalised otherwise than the "
            "mean %s and std %s used here; weights of those tags are embedded off",
            model_name, others, mean, std,
        )  # fmt: skip
    return mean, std


class OpenClipEncoder:
    def __init__(self, cfg: FeaturesConfig, *, device: str, load_image=None):
        import torch

        open_clip = _import_open_clip()
        self.cfg, self.device = cfg, resolve_device(device)
        device = self.device
        self.load_image = load_image
        self.path = weights_path(cfg)
        self.architecture = register_model_config(cfg)  # None: an architecture open_clip ships
        logging.disable(logging.WARNING)  # open_clip warns "initialized randomly": the weights load next
        try:
            model = open_clip.create_model(cfg.model_name, pretrained=None, device="cpu")
        finally:
            logging.disable(logging.NOTSET)
        load_weights(model, self.path, cfg.model_name, model_config_file=cfg.model_config_file)
        log.info("OpenCLIP %s with weights %s on %s", cfg.model_name, self.path, self.device)
        self.model = model.to(device).eval()
        self.tokenizer = open_clip.get_tokenizer(cfg.model_name)
        mean, std = image_normalisation(cfg.model_name, model.visual.preprocess_cfg)
        self.normalisation = {"mean": list(mean), "std": list(std)}  # chosen here, not by the weights file
        self._mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        with torch.inference_mode():
            self.dim = int(self.model.encode_text(self.tokenizer(["a"]).to(device)).shape[-1])

    def model_info(self) -> dict[str, Any]:
        from importlib.metadata import version

        from ccl.io import file_sha256
        from ccl.io.hashing import weights_sha256

        info = {
            "backend": "open_clip",
            "simulated": False,
            "model_name": self.cfg.model_name,
            "pretrained": str(self.path.absolute()),
            "pretrained_sha256": weights_sha256(self.path),
            "open_clip_version": version("open_clip_torch"),
            "dim": self.dim,
            # the crops' normalisation: a side folder or features file made with another is not the same
            "image_normalisation": self.normalisation,
            "dtype": compute_dtype(self.device, self.cfg.precision),  # features.precision; float32 on a CPU
            "device": str(self.device),  # what it computed on
        }
        if self.architecture is not None:  # not an architecture open_clip ships: its file and contents
            config_path = Path(self.cfg.model_config_file).expanduser()
            info["model_config_file"] = str(config_path.absolute())
            info["model_config_sha256"] = file_sha256(config_path)
            info["model_config"] = self.architecture
        return info

    def _amp(self):
        return autocast(self.device, self.cfg.precision)

    def encode_crops(self, crops: np.ndarray) -> np.ndarray:
        """[B, S, S, 3] uint8 crops → [B, D] float32, L2-normalised, in batches of cfg.batch_size."""
        import torch

        out = []
        for b in range(0, len(crops), self.cfg.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(crops[b : b + self.cfg.batch_size])).to(self.device)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            x = (x - self._mean) / self._std
            with torch.inference_mode(), self._amp():
                f = self.model.encode_image(x)
            out.append(torch.nn.functional.normalize(f.float(), dim=-1).cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(out).astype(np.float32)

    def encode_frame(self, frame_index: int, camera, masks) -> np.ndarray:
        if self.load_image is None:
            from ccl.scene import SceneLoadConfig, load_image

            image = load_image(camera, cfg=SceneLoadConfig())
        else:
            image = self.load_image(camera)
        seg = masks.segmentation
        boxes = mask_boxes(seg, masks.n_masks)
        feats = np.zeros((masks.n_masks, self.dim), np.float32)
        for b in range(0, masks.n_masks, self.cfg.batch_size):  # crops of one batch in memory at a time
            idx = range(b, min(b + self.cfg.batch_size, masks.n_masks))
            crops = np.stack([masked_crop(image, seg == i, boxes[i], self.cfg.crop_size) for i in idx])
            feats[b : b + len(crops)] = self.encode_crops(crops)
        return feats

    def encode_text(self, queries: Sequence[str]) -> np.ndarray:
        import torch

        if len(queries) == 0:
            return np.zeros((0, self.dim), np.float32)
        self._warn_cut(queries)
        tokens = self.tokenizer(list(queries)).to(self.device)
        with torch.inference_mode(), self._amp():
            f = self.model.encode_text(tokens)
        return l2_normalize(f.float().cpu().numpy())

    def _warn_cut(self, queries: Sequence[str]) -> None:
        """Say so when a query is longer than the text encoder's context (77 tokens for CLIP): the
        tokenizer cuts it there without a word, and the words past the cut do not count."""
        from ccl.runlog import warn_once

        encode = getattr(self.tokenizer, "encode", None)
        context = int(getattr(self.tokenizer, "context_length", 77))
        if encode is None:
            return
        for q in queries:
            n = len(encode(q)) + 2  # with the start and end tokens
            if n > context:
                warn_once(
                    log, f"query {q[:60]!r}{'…' if len(q) > 60 else ''} is {n} tokens long; the text encoder "
                    f"{self.cfg.model_name} reads {context}, so it is cut there and the words after do not "
                    "count: shorten the query",
                )  # fmt: skip

    def close(self) -> None:
        self.model = None


def build(cfg: FeaturesConfig, *, scene=None, device: str = "auto", seed: int = 0, load_image=None):
    return OpenClipEncoder(cfg, device=device, load_image=load_image)
