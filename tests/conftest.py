"""Shared test configuration: device/dtype from the environment, GPU skipping, seeding."""

from __future__ import annotations

import os

import pytest
import torch

from causaldiff.progress import set_progress

# Tiny networks on a shared 2-core machine run fastest on one thread (less contention).
torch.set_num_threads(1)

#: Device of device-parametrised tests (``CAUSALDIFF_TEST_DEVICE=cuda`` on a GPU machine).
TEST_DEVICE = os.environ.get("CAUSALDIFF_TEST_DEVICE", "cpu")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _quiet_and_seeded():
    set_progress(False)
    torch.manual_seed(0)
    yield


@pytest.fixture
def device() -> torch.device:
    return torch.device(TEST_DEVICE)
