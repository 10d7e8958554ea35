"""CUDA tests: each compares a CUDA path (gsplat, the models, the trainings, the DAG) with its CPU twin.

They run where torch sees a CUDA device (`make gpu-check` runs them) and are skipped with that reason
elsewhere; tests/cuda/test_cuda_messages.py checks what can be checked without a GPU.
"""

from __future__ import annotations

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped with the reason without one)")


@pytest.fixture(scope="session")
def gsplat_cuda():
    """gsplat's CUDA extension, built once for the session (ccl's message when it cannot be)."""
    from ccl.splat._gsplat import ensure_gsplat_cuda

    ensure_gsplat_cuda()
