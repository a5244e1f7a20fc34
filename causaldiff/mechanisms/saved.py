"""Checks of the tensors a mechanism loads from a saved file (before any is used)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from ..errors import SerializationError


def check_statistics(stats: Mapping[str, Tensor], shapes: Mapping[str, tuple[int, ...]], what: str,
                     positive: Iterable[str] = ()) -> None:
    """Refuse saved statistics that are not exactly ``shapes`` (each present, none extra), floating
    and finite, with the ``positive`` ones (standard deviations) above zero; naming ``what`` and the key."""
    missing, extra = sorted(set(shapes) - set(stats)), sorted(set(stats) - set(shapes))
    if missing or extra:
        raise SerializationError(f"{what}: {'missing' if missing else 'unexpected'} statistics {missing or extra}")
    positive = set(positive)
    for k, want in shapes.items():
        v = stats[k]
        if not v.is_floating_point():
            raise SerializationError(f"{what}: statistic {k!r} has dtype {v.dtype}, expected a floating dtype")
        if tuple(v.shape) != tuple(want):
            raise SerializationError(f"{what}: statistic {k!r} has shape {tuple(v.shape)}, expected {tuple(want)}")
        if not bool(torch.isfinite(v).all()) or (k in positive and not bool((v > 0).all())):
            raise SerializationError(f"{what}: statistic {k!r} holds NaN, Inf{' or values <= 0' if k in positive else ''}")




def group_tensors(tensors: Mapping[str, Tensor], heads: Iterable[str], what: str) -> dict[str, dict[str, Tensor]]:
    """Saved tensors ``"head.rest"`` grouped by ``head`` (``{head: {rest: tensor}}``); a tensor
    under another head is refused, naming ``what`` was saved."""
    groups: dict[str, dict[str, Tensor]] = {h: {} for h in heads}
    for name, v in tensors.items():
        head, _, rest = name.partition(".")
        if head not in groups:
            raise SerializationError(f"unexpected tensor {name!r} in a saved {what}")
        groups[head][rest] = v
    return groups


def check_state(build: Callable[[], nn.Module], state: Mapping[str, Tensor], what: str) -> None:
    """Refuse saved weights that do not fit the network ``build()`` makes (each key present, none
    extra, same shape, floating where the network's are), checked on the ``meta`` device: nothing
    is allocated for a network the file does not hold, however large its saved config says it is."""
    with torch.device("meta"):
        want = build().state_dict()
    missing, extra = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    if missing or extra:
        keys = missing or extra
        raise SerializationError(f"{what}: {'missing' if missing else 'unexpected'} weight(s) "
                                 f"{keys[:5]}{' ...' if len(keys) > 5 else ''}")
    for k, w in want.items():
        v = state[k]
        if tuple(v.shape) != tuple(w.shape):
            raise SerializationError(f"{what}: weight {k!r} has shape {tuple(v.shape)}, its config builds {tuple(w.shape)}")
        if w.is_floating_point() and not v.is_floating_point():
            raise SerializationError(f"{what}: weight {k!r} has dtype {v.dtype}, expected a floating dtype")


__all__ = ["check_state", "check_statistics", "group_tensors"]
