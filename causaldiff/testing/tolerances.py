"""Tolerances per node, from the abduction each node's conditional declares: ``EXACT`` and
``STOCHASTIC``: ``sqrt(eps)`` of the node's dtype unless :attr:`Tolerances.exact` is given;
``APPROXIMATE`` (DDIM inversion): :attr:`Tolerances.approximate` (1e-2); a node in
:attr:`Tolerances.nodes` gets that value; plus the node's tolerance floor on the rows
(:func:`floors`: a latent image node cannot give back its rows closer than its autoencoder
reconstructs them). A comparison at ``v`` uses the largest tolerance of ``v`` and its ancestors
(:func:`node_tolerances`): errors flow downstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import networkx as nx
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from ..mechanisms.base import Abduction
from ..scm import SCM


class Tolerances(BaseModel):
    """The tolerances of the laws that compare values (frozen; unknown fields are refused)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    #: exact and stochastic nodes; None: ``sqrt(eps)`` of the node's dtype
    exact: float | None = Field(None, ge=0.0)
    #: nodes whose abduction is approximate (diffusion nodes)
    approximate: float = Field(1e-2, ge=0.0)
    #: per-node overrides of the node's own tolerance
    nodes: dict[str, Annotated[float, Field(ge=0.0)]] = {}


def float_precision(dtype: torch.dtype) -> float:
    """``sqrt(eps)`` of a floating dtype (of float64 for integer and boolean values)."""
    return torch.finfo(dtype if dtype.is_floating_point else torch.float64).eps ** 0.5


def abductions(scm: SCM, data: Mapping[str, Tensor]) -> dict[str, Abduction]:
    """Each node's declared abduction, under its parents' values in ``data``."""
    n = next(iter(data.values())).shape[0]
    return {v: scm.mechanisms[v].given({p: data[p] for p in scm.parents(v)}, n).abduction for v in scm.nodes}


def floors(scm: SCM, data: Mapping[str, Tensor]) -> dict[str, float]:
    """Each node's declared tolerance floor on its rows in ``data`` (``Conditional.tolerance_floor``)."""
    n = next(iter(data.values())).shape[0]
    return {v: scm.mechanisms[v].given({p: data[p] for p in scm.parents(v)}, n).tolerance_floor(data[v])
            for v in scm.nodes}


def node_tolerances(scm: SCM, data: Mapping[str, Tensor], tolerances: Tolerances) -> dict[str, float]:
    """The tolerance of a comparison at each node: the largest own tolerance of the node and its ancestors."""
    unknown = sorted(set(tolerances.nodes) - set(scm.nodes))
    if unknown:
        raise ValueError(f"tolerances given for unknown node(s) {unknown}; nodes are {list(scm.nodes)}")
    kinds, floor = abductions(scm, data), floors(scm, data)
    own = {}
    for v in scm.nodes:
        if v in tolerances.nodes:
            own[v] = float(tolerances.nodes[v])
        elif kinds[v] is Abduction.APPROXIMATE:
            own[v] = tolerances.approximate
        else:
            own[v] = tolerances.exact if tolerances.exact is not None else float_precision(data[v].dtype)
        own[v] += floor[v] if v not in tolerances.nodes else 0.0
    return {v: max(own[w] for w in nx.ancestors(scm.graph, v) | {v}) for v in scm.nodes}


__all__ = ["Tolerances", "float_precision", "abductions", "floors", "node_tolerances"]
