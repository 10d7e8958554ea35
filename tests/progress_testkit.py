"""What a stage tells its progress line (ccl.runlog.progress), recorded in a test."""

from __future__ import annotations

from typing import Any


def record_progress(monkeypatch: Any, module: Any) -> dict[str, Any]:
    """The keyword arguments of `module`'s calls of `progress` (the latest call's), filled as it runs."""
    seen: dict[str, Any] = {}
    real = module.progress

    def recording(iterable, **kw):
        seen.update(kw)
        return real(iterable, **kw)

    monkeypatch.setattr(module, "progress", recording)
    return seen
