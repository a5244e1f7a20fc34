"""The DCM "ladder" SCM (Chao et al., TMLR 2024): 10 nodes of 3 dimensions, random one-hidden-layer
mechanisms.

Edges 1->2, 1->3, 2->4, 3->4, 3->5, 4->6, 5->6, 5->7, 6->8, 7->8, 7->9, 8->10, 9->10: two rails
(odd and even nodes) joined by the rungs ``x(2k-1) -> x(2k)``. Each non-root node draws
``W1_i ~ U(-1, 1)^{16 x (d_in + o)}``, ``W2_i ~ U(-1, 1)^{3 x 16}`` (``d_in = 3 * #parents``, ``o = 1``
for the non-additive kind) from ``seed``; with ``pa`` the parents concatenated in numeric order and
``u_i ~ N(0, I_3)``:

* nonlinear (additive noise):  ``x_i = 0.75 * W2_i silu(W1_i pa) + u_i``
* nonadditive:                 ``x_i[j] = 0.75 * (W2_i silu(W1_i [u_i[j], pa]))[j]``, j = 1..3

The root ``x1 = u1``; ``x1`` and ``x2`` are the intervention nodes. The data set is
``TabularSCM(name="ladder-<kind>", mechanism_seed=seed)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .structural import KINDS, Equation, StructuralEquations, root_equation

LADDER_SUPER_EDGES: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 3), (2, 4), (3, 4), (3, 5), (4, 6), (5, 6), (5, 7), (6, 8), (7, 8), (7, 9),
    (8, 10), (9, 10))
LADDER_DIM = 3
LADDER_HIDDEN = 16
LADDER_OUT_SCALE = 0.75


def _ladder_equation(kind: str, parents: tuple[str, ...], w1: Tensor, w2: Tensor) -> Equation:
    """The mechanism of one ladder node; ``parents`` in numeric order."""

    def equation(p: Mapping[str, Tensor], u: Tensor) -> Tensor:
        pa = torch.cat([p[name] for name in parents], dim=-1)  # (n, 3 * #parents)
        a, b = w1.to(pa), w2.to(pa)
        if kind == "nonlinear":
            return LADDER_OUT_SCALE * torch.nn.functional.silu(pa @ a.T) @ b.T + u
        # nonadditive: each coordinate j has its own network input [u_j, pa] and reads output j.
        n = pa.shape[0]
        inp = torch.cat([u.unsqueeze(-1), pa.unsqueeze(1).expand(n, LADDER_DIM, pa.shape[-1])],
                        dim=-1)  # (n, 3, 1 + d_in)
        out = LADDER_OUT_SCALE * torch.nn.functional.silu(inp @ a.T) @ b.T  # (n, 3, 3)
        return torch.diagonal(out, dim1=-2, dim2=-1)

    return equation


def ladder_equations(kind: str = "nonlinear", seed: int = 0) -> StructuralEquations:
    """The ladder SCM of DCM with mechanisms drawn from ``seed``; see the module docstring."""
    if kind not in KINDS:
        raise ValueError(f"ladder kind must be one of {KINDS}, got {kind!r}")
    gen = torch.Generator().manual_seed(int(seed))
    nodes = tuple(f"x{i}" for i in range(1, 11))
    edges = tuple((f"x{a}", f"x{b}") for a, b in LADDER_SUPER_EDGES)
    offset = 1 if kind == "nonadditive" else 0
    equations: dict[str, Equation] = {}
    for i in range(1, 11):
        parents = tuple(f"x{a}" for a, b in LADDER_SUPER_EDGES if b == i)
        if not parents:
            equations[f"x{i}"] = root_equation
            continue
        d_in = LADDER_DIM * len(parents)
        w1 = torch.rand((LADDER_HIDDEN, d_in + offset), generator=gen, dtype=torch.float64) * 2 - 1
        w2 = torch.rand((LADDER_DIM, LADDER_HIDDEN), generator=gen, dtype=torch.float64) * 2 - 1
        equations[f"x{i}"] = _ladder_equation(kind, parents, w1, w2)
    return StructuralEquations(name=f"ladder-{kind}", graph_name="ladder", kind=kind, nodes=nodes,
                               edges=edges, equations=equations,
                               event_shapes={v: (LADDER_DIM,) for v in nodes},
                               intervention_nodes=("x1", "x2"))


__all__ = ["LADDER_SUPER_EDGES", "LADDER_DIM", "LADDER_HIDDEN", "LADDER_OUT_SCALE", "ladder_equations"]
