"""Codebook tests train many tiny models: one torch thread (thread hand-offs dominate ops this small,
and the test machines are shared), restored afterwards."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
