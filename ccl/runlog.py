"""Logging for workflow scripts and the CLI: one call routes `logging`, warnings and progress bars.

Progress bars (`progress()`) draw on a terminal and, when stderr is a file (a rule's `log:`), print a
line at most every `mininterval` seconds so logs stay readable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def script_logging(log_path: str | os.PathLike | None) -> Iterator[logging.Logger]:
    """Send logging (and stderr, where progress bars write) to the rule's log file.

    An exception is logged with its traceback before it propagates, so the log says why a job failed.
    """
    root = logging.getLogger()
    handlers: list[logging.Handler] = []
    stream = None
    old_stderr = sys.stderr
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        sys.stderr = stream
        handlers.append(logging.StreamHandler(stream))
    else:
        handlers.append(logging.StreamHandler(sys.stderr))
    for h in handlers:
        h.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(h)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    log = logging.getLogger("ccl")
    t0 = time.perf_counter()
    try:
        yield log
        log.info("done in %.1f s", time.perf_counter() - t0)
    except BaseException:
        log.exception("failed after %.1f s", time.perf_counter() - t0)
        raise
    finally:
        for h in handlers:
            root.removeHandler(h)
        sys.stderr = old_stderr
        if stream is not None:
            stream.close()


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, **kwargs: Any) -> Iterator[T]:
    """tqdm over `iterable`; throttled when not on a terminal (log files)."""
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty()
    kwargs.setdefault("mininterval", 0.5 if interactive else 10.0)
    yield from tqdm(iterable, desc=desc, total=total, file=sys.stderr, dynamic_ncols=interactive, **kwargs)
