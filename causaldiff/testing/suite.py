"""``check_counterfactual_laws(scm)``: every law, on rows of the model, with hard and soft interventions.

Each node is intervened on with another row's value (hard), ``Shift(shift)`` and ``0.5 v + 0.25``
(continuous nodes) or the rows reversed (discrete ones), plus the caller's interventions; the laws
of :mod:`.laws` are gathered in one :class:`LawReport`, raised as :class:`LawViolation` if one fails.
Reversibility and batch invariance are measured where no stochastically abducted node lies
upstream; queries through a node that cannot be abducted are skipped and listed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx
import torch
from torch import Tensor

from ..interventions import Hard, Shift, Transform, as_intervention
from ..mechanisms.base import Abduction
from ..scm import SCM
from . import laws as measure
from .report import LAWS, LawReport
from .tolerances import Tolerances, abductions, floors, node_tolerances




def halve(x: Tensor) -> Tensor:
    """The suite's callable intervention on continuous nodes: ``0.5 x + 0.25`` (keeps (0, 1) and (0, inf))."""
    return 0.5 * x + 0.25


def reverse_rows(x: Tensor) -> Tensor:
    """The suite's callable intervention on discrete nodes: another row's value (stays in support)."""
    return x.flip(0)


def is_discrete(scm: SCM, data: Mapping[str, Tensor], node: str) -> bool:
    """Whether a node's values are discrete (integer dtype or a discrete support)."""
    if not data[node].is_floating_point():
        return True
    cond = scm.mechanisms[node].given({p: data[p] for p in scm.parents(node)}, data[node].shape[0])
    support = cond.support()
    return bool(support is not None and support.is_discrete)


def node_interventions(scm: SCM, data: Mapping[str, Tensor], node: str, perm: Tensor,
                       shift: float) -> dict[str, Any]:
    """The suite's hard, shift and callable interventions on ``node`` (no shift on discrete nodes)."""
    if is_discrete(scm, data, node):
        return {"hard": Hard(data[node][perm]), "callable": Transform(reverse_rows)}
    return {"hard": Hard(data[node][perm]), "shift": Shift(shift), "callable": Transform(halve)}


class Memo:
    """The SCM as the laws of one run see it: a query repeated with the same rows, interventions and
    seed (the laws share them) is computed once. Everything else goes to the SCM itself."""

    def __init__(self, scm: Any, cache: dict[tuple, tuple] | None = None) -> None:
        self.scm, self._cache = scm, {} if cache is None else cache

    def _once(self, key: tuple, keep: Any, compute: Any) -> Any:
        if key not in self._cache:  # ``keep`` holds the keyed objects, so their ids stay theirs
            self._cache[key] = (compute(), keep)
        return self._cache[key][0]

    def counterfactual(self, rows: Mapping[str, Tensor], do: Mapping[str, Any], *, seed: int | None = None) -> Any:
        key = ("counterfactual", id(self.scm), id(rows), seed, tuple((k, id(v)) for k, v in do.items()))
        return self._once(key, (rows, do), lambda: self.scm.counterfactual(rows, do, seed=seed))

    def sample(self, n: int, *, seed: int | None = None) -> Any:
        return self._once(("sample", id(self.scm), n, seed), None, lambda: self.scm.sample(n, seed=seed))

    def do(self, ivs: Mapping[str, Any]) -> "Memo":
        key = ("do", id(self.scm), tuple((k, id(v)) for k, v in ivs.items()))
        return self._once(key, ivs, lambda: Memo(self.scm.do(ivs), self._cache))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scm, name)


