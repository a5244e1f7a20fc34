"""Interventions: kinds behind two generic functions, :func:`intervene` and :func:`natural_value`
(``functools.singledispatch``, as ChiRho's ``intervene``).

* :class:`Hard` sets a node to a value (scalar, per-row tensor, or one value of the node's shape):
  graph surgery. Plain values passed to ``do`` become :class:`Hard`.
* :class:`Shift` adds ``delta`` to the value the node would have taken (soft: edges kept).
* :class:`Transform` replaces the would-be value ``v`` by ``fn(v)`` (soft); plain callables become one.

A kind is a frozen dataclass declaring ``cuts_edges`` and ``label`` as class keywords, with one
registration of :func:`intervene` and, when it can be seen through (:class:`Shift`), one of
:func:`natural_value` (abduction on an SCM already carrying it; other kinds are refused by name).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Number
from typing import Any, ClassVar, Union

import numpy as np
import torch
from torch import Tensor

from .errors import AbductionError, InterventionError
from .validation import all_finite


class _Kind:
    """What each kind of intervention declares, as class keywords."""

    #: whether the intervention cuts the node's incoming edges (graph surgery)
    cuts_edges: ClassVar[bool]
    #: what the intervention is called in messages
    label: ClassVar[str]

    def __init_subclass__(cls, *, cuts_edges: bool | None = None, label: str | None = None, **kwargs: Any) -> None:
        """Set the kind's flags; a subclass of a kind (say a custom Shift) inherits those it omits."""
        super().__init_subclass__(**kwargs)
        for name, value in (("cuts_edges", cuts_edges), ("label", label)):
            if value is not None:
                setattr(cls, name, value)
            elif not hasattr(cls, name):
                raise TypeError(f"{cls.__name__} must declare {name}= (it subclasses no kind of intervention)")


@dataclass(frozen=True)
class Hard(_Kind, cuts_edges=True, label="hard"):
    """``do(X = value)``: graph surgery, the node loses its incoming edges."""

    value: Any

    def __repr__(self) -> str:
        return f"Hard({_short(self.value)})"


@dataclass(frozen=True)
class Shift(_Kind, cuts_edges=False, label="shift"):
    """``do(X = X + delta)``: shift the node's natural value by ``delta`` (soft: edges kept)."""

    delta: Any

    def __repr__(self) -> str:
        return f"Shift({_short(self.delta)})"


@dataclass(frozen=True)
class Transform(_Kind, cuts_edges=False, label="callable"):
    """``do(X = fn(X))``: a callable of the node's natural (factual) value (soft: edges kept)."""

    fn: Callable[[Tensor], Tensor]

    def __repr__(self) -> str:
        return f"Transform({getattr(self.fn, '__name__', 'fn')})"


def _need_natural(node: str, iv: Any, natural: Tensor | None) -> Tensor:
    if natural is None:
        raise InterventionError(f"node {node!r}: {iv!r} needs the node's natural value")
    return natural


Intervention = Union[Hard, Shift, Transform]


@functools.singledispatch
def intervene(iv: Any, node: str, natural: Tensor | None, n: int, event_shape: tuple[int, ...] | None,
              dtype: torch.dtype, device: torch.device) -> Tensor:
    """The node's value under ``iv`` for ``n`` rows, from its would-be (natural) value; one
    registration per kind (``@intervene.register``)."""
    raise InterventionError(f"node {node!r}: {type(iv).__name__} is not a kind of intervention "
                            "(register it with causaldiff.interventions.intervene.register)")


@intervene.register
def _hard(iv: Hard, node: str, natural: Tensor | None, n: int, event_shape: tuple[int, ...] | None,
          dtype: torch.dtype, device: torch.device) -> Tensor:
    """The value broadcast to ``(n, *event_shape)`` (``natural`` is not used)."""
    return broadcast_value(node, iv.value, n, event_shape, dtype, device)


@intervene.register
def _shift(iv: Shift, node: str, natural: Tensor | None, n: int, event_shape: tuple[int, ...] | None,
           dtype: torch.dtype, device: torch.device) -> Tensor:
    natural = _need_natural(node, iv, natural)
    return natural + broadcast_value(node, iv.delta, n, tuple(natural.shape[1:]), natural.dtype, natural.device)


@intervene.register
def _transform(iv: Transform, node: str, natural: Tensor | None, n: int, event_shape: tuple[int, ...] | None,
               dtype: torch.dtype, device: torch.device) -> Tensor:
    natural = _need_natural(node, iv, natural)
    out = iv.fn(natural)
    if not isinstance(out, Tensor):
        try:
            out = torch.as_tensor(out, dtype=natural.dtype, device=natural.device)
        except (TypeError, ValueError, RuntimeError):
            raise InterventionError(f"node {node!r}: callable intervention returned "
                                    f"{type(out).__name__}, not a tensor") from None
    if out.shape != natural.shape:
        raise InterventionError(
            f"node {node!r}: callable intervention returned shape {tuple(out.shape)}, "
            f"expected {tuple(natural.shape)}")
    if out.is_complex() or (out.is_floating_point() and not bool(torch.isfinite(out).all())):
        raise InterventionError(f"node {node!r}: callable intervention returned "
                                f"{'complex values' if out.is_complex() else 'NaN or Inf'}")
    return out



