"""Logging for workflow scripts and the CLI: one call routes `logging`, warnings, threads and progress.

A workflow script wraps its body in `with script_logging(snakemake):`. That sends logging, warnings and
stderr to the rule's log, sets the job's thread count (`snakemake.threads`) for torch, OpenMP and BLAS,
and makes every `progress()` loop of the job report a line such as

    sam_masks ramen: 37/300 frames, 2.1 s/frame, ~9 min left

after its first item, then every `CCL_PROGRESS_EVERY_S` seconds (default `PROGRESS_EVERY_S`), and at
its end, both in the log and on the console (the process's own stderr, which Snakemake shows for local
jobs and Slurm writes to the job's output file), so a long job is never silent. Outside a job (the CLI,
tests) `progress()` is a tqdm bar, throttled to a line every 10 s when stderr is not a terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

T = TypeVar("T")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

PROGRESS_EVERY_S = 20.0  # seconds between a job's progress lines; env CCL_PROGRESS_EVERY_S overrides
PROGRESS_EVERY_ENV = "CCL_PROGRESS_EVERY_S"
# Thread pools that read their size from the environment when their library loads (OpenMP: torch's
# intra-op pool and anything else built with it; MKL and OpenBLAS: numpy's and torch's linear algebra).
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

progress_log = logging.getLogger("ccl.progress")


@dataclass(frozen=True)
class JobReport:
    """Where the running job's progress lines go (set by `script_logging`)."""

    name: str  # "sam_masks ramen": the rule and its wildcard values
    console: TextIO | None  # the process's stderr when logging went to a file; None: logging is on it
    every_s: float

    def report(self, line: str) -> None:
        progress_log.info(line)
        if self.console is not None:
            self.console.write(line + "\n")
            self.console.flush()


_job: JobReport | None = None


def warn_user(logger: logging.Logger, message: str) -> None:
    """A warning the user must see: in the log and, inside a job, on the console too (where only
    progress lines go otherwise), prefixed with the job's name."""
    logger.warning(message)
    job = _job
    if job is not None and job.console is not None:
        job.console.write(f"{job.name}: WARNING: {message}\n")
        job.console.flush()


def announce(logger: logging.Logger, message: str) -> None:
    """What a job is about to do, at once: in the log and, inside a job, on the console (prefixed with
    the job's name), so a long step is never silent while its first progress line is due."""
    logger.info(message)
    job = _job
    if job is not None and job.console is not None:
        job.console.write(f"{job.name}: {message}\n")
        job.console.flush()


_warned: set[str] = set()


def warn_once(logger: logging.Logger, message: str) -> None:
    """`warn_user`, once per process for one message (a file read by several steps of a job)."""
    if message not in _warned:
        _warned.add(message)
        warn_user(logger, message)


@contextlib.contextmanager
def no_implicit_root_handler() -> Iterator[None]:
    """Run third-party code without letting it configure the root logger.

    Code that logs through the module's functions (`logging.info(...)`: open_clip's create_model does)
    runs `logging.basicConfig` when the root logger has no handler, leaving a stderr handler there. In
    Snakemake's own process (the preflight builds models on the meta device) every Snakemake line then
    propagates to it and is printed twice ("INFO:snakemake.logging:None", "Shell command: None").
    Handlers added to the root logger while this runs are removed when it ends."""
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        yield
    finally:
        for h in [h for h in root.handlers if h not in before]:
            root.removeHandler(h)


def job_name(rule: str, wildcards: Iterable[Any] | Mapping[str, Any] = ()) -> str:
    """The rule and its wildcard values, in the rule's order: "sam_masks ramen"; a seed as its run's
    folder is named ("train_rgb ramen seed2"), since a bare number says nothing."""
    if isinstance(wildcards, Mapping) or hasattr(wildcards, "items"):  # Snakemake's Wildcards has items()
        values = [f"seed{v}" if k == "seed" else v for k, v in wildcards.items()]  # type: ignore[union-attr]
    else:
        values = list(wildcards)
    return " ".join([str(rule), *(str(v) for v in values)])


