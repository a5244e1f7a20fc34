"""Diffusion tests train tiny networks: one intra-op thread is faster than two on a shared machine,
and makes CPU training bit-reproducible across processes."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
