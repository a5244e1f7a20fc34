"""Inference settings of the DDIM loops: precision, ``torch.compile``, channels_last, a fixed batch
shape and CUDA-graph capture of the guided noise prediction.

:class:`FastNet` runs a network under autocast, handing outputs back in float32 (the DDIM update of
eq. 12 and the guidance gradient stay float32), optionally compiled and channels_last.
:class:`FixedRows` pads every call to one batch shape, which :class:`CapturedEps` (one CUDA graph
per shape, replayed with no host-device synchronisation) and a compiled network need.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

Eps = Callable[[Tensor, Tensor, Any], Tensor]

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class InferenceConfig(BaseModel):
    """How the DDIM loops run (saved with the run; ``DiffusionMechanism.with_inference``).
    The default is exact eager float32."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: autocast precision of the networks (the DDIM update and the guidance gradient stay fp32)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    #: ``torch.compile`` the denoiser and the predictor
    compile: bool = False
    #: the ``torch.compile`` backend ("aot_eager" and "eager" need no C compiler)
    compile_backend: Literal["inductor", "aot_eager", "eager"] = "inductor"
    #: convert image networks and inputs to channels_last
    channels_last: bool = False
    #: pad every network call to this many rows (None: the chunk's own size)
    fixed_batch: int | None = Field(None, ge=1)
    #: capture the guided noise prediction of a step as a CUDA graph, one per batch shape (CUDA
    #: only; with fixed_batch, one graph serves every chunk)
    cuda_graphs: bool = False

    @property
    def exact(self) -> bool:
        return self == InferenceConfig()

    def check_device(self, device: torch.device, node: str) -> None:
        """Refuse settings the device cannot run, naming the field."""
        if self.cuda_graphs and device.type != "cuda":
            raise ValueError(f"node {node!r}: inference.cuda_graphs needs a CUDA device, the mechanism is on {device}")


class FastNet:
    """``net(*args)`` under ``config``'s precision, compiled / channels_last when asked; floating
    outputs handed back in float32. Built once per network and setting (:func:`fast_net`)."""

    def __init__(self, net: nn.Module, config: InferenceConfig) -> None:
        self.config = config
        self.dtype = _DTYPES[config.precision]
        if config.channels_last:
            net = copy.deepcopy(net).to(memory_format=torch.channels_last)  # the eager net is shared
        self.net = torch.compile(net, backend=config.compile_backend, dynamic=False) if config.compile else net

    def __call__(self, x: Tensor, *args: Any) -> Tensor:
        if self.config.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.dtype is None:
            return self.net(x, *args)
        with torch.autocast(device_type=x.device.type, dtype=self.dtype):
            out = self.net(x, *args)
        return out.float()


def fast_net(net: nn.Module | None, config: InferenceConfig, cache: dict) -> Any:
    """The network itself when ``config`` is exact, else its :class:`FastNet`, cached by network
    and rebuilt once the network's tensors have moved (``to()`` moves them in place, and a
    channels_last FastNet holds a copy on the old device)."""
    if net is None or (config.precision == "fp32" and not config.compile and not config.channels_last):
        return net
    ref = next(itertools.chain(net.parameters(), net.buffers()), None)
    stamp = None if ref is None else (ref.device, ref.data_ptr())
    hit = cache.get(id(net))
    if hit is None or hit[0] != stamp:
        hit = cache[id(net)] = (stamp, FastNet(net, config))
    return hit[1]


def pad_rows(value: Any, rows: int) -> Any:
    """``value`` (a tensor, a sequence of them, or None) with its first dimension padded to ``rows``
    by repeating its last row (padding rows are sliced off the results; rows are independent)."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        extra = rows - value.shape[0]
        return value if extra <= 0 else torch.cat([value, value[-1:].expand(extra, *value.shape[1:])])
    if isinstance(value, Sequence):
        return type(value)(pad_rows(v, rows) for v in value)
    return value


class FixedRows:
    """An eps callable whose every call runs on exactly ``rows`` rows (the last chunk padded);
    batches larger than ``rows`` run in pieces of ``rows``."""

    def __init__(self, eps: Eps, rows: int) -> None:
        self.eps, self.rows = eps, rows

    def __call__(self, x: Tensor, t: Tensor, cond: Any) -> Tensor:
        n = x.shape[0]
        if n == self.rows:
            return self.eps(x, t, cond)
        parts = []
        for a in range(0, n, self.rows):
            b = min(a + self.rows, n)
            piece = self.eps(pad_rows(x[a:b], self.rows), pad_rows(t[a:b], self.rows),
                             pad_rows(_rows_of(cond, a, b), self.rows))
            parts.append(piece[: b - a])
        return torch.cat(parts) if len(parts) > 1 else parts[0]


def _rows_of(value: Any, a: int, b: int) -> Any:
    if isinstance(value, Tensor):
        return value[a:b]
    if isinstance(value, Sequence):
        return type(value)(_rows_of(v, a, b) for v in value)
    return value


class CapturedEps:
    """``eps(x, t, cond)`` captured as one CUDA graph per input shape and replayed: the denoiser
    forward and the predictor forward + backward of a guided step run as a single launch, with
    no host-device synchronisation. Inputs are copied into static buffers; the output is cloned."""

    def __init__(self, eps: Eps, warmup: int = 3) -> None:
        self.eps, self.warmup = eps, warmup
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, Tensor, Tensor, Any, Tensor]] = {}

    def _capture(self, x: Tensor, t: Tensor, cond: Any) -> tuple:
        sx, st, sc = x.clone(), t.clone(), _clone(cond)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.eps(sx, st, sc)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self.eps(sx, st, sc)
        return graph, sx, st, sc, out

    def __call__(self, x: Tensor, t: Tensor, cond: Any) -> Tensor:
        key = (tuple(x.shape), x.dtype, _shapes(cond))
        if key not in self._graphs:
            self._graphs[key] = self._capture(x, t, cond)
        graph, sx, st, sc, out = self._graphs[key]
        sx.copy_(x)
        st.copy_(t)
        _copy_into(sc, cond)
        graph.replay()
        return out.clone()


def _clone(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, Sequence):
        return type(value)(_clone(v) for v in value)
    return value


def _copy_into(static: Any, value: Any) -> None:
    if isinstance(static, Tensor):
        static.copy_(value)
    elif isinstance(static, Sequence):
        for s, v in zip(static, value):
            _copy_into(s, v)


def _shapes(value: Any) -> Any:
    if isinstance(value, Tensor):
        return (tuple(value.shape), value.dtype)
    if isinstance(value, Sequence):
        return tuple(_shapes(v) for v in value)
    return None


def fast_eps(eps: Eps, config: InferenceConfig) -> Eps:
    """The loop's eps callable with the fixed batch shape and CUDA-graph capture ``config`` asks."""
    if config.cuda_graphs:
        eps = CapturedEps(eps)
    if config.fixed_batch is not None:
        eps = FixedRows(eps, config.fixed_batch)
    return eps


__all__ = ["InferenceConfig", "FastNet", "FixedRows", "CapturedEps", "fast_net", "fast_eps", "pad_rows"]