def progress_every_s() -> float:
    """Seconds between progress lines: `CCL_PROGRESS_EVERY_S` if set, else `PROGRESS_EVERY_S`."""
    raw = os.environ.get(PROGRESS_EVERY_ENV)
    if raw is None or raw == "":
        return PROGRESS_EVERY_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(
            f"environment variable {PROGRESS_EVERY_ENV}={raw!r}: expected seconds between progress lines, "
            f"a number > 0 (e.g. {PROGRESS_EVERY_S:g}); unset it for the default"
        )
    return value


def set_threads(n: int) -> None:
    """Use `n` threads in every pool a job's code starts: OpenMP and BLAS pools (from the environment,
    read when their library loads; so call this before importing torch or numpy), and torch's intra-op
    pool at once if torch is already loaded. The CPU rasterizer's tile kernel takes torch's count."""
    n = int(n)
    if n < 1:
        raise ValueError(f"threads = {n}: a job needs at least one thread (the rule's `threads:`)")
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


@contextlib.contextmanager
def script_logging(
    target: Any, *, threads: int | None = None, job: str | None = None
) -> Iterator[logging.Logger]:
    """A workflow script's context: `script_logging(snakemake)`, or `script_logging(log_path)`.

    With the `snakemake` object: logging (and stderr, where tqdm writes) goes to `snakemake.log[0]`,
    the job uses `snakemake.threads` threads (`set_threads`), and `progress()` loops report on the
    console and in the log, named `snakemake.rule` + wildcards. A plain `log_path` (or None: stderr)
    does the logging only, plus `threads` and the `job` name when given.

    An exception is logged with its traceback before it propagates, so the log says why a job failed.
    """
    global _job
    stale: list[Path] = []
    if hasattr(target, "log"):  # the script's `snakemake` object
        from ccl.io.atomic import remove_stale_temporaries

        # a killed earlier attempt's temporaries (raw masks: gigabytes); this job owns its outputs now
        outputs = getattr(target, "output", [])  # a Namedlist of paths (a namespace in some tests)
        stale = remove_stale_temporaries(outputs if isinstance(outputs, Iterable) else vars(outputs).values())
        log_path = target.log[0] if len(target.log) else None
        threads = getattr(target, "threads", None) if threads is None else threads
        if job is None and getattr(target, "rule", None) is not None:
            job = job_name(target.rule, target.wildcards)
    else:
        log_path = target
    every_s = progress_every_s()
    if threads is not None:
        set_threads(threads)
    root = logging.getLogger()
    handlers: list[logging.Handler] = []
    stream = None
    old_stderr = sys.stderr
    old_job = _job
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
    if job is not None:
        _job = JobReport(job, old_stderr if stream is not None else None, every_s)
    log = logging.getLogger("ccl")
    # said before the job's imports and inputs (torch, every image: tens of seconds on a real scene), so
    # that its log and a user watching it see at once that it runs, and where
    where = f"{os.uname().nodename}, pid {os.getpid()}"
    if threads is not None:
        where += f", {threads} thread{'s' if threads != 1 else ''}"
    log.info("%s: started (%s)", job or "job", where)
    for path in stale:
        log.info("removed %s, left by an earlier attempt that did not finish", path)
    t0 = time.perf_counter()
    try:
        yield log
        log.info("done in %.1f s", time.perf_counter() - t0)
    except BaseException as e:
        from ccl.io.atomic import DiskFullError

        if isinstance(e, DiskFullError) and _job is not None and _job.console is not None:
            # the user's situation, not ccl's fault: one line on the console, no traceback
            log.error("failed after %.1f s: %s", time.perf_counter() - t0, e)
            _job.console.write(f"{_job.name}: ERROR: {e}\n")
            _job.console.flush()
            raise SystemExit(1) from None
        log.exception("failed after %.1f s", time.perf_counter() - t0)
        raise
    finally:
        _job = old_job
        for h in handlers:
            root.removeHandler(h)
        sys.stderr = old_stderr
        if stream is not None:
            stream.close()


