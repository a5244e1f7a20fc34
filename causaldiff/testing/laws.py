"""The counterfactual laws, each a function that measures and returns :class:`Measurement` s.

Laws (Pearl 2009, ch. 7; Galles & Pearl 1998; Monteiro et al. 2023 for image models), on rows
``data`` of an SCM:

* **effectiveness**: ``do(X = a)`` gives ``X == a`` (counterfactuals and interventional samples);
* **shift effectiveness**: ``do(X = X + d)`` moves ``X`` by exactly ``d``; **callable
  effectiveness**: ``do(X = f(X))`` gives ``f`` of the value ``X`` would have taken;
* **non-descendants**: nodes neither intervened on nor downstream of one come back bit-for-bit;
* **composition**: a null intervention (``X`` set to its own value, shifted by 0, or mapped by the
  identity) returns the factual rows;
* **reversibility**: intervening back to the factual values undoes a counterfactual;
* **round trip**: ``predict(abduct(rows)) == rows`` for every node;
* **idempotence**: ``do(a).do(a) == do(a)`` (a later intervention on a node replaces an earlier
  one, soft ones included); **commutation**: interventions on disjoint nodes commute;
* **batch invariance**: a batch's counterfactuals equal those of its rows one at a time;
* **dtype and shape**: every query returns each node in its own dtype and per-row shape.

Value comparisons use the tolerance of each node (:mod:`.tolerances`); equalities have tolerance 0.
Each ``check_*`` function runs one law and raises :class:`LawViolation` if it fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import networkx as nx
import torch
from torch import Tensor

from ..errors import AbductionError, DataError
from ..frames import from_tabular, is_tabular
from ..interventions import Hard, Shift, Transform, as_intervention
from ..mechanisms.base import Abduction
from ..scm import SCM
from .report import LawReport, Measurement, error, mismatch
from .tolerances import Tolerances, abductions, float_precision, node_tolerances

Rows = Mapping[str, Tensor]
Do = Mapping[str, Any]
Tol = Mapping[str, float]


def describe(do: Do) -> str:
    """``do(x=Hard(1.0), y=Shift(0.5))``: how a query is named in reports."""
    return "do(" + ", ".join(f"{k}={as_intervention(k, v)!r}" for k, v in do.items()) + ")"


def identity(x: Tensor) -> Tensor:
    """The null callable intervention."""
    return x


def law_rows(scm: SCM, data: Any) -> dict[str, Tensor]:
    """The rows a law check runs on: ``{node: tensor}`` for every node, each finite; a DataFrame
    (or a ``(frame, tensors)`` pair) read as the queries read it (:func:`~causaldiff.frames.from_tabular`).
    Anything else is a :class:`~causaldiff.errors.DataError` naming the node, before any law runs."""
    if is_tabular(data):
        data = from_tabular(data, tuple(scm.nodes))[0]
    if not isinstance(data, Mapping):
        raise DataError(f"the law check takes rows as {{node: tensor}} or a DataFrame, got {type(data).__name__}")
    missing = [v for v in scm.nodes if v not in data]
    if missing:
        raise DataError(f"the law check needs a value of every node; the rows lack {missing}")
    rows: dict[str, Tensor] = {}
    for v in scm.nodes:
        x = data[v]
        if not isinstance(x, Tensor) or x.dim() == 0:
            raise DataError(f"node {v!r}: the law check takes a tensor of rows, got {type(x).__name__}")
        bad = ~torch.isfinite(x).reshape(x.shape[0], -1).all(1) if x.is_floating_point() or x.is_complex() else None
        if bad is not None and bool(bad.any()):
            rows_bad = bad.nonzero().flatten().tolist()
            raise DataError(f"node {v!r}: {len(rows_bad)} row(s) hold NaN or inf (rows {rows_bad[:5]}); "
                            "a mechanism that yields non-finite values cannot be checked")
        rows[v] = x
    if len({x.shape[0] for x in rows.values()}) > 1:
        raise DataError(f"the law check's rows differ in length: { {v: x.shape[0] for v, x in rows.items()} }")
    return rows


def _n(rows: Rows) -> int:
    return next(iter(rows.values())).shape[0]


def _values(law: str, query: str, got: Rows, want: Rows, tol: Tol, nodes: Iterable[str]) -> list[Measurement]:
    return [Measurement(law, query, v, error(got[v], want[v]), tol[v]) for v in nodes]


def _equal(law: str, query: str, got: Rows, want: Rows, nodes: Iterable[str]) -> list[Measurement]:
    return [Measurement(law, query, v, mismatch(got[v], want[v]), 0.0, "differs by") for v in nodes]


# ============================================================================ interventions' effect
def effectiveness(scm: SCM, data: Rows, do: Do, *, seed: int = 0) -> list[Measurement]:
    """Hard-intervened nodes take exactly their values, in counterfactuals and in samples."""
    hard = {k: as_intervention(k, v).value for k, v in do.items() if isinstance(as_intervention(k, v), Hard)}
    if not hard:
        return []
    query = describe(do)
    cf = scm.counterfactual(data, do=do, seed=seed)
    drawn = scm.do(do).sample(_n(data), seed=seed)
    out = []
    for what, got in (("counterfactual", cf), ("sample", drawn)):
        want = {k: torch.as_tensor(v, device=got[k].device).expand(got[k].shape) for k, v in hard.items()}
        out += _equal("effectiveness", f"{what} {query}", got, want, hard)
    return out


def soft_effectiveness(scm: SCM, data: Rows, node: str, iv: Shift | Transform, *,
                       seed: int = 0) -> list[Measurement]:
    """``do(node = node + d)`` moves the node by exactly ``d``; ``do(node = f(node))`` gives ``f`` of its
    natural value; in counterfactuals (the natural value is the factual one: its parents are kept)
    and in interventional samples against samples drawn with the same seed."""
    if isinstance(iv, Shift):
        law, expect = "shift effectiveness", (lambda x: x + torch.as_tensor(iv.delta, dtype=x.dtype, device=x.device))
    else:
        law, expect = "callable effectiveness", iv.fn
    query = describe({node: iv})
    cf = scm.counterfactual(data, do={node: iv}, seed=seed)[node]
    natural = scm.sample(_n(data), seed=seed)[node]
    drawn = scm.do({node: iv}).sample(_n(data), seed=seed)[node]
    tol = float_precision(data[node].dtype)
    return [Measurement(law, f"counterfactual {query}", node, error(cf, expect(data[node])), tol),
            Measurement(law, f"sample {query}", node, error(drawn, expect(natural)), tol)]


def non_descendants(scm: SCM, data: Rows, do: Do, *, seed: int = 0) -> list[Measurement]:
    """Nodes neither intervened on nor descending from an intervened node are the factual tensors."""
    affected = set(do).union(*(nx.descendants(scm.graph, v) for v in do))
    cf = scm.counterfactual(data, do=do, seed=seed)
    return _equal("non-descendants", describe(do), cf, data, [v for v in scm.nodes if v not in affected])


# ============================================================================ abduction and prediction
def null_interventions(node: str, data: Rows) -> list[Do]:
    """The interventions on ``node`` that change nothing: its own value, ``Shift(0)``, the identity."""
    return [{node: Hard(data[node])}, {node: Shift(0.0)}, {node: Transform(identity)}]


def composition(scm: SCM, data: Rows, node: str, tol: Tol, *, seed: int = 0) -> list[Measurement]:
    """Every null intervention on ``node`` returns the factual rows."""
    out = []
    for do in null_interventions(node, data):
        cf = scm.counterfactual(data, do=do, seed=seed)
        out += _values("composition", describe(do), cf, data, tol, scm.nodes)
    return out


def reversibility(scm: SCM, data: Rows, do: Do, tol: Tol, *, seed: int = 0,
                  nodes: Iterable[str] | None = None) -> list[Measurement]:
    """Intervening back to the factual values of ``do``'s nodes undoes its counterfactual, on
    ``nodes`` (default: all)."""
    cf = scm.counterfactual(data, do=do, seed=seed)
    back = scm.counterfactual(cf, do={k: data[k] for k in do}, seed=seed)
    return _values("reversibility", f"{describe(do)} and back", back, data, tol, scm.nodes if nodes is None else nodes)


def round_trip(scm: SCM, data: Rows, tol: Tol, *, seed: int = 0) -> list[Measurement]:
    """Pushing the abducted noise through the model returns the rows: ``predict(abduct(x)) == x``."""
    back = scm.predict(scm.abduct(data, seed=seed), seed=seed)
    return _values("round trip", "predict(abduct(rows))", back, data, tol, scm.nodes)


def _row(iv: Any, i: int, n: int) -> Any:
    """Row ``i`` of an intervention whose value (or shift) is given per row."""
    for cls, name in ((Hard, "value"), (Shift, "delta")):
        v = getattr(iv, name, None)
        if isinstance(iv, cls) and isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == n:
            return cls(v[i:i + 1])
    return iv


def batch_invariance(scm: SCM, data: Rows, do: Do, tol: Tol, *, seed: int = 0,
                     nodes: Iterable[str] | None = None) -> list[Measurement]:
    """The counterfactuals and the abducted noise of a batch equal those of its rows taken one at a
    time (abduction too: the engine may evaluate a mechanism on factual and new parents together,
    where a batch-dependent mechanism's dependence can cancel in the counterfactual), on ``nodes``
    (default: all; the noise of stochastically abducted nodes, a draw, is not compared)."""
    n, nodes = _n(data), list(scm.nodes if nodes is None else nodes)
    cf = scm.counterfactual(data, do=do, seed=seed)
    try:  # an SCM with a node that cannot be abducted has no noise to compare
        u = scm.abduct(data, seed=seed)
    except AbductionError:
        u = {}
    rows: dict[str, list[Tensor]] = {v: [] for v in scm.nodes}
    noise: dict[str, list[Tensor]] = {v: [] for v in u}
    for i in range(n):  # a test of the vectorised engine, so one row at a time on purpose
        row = {k: v[i:i + 1] for k, v in data.items()}
        row_do = {k: _row(as_intervention(k, v), i, n) for k, v in do.items()}
        for v, value in scm.counterfactual(row, do=row_do, seed=seed).items():
            rows[v].append(value)
        for v, value in (scm.abduct(row, seed=seed) if u else {}).items():
            noise[v].append(value)
    single = {v: torch.cat(rows[v]) for v in scm.nodes}
    alone = {v: torch.cat(noise[v]) for v in u}
    kinds = abductions(scm, data) if u else {}
    drawn = [v for v in u if v in nodes and kinds[v] is not Abduction.STOCHASTIC]
    return (_values("batch invariance", describe(do), single, cf, tol, nodes)
            + _values("batch invariance", "abduct(rows)", alone, u, tol, drawn))


# ============================================================================ the algebra of do
def _same_model(law: str, query: str, a: SCM, b: SCM, n: int, seed: int) -> list[Measurement]:
    edges = Measurement(law, query, "(graph)", float(set(a.graph.edges) != set(b.graph.edges)), 0.0,
                        "edges differ:")
    return [edges, *_equal(law, query, a.sample(n, seed=seed), b.sample(n, seed=seed), a.nodes)]


def idempotence(scm: SCM, do: Do, *, n: int = 8, seed: int = 0) -> list[Measurement]:
    """``do(a).do(a)`` is the same model as ``do(a)`` (same graph, same samples for a seed)."""
    return _same_model("idempotence", describe(do), scm.do(do), scm.do(do).do(do), n, seed)


def commutation(scm: SCM, do_a: Do, do_b: Do, *, n: int = 8, seed: int = 0) -> list[Measurement]:
    """Interventions on disjoint nodes commute: ``do(a).do(b) == do(b).do(a)``."""
    if set(do_a) & set(do_b):
        raise ValueError("commutation is a law of interventions on disjoint nodes")
    query = f"{describe(do_a)}, {describe(do_b)}"
    return _same_model("commutation", query, scm.do(do_a).do(do_b), scm.do(do_b).do(do_a), n, seed)


# ============================================================================ dtype and shape
def declared_types(scm: SCM, data: Rows) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """Each node's own dtype and per-row shape: what its conditional declares, else what ``data`` holds."""
    n, out = _n(data), {}
    for v in scm.nodes:
        cond = scm.mechanisms[v].given({p: data[p] for p in scm.parents(v)}, n)
        dtype, shape = cond.value_dtype(), cond.event_shape()
        out[v] = (dtype or data[v].dtype, tuple(shape) if shape is not None else tuple(data[v].shape[1:]))
    return out


def _typed(query: str, got: Rows, types: Mapping[str, tuple[torch.dtype, tuple[int, ...]]],
           nodes: Iterable[str], n: int) -> list[Measurement]:
    out = []
    for v in nodes:
        dtype, shape = types[v]
        x = got[v]
        ok = x.dtype == dtype and tuple(x.shape) == (n, *shape)
        detail = "" if ok else (f"returned {str(x.dtype)[6:]} {tuple(x.shape)}, the node's own is "
                                f"{str(dtype)[6:]} (n, *{shape}) ->")
        out.append(Measurement("dtype and shape", query, v, 0.0 if ok else 1.0, 0.0, detail))
    return out


def dtypes(scm: SCM, data: Rows, do: Do | None = None, *, seed: int = 0) -> list[Measurement]:
    """Sampling, the round trip and (with ``do``) the counterfactual and interventional samples return
    every node they compute in the node's own dtype and shape."""
    types, n = declared_types(scm, data), _n(data)
    out = _typed("sample", scm.sample(n, seed=seed), types, scm.nodes, n)
    if do:
        affected = set(do).union(*(nx.descendants(scm.graph, v) for v in do))
        cf = scm.counterfactual(data, do=do, seed=seed)
        out += _typed(f"counterfactual {describe(do)}", cf, types, [v for v in scm.nodes if v in affected], n)
        out += _typed(f"sample {describe(do)}", scm.do(do).sample(n, seed=seed), types, scm.nodes, n)
    return out


def round_trip_dtypes(scm: SCM, data: Rows, *, seed: int = 0) -> list[Measurement]:
    """``predict(abduct(rows))`` returns every node in its own dtype and shape."""
    back = scm.predict(scm.abduct(data, seed=seed), seed=seed)
    return _typed("predict(abduct(rows))", back, declared_types(scm, data), scm.nodes, _n(data))


# ============================================================================ one law, raising
def _run(measure: Callable[..., list[Measurement]], scm: SCM, *args: Any, **kw: Any) -> LawReport:
    return LawReport(order=tuple(scm.nodes)).add(measure(scm, *args, **kw)).raise_if_failed()


def _tol(scm: SCM, data: Rows, tolerances: Tolerances | None) -> dict[str, float]:
    return node_tolerances(scm, data, tolerances or Tolerances())


def check_effectiveness(scm: SCM, data: Rows, do: Do, *, seed: int = 0) -> LawReport:
    return _run(effectiveness, scm, data, do, seed=seed)


def check_shift_effectiveness(scm: SCM, data: Rows, node: str, delta: Any, *, seed: int = 0) -> LawReport:
    return _run(soft_effectiveness, scm, data, node, delta if isinstance(delta, Shift) else Shift(delta), seed=seed)


def check_callable_effectiveness(scm: SCM, data: Rows, node: str, fn: Any, *, seed: int = 0) -> LawReport:
    return _run(soft_effectiveness, scm, data, node, fn if isinstance(fn, Transform) else Transform(fn), seed=seed)


def check_non_descendants(scm: SCM, data: Rows, do: Do, *, seed: int = 0) -> LawReport:
    return _run(non_descendants, scm, data, do, seed=seed)


def check_composition(scm: SCM, data: Rows, node: str, *, tolerances: Tolerances | None = None,
                      seed: int = 0) -> LawReport:
    return _run(composition, scm, data, node, _tol(scm, data, tolerances), seed=seed)


def check_reversibility(scm: SCM, data: Rows, do: Do, *, tolerances: Tolerances | None = None,
                        seed: int = 0) -> LawReport:
    return _run(reversibility, scm, data, do, _tol(scm, data, tolerances), seed=seed)


def check_round_trip(scm: SCM, data: Rows, *, tolerances: Tolerances | None = None, seed: int = 0) -> LawReport:
    return _run(round_trip, scm, data, _tol(scm, data, tolerances), seed=seed)


def check_batch_invariance(scm: SCM, data: Rows, do: Do, *, tolerances: Tolerances | None = None,
                           seed: int = 0) -> LawReport:
    return _run(batch_invariance, scm, data, do, _tol(scm, data, tolerances), seed=seed)


def check_idempotence(scm: SCM, do: Do, *, n: int = 8, seed: int = 0) -> LawReport:
    return _run(idempotence, scm, do, n=n, seed=seed)


def check_commutation(scm: SCM, do_a: Do, do_b: Do, *, n: int = 8, seed: int = 0) -> LawReport:
    return _run(commutation, scm, do_a, do_b, n=n, seed=seed)


def check_dtypes(scm: SCM, data: Rows, do: Do | None = None, *, seed: int = 0) -> LawReport:
    return _run(dtypes, scm, data, do, seed=seed)


__all__ = ["law_rows", "describe", "identity", "null_interventions", "effectiveness", "soft_effectiveness",
           "non_descendants", "composition", "reversibility", "round_trip", "batch_invariance", "idempotence",
           "commutation", "dtypes", "round_trip_dtypes", "declared_types", "check_effectiveness",
           "check_shift_effectiveness", "check_callable_effectiveness", "check_non_descendants",
           "check_composition", "check_reversibility", "check_round_trip", "check_batch_invariance",
           "check_idempotence", "check_commutation", "check_dtypes"]
