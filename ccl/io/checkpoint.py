"""Checkpoints: our own as safetensors with a JSON header; third-party weights loaded without pickle."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ccl.io.atomic import _json_default, atomic_path

HEADER_KEY = "ccl_header"
CHECKSUM_KEY = "ccl_sha256"  # sha256 of the header and every tensor (`tensors_sha256`), beside the header

log = logging.getLogger(__name__)


def tensors_sha256(tensors: Mapping[str, Any], header_json: str) -> str:
    """The checksum a ccl checkpoint carries of its own contents: sha256 over its JSON header and every
    tensor's name, dtype, shape and bytes, in name order. Computed from tensors in memory (at save, and
    at load from the tensors just read): no second pass over the file."""
    import hashlib

    import torch

    h = hashlib.sha256(header_json.encode())
    for name in sorted(tensors):
        t = tensors[name].detach()
        if t.device.type != "cpu":
            t = t.cpu()
        h.update(f"\0{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _check_checksum(path: Path, meta: Mapping[str, str], tensors: Mapping[str, Any]) -> None:
    """Refuse a ccl checkpoint whose contents are not those it was written with."""
    from ccl.io.hashing import check_content_checksum

    if HEADER_KEY not in meta:
        return  # not ccl's own file (third-party weights): nothing recorded to compare
    check_content_checksum(
        path,
        meta.get(CHECKSUM_KEY),
        lambda: tensors_sha256(tensors, meta[HEADER_KEY]),
        error=ValueError,
        log=log,
    )


def save_safetensors(path: str | os.PathLike, tensors: Mapping[str, Any], header: Mapping[str, Any]) -> Path:
    """Write tensors + a JSON header (config, iteration, scene, device, format_version) atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header_json = json.dumps(dict(header), default=_json_default)
    meta = {HEADER_KEY: header_json, CHECKSUM_KEY: tensors_sha256(tensors, header_json)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


def load_safetensors(
    path: str | os.PathLike,
    *,
    expected_keys: Iterable[str] | None = None,
    device: str = "cpu",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load (tensors, header). With `expected_keys`, refuse missing or unexpected tensors by name. A ccl
    checkpoint's checksum (`CHECKSUM_KEY`) is verified against the tensors read: a damaged file is refused."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(
            f"{path}: not a readable safetensors checkpoint ({e}); a file the workflow made is remade by asking for "
            "it: `snakemake <this file> --force`; a file of yours, check that it is complete"
        ) from e
    _check_checksum(path, meta, tensors)
    if device != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    header = json.loads(meta[HEADER_KEY]) if HEADER_KEY in meta else {}
    if expected_keys is not None:
        _check_keys(path, set(tensors), set(expected_keys))
    return tensors, header


def load_torch_weights(path: str | os.PathLike, *, map_location: str = "cpu") -> dict[str, Any]:
    """Load third-party weights (.pth/.pt) with `weights_only=True`, or safetensors by suffix."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    if path.suffix == ".safetensors":
        return load_safetensors(path, device=map_location)[0]
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError on bad files
        raise _unloadable(path, e) from None
    return _state_dict(path, obj)


def _unloadable(path: Path, e: Exception) -> ValueError:
    """The error for a file torch's safe loader refuses, in the user's words. torch's own text advises
    `weights_only=False`, which would execute whatever the file holds: never passed on."""
    import pickle

    if path.stat().st_size == 0:
        return ValueError(f"{path}: the file is empty (0 bytes): an interrupted download or copy?")
    if isinstance(e, pickle.UnpicklingError):
        return ValueError(
            f"{path}: holds Python objects besides tensors, which are never executed here, so it cannot be "
            "read as weights; use the model's official weights file (a plain state dict or .safetensors)"
        )
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ValueError(f"{path}: not a readable weights file ({type(e).__name__}: {first}); is it complete?")


def _state_dict(path: Path, obj: Any) -> dict[str, Any]:
    """The state dict inside a loaded weights file, unwrapped as the official releases wrap it."""
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # sam2 checkpoints wrap the state dict under "model"
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # open_clip training checkpoints
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(obj).__name__}")
    if obj and all(isinstance(k, str) and k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}  # saved from DistributedDataParallel
    return obj


def read_weight_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape in a weights file, cheaply: torch's zip files are memory-mapped and no tensor
    is read (a legacy, non-zip file is loaded whole); safetensors by their header."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)
    import zipfile

    if not zipfile.is_zipfile(path):  # a legacy torch file cannot be memory-mapped: loaded whole
        return {k: tuple(v.shape) for k, v in load_torch_weights(path).items() if hasattr(v, "shape")}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError on bad files
        raise _unloadable(path, e) from None
    return {k: tuple(v.shape) for k, v in _state_dict(path, obj).items() if hasattr(v, "shape")}


def check_weight_shapes(
    path: str | os.PathLike,
    expected: Mapping[str, tuple[int, ...]],
    *,
    model: str,
    fix: str,
) -> None:
    """Refuse a weights file whose tensor names or shapes are not those of `model` (cheap: the file's
    tensors are never read), naming the file, the tensors and the fix."""
    got = read_weight_shapes(path)
    try:
        _check_keys(Path(path), set(got), set(expected))
    except ValueError as e:
        raise ValueError(f"{e} ({model}); {fix}") from None
    bad = [
        f"{k}: {got[k]} in the file, {v} in {model}" for k, v in expected.items() if tuple(got[k]) != tuple(v)
    ]
    if bad:
        raise ValueError(
            f"{path}: {len(bad)} tensor shape(s) differ from {model} ({'; '.join(bad[:3])}): the weights of "
            f"another model size; {fix}"
        )


def meta_state_shapes(build: Any) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of the model `build()` makes, built on the meta device: no memory, no
    random init, so checking a checkpoint against a 600M-parameter architecture takes a second."""
    import torch

    with torch.device("meta"):
        model = build()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_state_dict_keys(path: str | os.PathLike, got: Iterable[str], expected: Iterable[str]) -> None:
    """Strict key check for loading weights into a model, with the keys named in the error."""
    _check_keys(Path(path), set(got), set(expected))


def _check_keys(path: Path, got: set[str], expected: set[str]) -> None:
    missing, unexpected = sorted(expected - got), sorted(got - expected)
    if missing or unexpected:
        raise ValueError(
            f"{path}: checkpoint does not match the model: "
            f"missing {missing[:8]}{'…' if len(missing) > 8 else ''} ({len(missing)}), "
            f"unexpected {unexpected[:8]}{'…' if len(unexpected) > 8 else ''} ({len(unexpected)}); "
            "is it the checkpoint of the model named in config?"
        )


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """Only the JSON header of a safetensors checkpoint (cheap: no tensors are read)."""
    from safetensors.torch import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta.get(HEADER_KEY, "{}"))
