"""A CPU-only guard against tensors made off the device of the data they meet (a developers' check).

On a CUDA machine a tensor made without a device lands on the CPU, and the first operation that joins it
with CUDA data fails (`torch.cat`, `nms`, an index): the first GPU run of this project stopped that way in
the real SAM stage. On a CPU every tensor is on the CPU, so the mistake is invisible. Under
`host_tensors_fail_on_meeting_the_device()`:

- a tensor that ccl's own code makes without naming a device (`torch.zeros(n)`, `torch.tensor(box)`,
  `torch.as_tensor(array)`, `torch.from_numpy(array)`) or takes off the device (`.cpu()`) becomes a
  `HostTensor`: it stands for what would be a CPU tensor on a CUDA run;
- every other tensor (the model's, the data's, those made with `device=`, or moved with `.to(...)`) stands
  for a tensor on the device;
- an operation that joins a HostTensor with a device tensor raises `DeviceMixError` naming the operation and
  the line that made the host tensor, under the same rules CUDA enforces: a 0-dim host tensor (a scalar) may
  meet device tensors, a device tensor may be indexed with host indices, nothing else mixes.

`CCL_HOST_TENSOR_GUARD=1` in the environment turns it on for every process that imports ccl (the
workflow's jobs included: the real-path DAG test runs under it); `host_tensors_fail_on_meeting_the_device()`
turns it on for a block of code.

Only tensors made in ccl's files are marked: a library's own host-side helpers (segment-anything's
`torch.as_tensor(points)`, which it moves with the index it filters by) are the library's contract, and
marking them would flag correct code. On a CPU run the device is "cpu", so "the host" cannot be named
apart from it: a tensor ccl moves with `.to("cpu")`, or makes with `device=` a host tensor's device, counts
as on the device. The guard can miss such a mix; it never reports one that CUDA would accept. Torch keeps
function modes per thread, so the guard also wraps `threading.Thread.run`: a thread started while it is on
(the viewer's render, watch and answer threads, a thread pool's workers) runs under it for its whole life.
A thread class that overrides `run` itself is not covered; ccl starts its threads with `target=`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors
from torch.utils._pytree import tree_flatten

CCL_DIR = str(Path(__file__).resolve().parent) + os.sep
TORCH_DIR = str(Path(torch.__file__).resolve().parent) + os.sep

# what makes a tensor on the CPU unless told otherwise: torch's own list of device-taking constructors
# (the one `with torch.device(...)` rewrites); and `from_numpy`, which can only make CPU tensors (below)
HOST_CONSTRUCTORS = frozenset(_device_constructors())
# ccl's files that run on the CPU by design: the rasterizer's CPU twin (gsplat is the path on CUDA) and
# its reference, whose tensors are all on the host
CPU_ONLY_FILES = tuple(
    os.path.join("splat", name) for name in ("_cpu_tiles.py", "_cpu_kernel.py", "_reference.py")
)

# what reads tensors' metadata or contents without computing with another tensor (no mix possible)
_READS = frozenset(
    {"__repr__", "__format__", "__len__", "__iter__", "__bool__", "numpy", "tolist", "item", "size", "dim"}
    | {"numel", "__array__", "__get__", "_has_compatible_shallow_copy_type", "is_floating_point"}
    | {"is_complex", "data_ptr", "stride", "is_contiguous", "element_size", "__hash__"}
)


def _method(func) -> str | None:
    """The name of `func` if it is a Tensor method (torch hands them over as Tensor's or TensorBase's)."""
    qualname = getattr(func, "__qualname__", "")
    return qualname.split(".")[-1] if qualname.startswith(("Tensor.", "TensorBase.")) else None


class DeviceMixError(RuntimeError):
    """A tensor made on the host met tensors on the device: on CUDA this operation fails."""


class HostTensor(torch.Tensor):
    """A CPU tensor that, on a CUDA run, would be on the CPU while the data is on the GPU."""

    made_at: str = "?"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        method = _method(func)
        if getattr(func, "__name__", None) in _READS:
            return super().__torch_function__(func, types, args, kwargs)
        if getattr(func, "__name__", None) == "__set__":  # `t.data = d` (how a Module moves): t is where d is
            with torch._C.DisableTorchFunctionSubclass():
                func(*args, **kwargs)
            target, value = args[0], args[1]
            if isinstance(target, HostTensor) and type(value) is torch.Tensor:
                target.__class__ = torch.Tensor
            return None
        if method == "copy_":  # copies across devices (load_state_dict's way): the target stays where it is
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)
        if _moves_to_a_device(method, args, kwargs):
            with torch._C.DisableTorchFunctionSubclass():
                # on a CPU run `.to("cpu")` returns the tensor itself: what it stands for has moved
                return func(*args, **kwargs).as_subclass(torch.Tensor)
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        host = [t for t in tensors if isinstance(t, HostTensor)]
        device = [t for t in tensors if not isinstance(t, HostTensor)]
        host_arrays = [t for t in host if t.dim() > 0]
        indexed_on_device = method in ("__getitem__", "__setitem__") and not isinstance(args[0], HostTensor)
        if device and host_arrays and not indexed_on_device:
            raise DeviceMixError(
                f"{_name(func)} joins a tensor made on the host (at {host_arrays[0].made_at}) with tensors on "
                "the device: on a CUDA run it fails with 'Expected all tensors to be on the same device'. "
                "Make the tensor with device= the data's device."
            )
        if device:  # host scalars meeting device tensors, or host indices of a device tensor: on the device
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)
        out = super().__torch_function__(func, types, args, kwargs)
        _inherit_origin(out, host[0].made_at if host else "?")
        return out


def _moves_to_a_device(method: str | None, args, kwargs) -> bool:
    """`.to(device)`, `.to(other_tensor)`, `.cuda()`: the result is on the device named."""
    if method == "cuda":
        return True
    if method != "to":
        return False
    named = [*args[1:], kwargs.get("device"), kwargs.get("other")]
    return any(isinstance(a, str | torch.device) or type(a) is torch.Tensor for a in named if a is not None)


def _inherit_origin(out, made_at: str) -> None:
    for t in tree_flatten(out)[0]:
        if isinstance(t, HostTensor):
            t.made_at = made_at


def _name(func) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))


def _caller_outside_torch(depth: int) -> tuple[str, int]:
    """The file and line, `depth` frames up and past torch's own, that made a tensor."""
    frame = sys._getframe(depth)
    while frame is not None and frame.f_code.co_filename.startswith(TORCH_DIR):
        frame = frame.f_back
    if frame is None:
        return "?", 0
    return frame.f_code.co_filename, frame.f_lineno