class _Run:
    """One run of the suite: the rows, tolerances and what the SCM's abductions allow."""

    def __init__(self, scm: SCM, data: Mapping[str, Tensor], tolerances: Tolerances, seed: int,
                 selected: Sequence[str]) -> None:
        unknown = sorted(set(selected) - set(LAWS))
        if unknown:
            raise ValueError(f"unknown law(s) {unknown}; the laws are {list(LAWS)}")
        self.scm, self.data, self.seed, self.selected = Memo(scm), data, seed, set(selected)
        self.n = next(iter(data.values())).shape[0]
        self.tol = node_tolerances(scm, data, tolerances)
        kinds = abductions(scm, data)
        carried = scm.interventions
        self.blocked = {v for v in scm.nodes if kinds[v] is Abduction.IMPOSSIBLE or (
            v in carried and not carried[v].cuts_edges and not carried[v].invertible)}
        self.stochastic = {v for v, k in kinds.items() if k is Abduction.STOCHASTIC}
        self.report = LawReport(order=tuple(scm.nodes))
        self.report.notes += [f"node {v!r}: its tolerance includes a floor of {f:.3g}, its autoencoder's "
                              "reconstruction error on these rows (a latent node gives back no image closer than that)"
                              for v, f in floors(scm, data).items() if f > 0]
        if self.stochastic and self.selected & {"reversibility", "batch invariance"}:
            self.report.skipped.append(
                f"reversibility and batch invariance: node(s) {sorted(self.stochastic)} are abducted stochastically; "
                "not measured on the nodes a query recomputes from such a node (the node and its descendants)")

    def want(self, law: str) -> bool:
        return law in self.selected

    def abductable(self, do: Mapping[str, Any]) -> bool:
        """Whether a counterfactual under ``do`` abducts only nodes that can be abducted (else: skipped)."""
        changed = set(do).union(*(nx.descendants(self.scm.graph, v) for v in do))
        hard = {k for k, v in do.items() if as_intervention(k, v).cuts_edges}
        bad = sorted((changed - hard) & self.blocked)
        if bad:
            self.report.skipped.append(f"counterfactuals {measure.describe(do)}: node(s) {bad} cannot be abducted")
        return not bad

    def settled(self, do: Mapping[str, Any]) -> list[str]:
        """The nodes whose counterfactual under ``do`` depends on no stochastic abduction: not a
        stochastic node the query recomputes (a hard-intervened one is set) nor downstream of one."""
        graph = self.scm.graph
        hard = {k for k, v in do.items() if as_intervention(k, v).cuts_edges}
        recomputed = set(do).union(*(nx.descendants(graph, v) for v in do)) - hard
        drawn = recomputed & self.stochastic
        unsettled = drawn.union(*(nx.descendants(graph, v) for v in drawn))
        return [v for v in self.scm.nodes if v not in unsettled]

    def counterfactual_laws(self, do: Mapping[str, Any], row_wise: bool = True) -> None:
        """The laws every counterfactual query obeys, on one intervention (``row_wise``: each row's value
        depends on that row only, so batch invariance applies)."""
        scm, data, seed = self.scm, self.data, self.seed
        if self.want("idempotence"):
            self.report.add(measure.idempotence(scm, do, n=self.n, seed=seed))
        if not self.abductable(do):
            return
        if self.want("effectiveness"):
            self.report.add(measure.effectiveness(scm, data, do, seed=seed))
        if self.want("non-descendants"):
            self.report.add(measure.non_descendants(scm, data, do, seed=seed))
        if self.want("dtype and shape"):
            self.report.add(measure.dtypes(scm, data, do, seed=seed))
        settled = self.settled(do)
        if settled and self.want("reversibility"):
            self.report.add(measure.reversibility(scm, data, do, self.tol, seed=seed, nodes=settled))
        if settled and row_wise and self.want("batch invariance"):
            self.report.add(measure.batch_invariance(scm, data, do, self.tol, seed=seed, nodes=settled))

    def node_laws(self, node: str, ivs: Mapping[str, Any]) -> None:
        """Every law on one node: its hard, shift and callable interventions, and its null ones."""
        scm, data, seed = self.scm, self.data, self.seed
        for iv in ivs.values():
            self.counterfactual_laws({node: iv}, row_wise=getattr(iv, "fn", None) is not reverse_rows)
        if not self.abductable({node: ivs["hard"]}):
            return
        for kind in ("shift", "callable"):
            if kind in ivs and self.want(f"{kind} effectiveness"):
                self.report.add(measure.soft_effectiveness(scm, data, node, ivs[kind], seed=seed))
        if self.want("composition"):
            self.report.add(measure.composition(scm, data, node, self.tol, seed=seed))

    def commutation(self, a: Mapping[str, Any], b: Mapping[str, Any], names: tuple[str, str]) -> None:
        """Hard with hard, soft with hard, soft with soft, on two distinct nodes."""
        soft_a, soft_b = (ivs.get("shift", ivs["callable"]) for ivs in (a, b))
        u, v = names
        for x, y in ((a["hard"], b["hard"]), (soft_a, b["hard"]), (soft_a, soft_b)):
            self.report.add(measure.commutation(self.scm, {u: x}, {v: y}, n=self.n, seed=self.seed))

    def round_trip(self) -> None:
        """The round trip and its dtypes, if every node can be abducted."""
        if self.blocked:
            self.report.skipped.append(f"round trip: node(s) {sorted(self.blocked)} cannot be abducted")
            return
        if self.want("round trip"):
            self.report.add(measure.round_trip(self.scm, self.data, self.tol, seed=self.seed))
        if self.want("dtype and shape"):
            self.report.add(measure.round_trip_dtypes(self.scm, self.data, seed=self.seed))


def check_counterfactual_laws(scm: SCM, data: Mapping[str, Tensor] | None = None, *, n: int = 8, seed: int = 0,
                              tolerances: Tolerances | None = None, shift: float = 0.5,
                              interventions: Sequence[Mapping[str, Any]] = (),
                              laws: Sequence[str] = LAWS, batch_invariance: bool = True,
                              atol: float | None = None, rtol: float | None = None) -> LawReport:
    """Check every law on ``scm`` (on ``data``, default rows sampled from it) and return the report of
    each law's largest error and its tolerance; raise :class:`LawViolation` if a law fails.
    ``tolerances``: per node (:class:`Tolerances`); ``atol`` / ``rtol``: one for every node (their
    maximum); ``interventions``: further ``do`` mappings to check."""
    if atol is not None or rtol is not None:
        t = max(atol or 0.0, rtol or 0.0)
        tolerances = Tolerances(exact=t, approximate=t)
    data = measure.law_rows(scm, scm.sample(n, seed=seed) if data is None else data)
    run = _Run(scm, data, tolerances or Tolerances(), seed,
               [law for law in laws if batch_invariance or law != "batch invariance"])
    perm = torch.randperm(run.n, generator=torch.Generator().manual_seed(seed)).to(next(iter(data.values())).device)
    ivs = {v: node_interventions(scm, data, v, perm, shift) for v in scm.nodes}
    for v in scm.nodes:
        run.node_laws(v, ivs[v])
    nodes = list(scm.nodes)
    if run.want("commutation"):
        for a, b in zip(nodes, nodes[1:]):
            run.commutation(ivs[a], ivs[b], (a, b))
    if len(nodes) > 1:
        run.counterfactual_laws({nodes[0]: ivs[nodes[0]]["hard"], nodes[-1]: ivs[nodes[-1]]["hard"]})
    for do in interventions:
        run.counterfactual_laws(do)
    run.round_trip()
    return run.report.raise_if_failed()


__all__ = ["LAWS", "check_counterfactual_laws", "halve", "reverse_rows", "is_discrete", "node_interventions"]
