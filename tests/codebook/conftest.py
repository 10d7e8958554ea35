"""Codebook tests train many tiny models: one torch thread (thread hand-offs dominate ops this small,
and the test machines are shared), restored afterwards."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """tests/conftest.py's one_torch_thread, for every module here."""
    yield
