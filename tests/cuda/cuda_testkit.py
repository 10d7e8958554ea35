"""Helpers of the CUDA tests."""

from __future__ import annotations

import pytest


def needs_cuda():
    """The marks of a test module that runs on CUDA: `cuda`, and skipped with the reason without it."""
    import torch

    reason = (
        "no CUDA device: torch.cuda.is_available() is False "
        f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); run `make gpu-check` on a GPU machine"
    )
    return [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason=reason)]
