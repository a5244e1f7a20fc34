"""The four queries, one entry each: :func:`sample`, :func:`predict`, :func:`abduct` and
:func:`counterfactual` validate their arguments, plan (:mod:`causaldiff.engine`) and run the plan
over chunks of rows (:mod:`causaldiff.chunking`), without autograd. :class:`~causaldiff.SCM`'s
methods parse ``do`` and delegate here.

Every check runs before any work, in one order: seed and ``batch_size``, the interventions (parsed
by the caller), each column of the rows once (type, batch, dtype, device, finiteness, the bounds of
:mod:`causaldiff.limits`), fitted mechanisms, then the rows of each node against its conditional
(shape, support, abduction). In a counterfactual a node whose set-up is cheap (a Pyro callable)
may leave its checks to its counterfactual step, as long as no node before it has checked upfront
(:func:`~causaldiff.engine.precheck_counterfactual`). Torch's argument validation of distributions
is left as the caller set it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import chunking, engine
from .chunking import check_batch_size
from .errors import DataError, DivergenceError
from .interventions import Intervention
from .validation import all_finite, check_count, check_rows, check_seed

Columns = Mapping[str, Tensor]


def sample(s: engine.Structure, n: Any, *, seed: Any = None, batch_size: Any = None) -> dict[str, Tensor]:
    """``n`` draws from the (intervened) model."""
    seed, batch_size = check_seed(seed), check_batch_size(batch_size)
    n = check_count("n", n, batch_size)
    engine.require_fitted(s, s.order)
    with torch.no_grad():
        out = chunking.execute(engine.plan_sample(s), n, batch_size=batch_size, seed=seed, desc="sample")
    return check_outputs(out, s.order, "sample")


def predict(s: engine.Structure, noise: Any, ivs: Mapping[str, Intervention], *, seed: Any = None,
            batch_size: Any = None) -> tuple[dict[str, Tensor], engine.Plan]:
    """Every node recomputed from the given exogenous ``noise`` under ``ivs``; with the plan."""
    seed, batch_size = check_seed(seed), check_batch_size(batch_size)
    plan = engine.plan_predict(s, ivs)
    if not isinstance(noise, Mapping):
        raise DataError(f"noise must be a dict of node name -> tensor, got {type(noise).__name__}")
    need = tuple(v for v in s.order if not plan.target.is_hard(v))
    u, n = check_columns(s, noise, need, "the noise", batch_size, cast=False)
    check_noise(u, "the noise")
    engine.require_fitted(plan.target, s.order)
    with torch.no_grad():
        out = chunking.execute(plan, n, noise=u, batch_size=batch_size, seed=seed, desc="predict")
    return check_outputs(out, s.order, "predict"), plan


def abduct(s: engine.Structure, data: Any, *, seed: Any = None, batch_size: Any = None) -> dict[str, Tensor]:
    """Exogenous noise of every (non hard-intervened) node given observed rows."""
    seed, batch_size = check_seed(seed), check_batch_size(batch_size)
    rows, n = check_columns(s, data, None, "the observed rows", batch_size)
    nodes = engine.plan_abduct(s).abduct
    conds = engine.Conditionals(s, rows, n)
    engine.require_fitted(s, nodes)
    engine.check_observed(conds, rows, nodes, "the observed rows")
    engine.precheck_abduction(s, conds, nodes)
    with torch.no_grad():
        return check_outputs(chunking.abduct(s, conds, rows, nodes, n, batch_size=batch_size, seed=seed), nodes,
                             "abduct")


def counterfactual(s: engine.Structure, factual: Any, ivs: Mapping[str, Intervention], *, seed: Any = None,
                   batch_size: Any = None) -> dict[str, Tensor]:
    """What each factual row would have been under ``ivs`` (Pearl's three steps)."""
    seed, batch_size = check_seed(seed), check_batch_size(batch_size)
    device = s.device
    rows, n = check_columns(s, factual, None, "the factual rows", batch_size, device)
    plan = engine.plan_counterfactual(s, ivs)
    conds = engine.Conditionals(s, rows, n)
    engine.require_fitted(plan.target, plan.recompute)
    engine.require_fitted(s, plan.abduct)
    abducted = set(plan.abduct)
    engine.check_observed(conds, rows, [v for v in s.order if not s.is_hard(v) and v not in abducted],
                          "the factual rows")
    engine.precheck_counterfactual(conds, rows, plan.abduct, "the factual rows")
    for node, iv in ivs.items():
        if iv.cuts_edges:
            engine.check_hard_support(s, node, iv, rows, n)
    with torch.no_grad():
        out = chunking.execute(plan, n, rows=rows, factual=conds, batch_size=batch_size, seed=seed,
                               desc="counterfactual", device=device)
    return check_outputs(out, plan.recompute, "counterfactual")


# ==================================================================================== the rows
def check_columns(s: engine.Structure, rows: Any, need: tuple[str, ...] | None, what: str,
                  batch_size: int | None = None, device: torch.device | None = None,
                  cast: bool = True) -> tuple[dict[str, Tensor], int]:
    """Validate each column once (type, batch, dtype, device, finiteness, the row bounds of
    :mod:`causaldiff.limits`) and move it to ``device`` (default: the mechanisms'); with the number
    of rows. ``cast``: the columns are the nodes' values (not noise): :func:`in_node_dtype`."""
    if not isinstance(rows, Mapping):
        raise DataError(f"{what} must be a dict of node name -> tensor or a pandas DataFrame, "
                        f"got {type(rows).__name__}")
    if not rows.keys() <= s.mechanisms.keys():
        unknown = next(k for k in rows if k not in s.mechanisms)
        raise DataError(f"unknown node {unknown!r} in {what}; the SCM's nodes are {list(s.order)}")
    missing = [k for k in (s.order if need is None else need) if k not in rows]
    if missing:
        raise DataError(f"{what} lacks node(s) {missing}")
    out, n, device = {}, None, device or s.device
    for k in s.order:
        if k in rows:
            out[k] = v = as_column(k, rows[k], what, device)
            if cast and (k in getattr(rows, "categorical", ()) or not v.is_floating_point()):
                out[k] = v = in_node_dtype(s, k, v, out, rows, what)
            n = v.shape[0] if n is None else n
            if v.shape[0] != n:
                raise DataError(f"node {k!r} in {what}: batch size {v.shape[0]} differs from {n}")
    if not n:
        raise DataError(f"{what} is an empty batch")
    check_rows(f"the number of rows in {what}", n, batch_size)
    bad = first_non_finite(out)
    if bad is not None:
        raise DataError(f"node {bad!r} in {what}: contains NaN or Inf")
    return out, n


def as_column(node: str, v: Any, what: str, device: torch.device) -> Tensor:
    """One node's column as a batch-first tensor on ``device`` (refused naming the node)."""
    if not isinstance(v, Tensor):
        if isinstance(v, np.ndarray) and not v.flags.writeable:
            v = v.copy()  # torch warns on a read-only array; the copy is the one the query reads
        try:
            v = torch.as_tensor(v)
        except Exception as e:
            raise DataError(f"node {node!r} in {what}: cannot convert {type(v).__name__} to a tensor") from e
    if v.dim() == 0:
        raise DataError(f"node {node!r} in {what}: expected a batch of shape (n, ...), got a scalar")
    if v.dtype == torch.bool or v.is_complex():
        raise DataError(f"node {node!r} in {what}: unsupported dtype {v.dtype}")
    if v.device.type == "meta":
        raise DataError(f"node {node!r} in {what}: a tensor on the meta device holds no values")
    if v.device == device:
        return v
    try:
        return v.to(device)
    except (RuntimeError, NotImplementedError) as e:
        raise DataError(f"node {node!r} in {what}: cannot move it from {v.device} to {device}: {e}") from None


def in_node_dtype(s: engine.Structure, node: str, v: Tensor, values: Columns, rows: Any, what: str) -> Tensor:
    """Integer rows of a node whose values are floating (a continuous or Bernoulli node) cast to
    its dtype (torch would compute on them as integers); a pandas Categorical column on such a node
    is refused (its codes are no measurement). The dtype is the node's conditional's, given its
    parents' first row; a node whose conditional cannot say keeps its rows."""
    try:
        dtype = s.mechanisms[node].given({p: values[p][:1] for p in s.base_parents[node]}, 1).value_dtype()
    except Exception:  # noqa: BLE001  (the node's own checks refuse what it cannot take)
        return v
    if dtype is None or not dtype.is_floating_point:
        return v
    if node in getattr(rows, "categorical", ()):
        raise DataError(f"node {node!r} in {what}: a pandas Categorical column on a node of {dtype} values; "
                        "give its values as numbers")
    return v.to(dtype)


def check_noise(noise: Columns, what: str) -> None:
    """Exogenous noise is real-valued: integer columns are refused (naming the node)."""
    for k, v in noise.items():
        if not v.is_floating_point():
            raise DataError(f"node {k!r} in {what}: noise must be floating point, got {v.dtype}")


def check_outputs(values: dict[str, Tensor], nodes: tuple[str, ...], query: str) -> dict[str, Tensor]:
    """``values``, refused with :class:`~causaldiff.errors.DivergenceError` naming the first of
    ``nodes`` (the computed ones, in topological order) holding NaN or Inf: its mechanism produced
    them from finite inputs. One reduction over all of them for small batches."""
    bad = first_non_finite({k: values[k] for k in nodes if k in values})
    if bad is not None:
        v = values[bad]
        rows = int((~torch.isfinite(v.reshape(v.shape[0], -1))).any(1).sum())
        raise DivergenceError(f"node {bad!r}: {rows} row(s) hold NaN or Inf after {query}: its mechanism produced "
                              "them from finite parents and noise")
    return values


def first_non_finite(columns: Columns) -> str | None:
    """The first column holding NaN or Inf, or None: for small batches one check of all columns at
    once, else (or when it fails) one per column."""
    floating = {k: v for k, v in columns.items() if v.is_floating_point()}
    flat = [v if v.dim() == 1 else v.reshape(-1) for v in floating.values()]
    if flat and sum(v.numel() for v in flat) <= 4096 and len({v.device for v in flat}) == 1 and \
            all_finite(torch.cat(flat)):  # float dtypes promote to the widest: an inf stays one
        return None
    return next((k for k, v in floating.items() if not all_finite(v)), None)


__all__ = ["sample", "predict", "abduct", "counterfactual", "check_columns", "as_column", "check_noise",
           "check_outputs", "first_non_finite", "in_node_dtype"]
