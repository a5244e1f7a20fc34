"""Devices a model can live on, checked before anything moves."""

from __future__ import annotations

from typing import Any

import torch

from .errors import DeviceError


def check_device(device: Any, what: str = "device") -> torch.device:
    """``device`` as a :class:`torch.device` this machine has, else :class:`~causaldiff.errors.DeviceError`
    naming ``what``: ``cpu`` (index 0 only), ``cuda[:N]`` with a GPU of that index, ``mps`` where it
    is available. ``meta`` is refused: a tensor moved there loses its values."""
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise DeviceError(f"{what}: expected a device such as 'cpu' or 'cuda:0', got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as e:
        raise DeviceError(f"{what}: {device!r} is not a device (use cpu, cuda or cuda:N): {e}") from None
    if dev.type == "cpu":
        if dev.index not in (None, 0):
            raise DeviceError(f"{what}: {device!r}: there is one CPU device, cpu (or cpu:0)")
    elif dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{what}: {device!r}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"{what}: {device!r}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"{what}: {device!r}: MPS is not available on this machine")
    elif dev.type == "meta":
        raise DeviceError(f"{what}: 'meta' tensors hold no values; a model moved there would lose its weights")
    else:
        raise DeviceError(f"{what}: {device!r} is not supported (use cpu, cuda or cuda:N)")
    return dev


__all__ = ["check_device"]
