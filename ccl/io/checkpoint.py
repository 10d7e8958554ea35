"""Checkpoints: our own as safetensors with a JSON header; third-party weights loaded without pickle."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ccl.io.atomic import _json_default, atomic_path

HEADER_KEY = "ccl_header"


def save_safetensors(path: str | os.PathLike, tensors: Mapping[str, Any], header: Mapping[str, Any]) -> Path:
    """Write tensors + a JSON header (config, iteration, scene, device, format_version) atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={HEADER_KEY: json.dumps(dict(header), default=_json_default)})
    return Path(path)


def load_safetensors(
    path: str | os.PathLike,
    *,
    expected_keys: Iterable[str] | None = None,
    device: str = "cpu",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load (tensors, header). With `expected_keys`, refuse missing or unexpected tensors by name."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable safetensors checkpoint ({e}); delete it and rerun") from e
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
        raise ValueError(f"{path}: cannot be loaded as weights ({type(e).__name__}: {e})") from e
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # sam2 checkpoints wrap the state dict under "model"
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return obj


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
