"""Where a stage's time goes: seconds per named part, measured by wrapping the functions the stage calls
(the product has no timing code). Used by bench/gpu_check.py.

Every wrapped call synchronises the device on entry and on exit, so a part's seconds hold the device
work it launched; a part's seconds exclude the parts called inside it, so the parts and "other" (what no
wrapped function covers: Python between the calls) sum to the profiled run's wall time. The synchronising
costs overlap between host and device: a profiled run is slower than a plain one, whose time is measured
apart and reported beside the split.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

# torch.Tensor methods that copy a device tensor's data to the host (and wait for the device first)
HOST_TRANSFER_METHODS = ("cpu", "tolist", "item", "__bool__", "__index__")
HOST_TRANSFERS = "host transfers and waits (cpu, tolist, item, bool, index of a device tensor)"


class PartTimer:
    """Exclusive seconds, calls and counted items per part, while `active`."""

    def __init__(self, device: str) -> None:
        self.cuda = str(device).startswith("cuda")
        self.active = False
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self.items: Counter[str] = Counter()  # e.g. the masks a part encoded
        self._children: list[float] = []  # per open call: seconds spent in calls nested in it

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def wrap(
        self,
        part: str,
        fn: Callable[..., Any],
        *,
        count: Callable[[Any], int] | None = None,
        when: Callable[..., bool] | None = None,
    ) -> Callable[..., Any]:
        """`fn`, timed as `part` (`count(result)` added to its items; only calls where `when(*args)`)."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.active or (when is not None and not when(*args)):
                return fn(*args, **kwargs)
            self._sync()
            t0 = time.perf_counter()
            self._children.append(0.0)
            try:
                result = fn(*args, **kwargs)
                if count is not None:
                    self.items[part] += count(result)
                return result
            finally:
                self._sync()
                elapsed = time.perf_counter() - t0
                nested = self._children.pop()
                self.seconds[part] += elapsed - nested
                self.calls[part] += 1
                if self._children:
                    self._children[-1] += elapsed

        return timed

    @contextlib.contextmanager
    def patched(self, targets: list[tuple[Any, str, str]], **options: Any) -> Iterator[None]:
        """(owner, attribute, part): each owner's attribute replaced by its timed wrapper for the block
        (functions of modules, methods of classes or instances, static methods), restored after."""
        saved = []
        for owner, name, part in targets:
            static = inspect.getattr_static(owner, name)
            in_dict = name in vars(owner)
            fn = getattr(owner, name)
            wrapped = self.wrap(part, fn, **options)
            setattr(owner, name, staticmethod(wrapped) if isinstance(static, staticmethod) else wrapped)
            saved.append((owner, name, static, in_dict))
        try:
            yield
        finally:
            for owner, name, static, in_dict in reversed(saved):
                if in_dict:
                    setattr(owner, name, static)
                else:  # it was the class's: the instance attribute goes
                    delattr(owner, name)

    @contextlib.contextmanager
    def host_transfers(self) -> Iterator[None]:
        """Time torch.Tensor's host copies of device tensors (CUDA only: on a CPU nothing moves)."""
        import torch

        with self.patched(
            [(torch.Tensor, name, HOST_TRANSFERS) for name in HOST_TRANSFER_METHODS],
            when=lambda t, *a: t.device.type != "cpu",
        ):
            yield

    @contextlib.contextmanager
    def run(self) -> Iterator[list[float]]:
        """Active for the block; yields a list that holds the block's wall seconds after it."""
        wall: list[float] = []
        self._sync()
        self.active = True
        t0 = time.perf_counter()
        try:
            yield wall
        finally:
            self._sync()
            wall.append(time.perf_counter() - t0)
            self.active = False

    def split(self, wall_s: float, per: int = 1) -> dict[str, dict[str, float]]:
        """{part: {seconds, calls, items}} per `per` (e.g. frames), "other" the rest of `wall_s`."""
        out = {
            part: {"seconds": s / per, "calls": self.calls[part] / per, "items": self.items[part] / per}
            for part, s in sorted(self.seconds.items(), key=lambda kv: -kv[1])
        }
        out["other"] = {"seconds": (wall_s - sum(self.seconds.values())) / per, "calls": 0, "items": 0}
        return out
