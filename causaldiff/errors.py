"""Exception types. Every message names the node (or argument) and the problem."""

from __future__ import annotations


class CausalDiffError(Exception):
    """Base class of every error raised by causaldiff."""


class GraphError(CausalDiffError, ValueError):
    """The causal graph or its bindings are invalid (cycle, unbound node, wrong parents...)."""


class DataError(CausalDiffError, ValueError):
    """Rows handed to a query are invalid (unknown node, wrong shape, NaN, empty batch...)."""


class SeedError(DataError, TypeError):
    """A query's ``seed`` is not an integer (a float, str, bool...) or lies outside 64 bits."""


class InterventionError(CausalDiffError, ValueError):
    """An intervention is invalid (unknown node, value outside support, wrong shape...)."""


class AbductionError(CausalDiffError, ValueError):
    """A node's exogenous noise cannot be recovered from the observation."""


class DivergenceError(CausalDiffError, ArithmeticError):
    """A mechanism produced non-finite values: a numerical loop (a guided DDIM inversion or
    generation) diverged, or a distribution's parameters were NaN for these parents."""


class SpecError(GraphError):
    """A spec file cannot be read or is invalid (the message names the file and the key)."""


class NotFittedError(CausalDiffError, RuntimeError):
    """A learnable mechanism is used before ``fit`` (or its graph changed since)."""


class SerializationError(CausalDiffError, ValueError):
    """A saved model is corrupted, mismatched, or cannot be written."""


class DeviceError(CausalDiffError, ValueError):
    """A device is not one this machine has (``cuda`` without a GPU, ``cpu:99``, ``meta``...)."""


class RegistryError(CausalDiffError, ValueError):
    """An extension name is unknown, taken, or its class breaks the registry contract."""


class LaunchError(CausalDiffError, ValueError):
    """The launcher's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_PORT``...) or a collective
    timeout is invalid, or the ranks of a run disagree on what they were asked."""
