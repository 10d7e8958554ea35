"""The torch device of the model stages, from config.yaml's top-level `device` key."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from ccl.config import config_source


def resolve_device(device: str) -> str:
    """`auto` → "cuda" when torch sees a CUDA device, else "cpu"; "cpu", "cuda" and "cuda:N" are
    checked, an unavailable CUDA device or any other name is refused with the fix."""
    import torch

    device = str(device)  # a torch.device works too
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ValueError(
            f"{config_source()}: device must be one of auto, cpu, cuda; got {device!r}; "
            "set `device: auto` (CUDA when present, else CPU)"
        )
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"{config_source()}: device is {device!r} but torch sees no CUDA device; "
            "set `device: auto` or `device: cpu`"
        )
    return device


# Mixed precision of the model stages on CUDA (masks.precision, tracks.precision, features.precision):
# the config's name → torch's dtype name. On a CPU every stage runs float32 whatever the key says, so
# the CPU path is the same bit for bit with any value.
PRECISIONS: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def compute_dtype(device: str, precision: str) -> str:
    """The dtype name a model stage computes in on `device` (resolved) with `precision`: float32 on a CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision] if str(device).startswith("cuda") else "float32"


def autocast(device: str, precision: str):
    """torch.autocast for `precision` on a CUDA `device`; a no-op context on a CPU or with fp32."""
    import torch

    dtype = compute_dtype(device, precision)
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=getattr(torch, dtype))


class StageOutOfMemoryError(RuntimeError):
    """A stage ran out of GPU memory; the message names the config keys that lower it."""


@contextlib.contextmanager
def out_of_memory_names(stage: str, keys: str) -> Iterator[None]:
    """A context in which CUDA running out of memory is re-raised as StageOutOfMemoryError naming
    `keys` (the config keys that lower the stage's memory, in words) and the GPU's memory in use."""
    try:
        yield
    except Exception as e:
        torch = sys.modules.get("torch")  # not imported: nothing ran on a GPU (and the sim stays light)
        if torch is None or not isinstance(e, torch.cuda.OutOfMemoryError):
            raise
        used = ""
        try:
            free, total = torch.cuda.mem_get_info()
            used = f" ({(total - free) / 2**30:.1f} of {total / 2**30:.1f} GiB in use)"
        except (RuntimeError, AssertionError):  # no CUDA context to ask
            pass
        raise StageOutOfMemoryError(
            f"{stage}: the GPU ran out of memory{used}; lower {keys} in {config_source()} and rerun "
            f"(finished work is kept). torch: {str(e).splitlines()[0] if str(e) else 'out of memory'}"
        ) from e