def progress(
    iterable: Iterable[T],
    *,
    desc: str,
    total: int | None = None,
    unit: str = "item",
    initial: int = 0,
    weight: Callable[[T], int] | None = None,
    **kwargs: Any,
) -> Iterator[T]:
    """Iterate `iterable`, showing how far it got: `unit`s done of `total`, counted from `initial`.

    `weight(item)`: how many units an item is (a batch of photos counts its photos), so the rate and
    the time left are per unit of work; `total` is then the units' sum (required).

    Inside a job (`script_logging(snakemake)`): a `ProgressLine` on the console and in the log. Else a
    tqdm bar (`desc`, `kwargs` go to it), throttled when not on a terminal (log files).
    """
    if weight is not None and total is None:
        raise ValueError("progress(weight=...) needs the total of the weights")
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    job = _job
    if job is None:
        from tqdm.auto import tqdm

        interactive = sys.stderr.isatty()
        kwargs.setdefault("mininterval", 0.5 if interactive else 10.0)
        if weight is None:
            yield from tqdm(
                iterable, desc=desc, total=total, unit=unit, initial=initial, file=sys.stderr,
                dynamic_ncols=interactive, **kwargs,
            )  # fmt: skip
            return
        with tqdm(desc=desc, total=total, unit=unit, initial=initial, file=sys.stderr,
                  dynamic_ncols=interactive, **kwargs) as bar:  # fmt: skip
            for item in iterable:
                yield item
                bar.update(weight(item))
        return
    meter = ProgressLine(job.name, unit=unit, total=total, initial=initial, every_s=job.every_s)
    done = initial
    for item in iterable:
        yield item
        # the caller asks for the next item once it has finished with this one
        done += 1 if weight is None else weight(item)
        line = meter.update(done)
        if line is not None:
            job.report(line)
    job.report(meter.finish(done))


class ProgressLine:
    """When a loop reports and what: after its first item, then every `every_s` seconds, and at its end.

    `clock` is injectable so tests can step time; the rate is the mean over the items of this run
    (a resumed run's `initial` items took no time here).
    """

    def __init__(
        self,
        job: str,
        *,
        unit: str,
        total: int | None,
        initial: int = 0,
        every_s: float = PROGRESS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job, self.unit, self.total, self.initial = job, unit, total, initial
        self.every_s, self.clock = every_s, clock
        self.t0 = clock()
        self.last: float | None = None  # when the last line was made

    def update(self, done: int) -> str | None:
        """The line to report now that `done` items are done, or None (not due; or the last item,
        whose line `finish` gives)."""
        now = self.clock()
        if self.last is not None and now - self.last < self.every_s:
            return None
        if self.total is not None and done >= self.total:
            return None
        self.last = now
        return format_progress(
            self.job, done, self.total, unit=self.unit, elapsed_s=now - self.t0, initial=self.initial
        )

    def finish(self, done: int) -> str:
        now = self.clock()
        self.last = now
        return format_progress(
            self.job, done, self.total, unit=self.unit, elapsed_s=now - self.t0, initial=self.initial,
            finished=True,
        )  # fmt: skip


def format_progress(
    job: str,
    done: int,
    total: int | None,
    *,
    unit: str,
    elapsed_s: float,
    initial: int = 0,
    finished: bool = False,
) -> str:
    """One progress line: "sam_masks ramen: 37/300 frames, 2.1 s/frame, ~9 min left"; at the end
    "sam_masks ramen: 300/300 frames, 2.1 s/frame, done in 10 min"."""
    units = unit if unit.endswith("s") else unit + "s"
    parts = [f"{done}/{total} {units}" if total is not None else f"{done} {units}"]
    ran = done - initial
    if ran > 0 and elapsed_s > 0:
        s_per = elapsed_s / ran
        parts.append(f"{_number(s_per)} s/{unit}" if s_per >= 1 else f"{_number(1 / s_per)} {units}/s")
        if not finished and total is not None and total > done:
            parts.append(f"~{_duration((total - done) * s_per)} left")
    if finished:
        parts.append(f"done in {_duration(elapsed_s)}")
    return f"{job}: " + ", ".join(parts)


def _number(x: float) -> str:
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
