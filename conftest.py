"""Shared test configuration of tests/ and benchmarks/: device and dtype from the environment, GPU skipping, seeding."""

from __future__ import annotations

import os

import pytest
import torch

from causaldiff.progress import set_progress

# Tiny networks on a shared 2-core machine run fastest on one thread (less contention).
torch.set_num_threads(1)

#: Device of device-parametrised tests (``CAUSALDIFF_TEST_DEVICE=cuda`` on a GPU machine).
TEST_DEVICE = os.environ.get("CAUSALDIFF_TEST_DEVICE", "cpu")
#: Floating dtype of dtype-parametrised tests (``CAUSALDIFF_TEST_DTYPE=float32`` to run them in single precision).
TEST_DTYPE = os.environ.get("CAUSALDIFF_TEST_DTYPE", "float64")


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


@pytest.fixture
def dtype() -> torch.dtype:
    value = getattr(torch, TEST_DTYPE, None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise pytest.UsageError(f"CAUSALDIFF_TEST_DTYPE={TEST_DTYPE!r} is not a floating torch dtype")
    return value