@functools.singledispatch
def natural_value(iv: Any, node: str, x: Tensor) -> Tensor:
    """The natural value behind observed rows ``x`` of a node carrying ``iv`` (abduction through
    an intervention the SCM already carries); refused for kinds with no registered inverse."""
    raise AbductionError(f"node {node!r}: cannot abduct through the {iv.label} intervention {iv!r} "
                         "this SCM already carries (it has no known inverse)")


@natural_value.register
def _unshift(iv: Shift, node: str, x: Tensor) -> Tensor:
    """The natural value behind an observed ``x = natural + delta``."""
    return x - broadcast_value(node, iv.delta, x.shape[0], tuple(x.shape[1:]), x.dtype, x.device)


def invertible(iv: Any) -> bool:
    """Whether :func:`natural_value` sees through ``iv`` (its kind registered an inverse)."""
    return natural_value.dispatch(type(iv)) is not natural_value.dispatch(object)


def is_intervention(value: Any) -> bool:
    """Whether ``value`` is an instance of a registered kind of intervention."""
    return intervene.dispatch(type(value)) is not intervene.dispatch(object)


def _short(v: Any) -> str:
    if isinstance(v, Tensor):
        return f"tensor{tuple(v.shape)}" if v.numel() > 4 else repr(v.tolist())
    return repr(v)


def as_intervention(node: str, value: Any) -> Intervention:
    """What a user passes to ``do`` for ``node`` as an intervention, validated (real, finite, not
    empty) and snapshotted (tensors cloned, arrays copied)."""
    if isinstance(value, (Tensor, Number, list, tuple)) or hasattr(value, "__array__"):
        return Hard(_checked_copy(node, value))  # a list or tuple: one value per row (or one row's values)
    if not is_intervention(value):
        if callable(value):
            return Transform(value)
        raise InterventionError(
            f"node {node!r}: cannot intervene with {type(value).__name__}; use a number, a tensor, "
            "a list, cd.Shift(delta) or a callable of the factual value")
    if isinstance(value, Transform) and not callable(value.fn):
        raise InterventionError(f"node {node!r}: Transform needs a callable, got {type(value.fn).__name__}")
    if not isinstance(value, (Hard, Shift)):
        return value  # a Transform, or a registered kind of its own: validated by its registration
    name = "value" if isinstance(value, Hard) else "delta"
    return dataclasses.replace(value, **{name: _checked_copy(node, getattr(value, name))})


def _checked_copy(node: str, value: Any) -> Any:
    """The intervention's value validated (finite, real, not empty) and copied."""
    if isinstance(value, Number) and not isinstance(value, Tensor):
        if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
            raise InterventionError(f"node {node!r}: intervention value {value!r} is complex; values must be real")
        if isinstance(value, float) and not math.isfinite(value):
            raise InterventionError(f"node {node!r}: intervention value {value} is not finite")
        return value
    if isinstance(value, Tensor):
        t = value.detach().clone()
    elif hasattr(value, "__array__") or isinstance(value, (list, tuple)):  # NumPy arrays, per-row lists
        try:
            t = torch.tensor(np.array(value))
        except (TypeError, ValueError, RuntimeError):
            raise InterventionError(f"node {node!r}: cannot read the {type(value).__name__} intervention value "
                                    "as numbers") from None
    else:
        raise InterventionError(f"node {node!r}: cannot intervene with {type(value).__name__}; use a number "
                                "or a tensor")
    if t.is_complex():
        raise InterventionError(f"node {node!r}: intervention value is complex ({t.dtype}); values must be real")
    if t.device.type == "meta":
        raise InterventionError(f"node {node!r}: intervention value is on the meta device (it holds no values)")
    if t.numel() == 0:
        raise InterventionError(f"node {node!r}: intervention value is empty")
    if t.is_floating_point() and not all_finite(t):
        raise InterventionError(f"node {node!r}: intervention value contains NaN or Inf")
    return t


def broadcast_value(node: str, value: Any, n: int, event_shape: tuple[int, ...] | None,
                    dtype: torch.dtype, device: torch.device) -> Tensor:
    """A hard value or shift of shape ``()``, ``event_shape`` or ``(n, *event_shape)`` broadcast to
    ``(n, *event_shape)`` of ``dtype`` (on an integer node ``1.0`` becomes ``1``, ``1.5`` is refused)."""
    integral = not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)
    if isinstance(value, Number) and not isinstance(value, Tensor):  # no float32 round trip
        t = torch.tensor(value, dtype=torch.float64 if integral and not isinstance(value, numbers.Integral)
                         else dtype, device=device)
    else:
        t = torch.as_tensor(value, device=device)
    if t.dtype != dtype:
        if integral and t.is_floating_point() and not bool((t == t.round()).all()):
            raise InterventionError(f"node {node!r}: intervention value {_short(value)} is not an integer; "
                                    f"the node's values are {str(dtype).replace('torch.', '')}")
        t = t.to(dtype)
    if event_shape is None:
        event_shape = tuple(t.shape[1:]) if t.dim() > 0 and t.shape[0] == n else tuple(t.shape)
    full = (n, *event_shape)
    if tuple(t.shape) == full:
        return t
    if t.dim() == 0 or tuple(t.shape) == tuple(event_shape):
        return t.expand(full)
    raise InterventionError(
        f"node {node!r}: intervention value of shape {tuple(t.shape)} fits neither one row "
        f"{tuple(event_shape)} nor the batch {full}")


__all__ = ["Hard", "Shift", "Transform", "Intervention", "as_intervention", "broadcast_value", "intervene",
           "invertible", "is_intervention", "natural_value"]
