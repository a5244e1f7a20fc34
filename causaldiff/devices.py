"""Devices a model can live on, checked before anything moves: :func:`device_problem` is the one
place that decides whether a device is usable here and why not; :func:`check_device` (the Python
API) and the command line's ``--device`` each word the refusal their own way."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from .errors import DeviceError

#: The device kinds causaldiff runs on (where this machine has them).
KINDS = ("cpu", "cuda", "mps")
USE = "(use cpu, cuda or cuda:N)"


class DeviceProblem(NamedTuple):
    """Why a device cannot be used. ``on_machine``: the name is a device of a supported kind that
    this machine lacks (``reason`` is about the machine, e.g. "CUDA is not available on this
    machine"); else the name itself is wrong (``reason`` quotes it, e.g. "'tpu' is not supported")."""

    reason: str
    on_machine: bool


def _machine_problem(dev: torch.device) -> str | None:
    """What this machine lacks to hold ``dev`` (of a supported kind), or None."""
    if dev.type == "cpu" and dev.index not in (None, 0):
        return "there is one CPU device, cpu (or cpu:0)"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available on this machine"
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            return f"this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
    if dev.type == "mps" and not torch.backends.mps.is_available():
        return "MPS is not available on this machine"
    return None


def device_problem(device: Any, kinds: tuple[str, ...] = KINDS) -> DeviceProblem | None:
    """Why ``device`` (a string, an int or a :class:`torch.device`) cannot hold a model on this
    machine, or None when it can: ``cpu`` (index 0 only), ``cuda[:N]`` with a GPU of that index,
    ``mps`` where available, each only if in ``kinds``. ``meta`` is refused: a tensor moved there
    loses its values."""
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        return DeviceProblem(f"expected a device such as 'cpu' or 'cuda:0', got {type(device).__name__}", False)
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as e:
        return DeviceProblem(f"{device!r} is not a device {USE}: {e}", False)
    if dev.type == "meta":
        return DeviceProblem(f"{device!r} is not supported: its tensors hold no values, so a model "
                             "moved there would lose its weights", False)
    if dev.type not in kinds:
        return DeviceProblem(f"{device!r} is not supported {USE}", False)
    reason = _machine_problem(dev)
    return None if reason is None else DeviceProblem(reason, True)


def check_device(device: Any, what: str = "device") -> torch.device:
    """``device`` as a :class:`torch.device` this machine has (:func:`device_problem`), else
    :class:`~causaldiff.errors.DeviceError` naming ``what`` and the device."""
    problem = device_problem(device)
    if problem is not None:
        where = f" {device!r}:" if problem.on_machine else ""
        raise DeviceError(f"{what}:{where} {problem.reason}")
    return torch.device(device)


__all__ = ["DeviceProblem", "check_device", "device_problem"]
