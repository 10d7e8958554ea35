"""The torch device of the model stages, from config.yaml's top-level `device` key."""

from __future__ import annotations


def resolve_device(device: str) -> str:
    """`auto` → "cuda" when torch sees a CUDA device, else "cpu"; "cpu", "cuda" and "cuda:N" are
    checked, an unavailable CUDA device or any other name is refused with the fix."""
    import torch

    device = str(device)  # a torch.device works too
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ValueError(
            f"config.yaml: device must be one of auto, cpu, cuda; got {device!r}; "
            "set `device: auto` (CUDA when present, else CPU)"
        )
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"config.yaml: device is {device!r} but torch sees no CUDA device; "
            "set `device: auto` or `device: cpu`"
        )
    return device