class _MarkHostTensors(TorchFunctionMode):
    def __init__(self, code_dirs: tuple[str, ...], *, patches_globals: bool = True):
        super().__init__()
        self.code_dirs = code_dirs
        # torch.from_numpy and Thread.run are module attributes, shared by every thread: the mode that turns
        # the guard on wraps them; the modes of the threads started under it find them wrapped already
        self.patches_globals = patches_globals

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        host_made = (
            func in HOST_CONSTRUCTORS
            and kwargs.get("device") is None
            and not (args and isinstance(args[0], torch.Tensor))  # as_tensor(t) keeps t's device
            and not (func is torch.as_tensor and len(args) > 2 and args[2] is not None)
        ) or (_method(func) == "cpu" and not isinstance(args[0], HostTensor))
        return self._mark(out, depth=3) if host_made else out

    def _mark(self, out, *, depth: int):
        if isinstance(out, torch.Tensor):
            filename, line = _caller_outside_torch(depth)
            if filename.startswith(self.code_dirs) and not filename.endswith(CPU_ONLY_FILES):
                out = out.as_subclass(HostTensor)
                out.made_at = f"{filename}:{line}"
        return out

    # torch.from_numpy takes no device and reaches no function mode: it is wrapped while the guard is on;
    # so is Thread.run, since a new thread starts with no function mode
    def __enter__(self):
        if self.patches_globals:
            self._from_numpy = torch.from_numpy
            torch.from_numpy = lambda array: self._mark(self._from_numpy(array), depth=3)
            self._thread_run = threading.Thread.run
            threading.Thread.run = _guarded_run(self._thread_run, self.code_dirs)
        return super().__enter__()

    def __exit__(self, *exc):
        if self.patches_globals:
            torch.from_numpy = self._from_numpy
            threading.Thread.run = self._thread_run
        return super().__exit__(*exc)


def _guarded_run(run, code_dirs: tuple[str, ...]):
    """`Thread.run` under the guard: torch's function modes are per thread, and a thread starts with none."""

    def guarded(thread: threading.Thread) -> None:
        with _MarkHostTensors(code_dirs, patches_globals=False):
            run(thread)

    return guarded


@contextlib.contextmanager
def host_tensors_fail_on_meeting_the_device(code_dirs: Iterable[str] = (CCL_DIR,)) -> Iterator[None]:
    """Run a CPU path as if its device were a GPU: host-made tensors of the code under `code_dirs` (ccl's)
    fail where they meet the data."""
    with _MarkHostTensors(tuple(code_dirs)):
        yield


def enable_for_this_process() -> None:
    """The guard on from here to the process's end, on this thread and the threads started after it (what
    CCL_HOST_TENSOR_GUARD=1 does)."""
    _MarkHostTensors((CCL_DIR,)).__enter__()
