"""What a law check measured: one :class:`Measurement` per comparison, gathered in a :class:`LawReport`.

A law's *error* on a node is ``max |a - b| / max(1, |b|)`` over the rows (absolute below 1,
relative above), compared with the node's tolerance; equality laws (effectiveness,
non-descendants, idempotence, commutation, dtype) have tolerance 0 and an error of 0 or more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

#: every law the suite can run, in the order reports list them
LAWS = ("effectiveness", "shift effectiveness", "callable effectiveness", "non-descendants", "composition",
        "reversibility", "round trip", "idempotence", "commutation", "batch invariance", "dtype and shape")


@dataclass(frozen=True)
class Measurement:
    """One comparison: ``law`` under ``query`` on ``node`` measured ``error`` against ``tolerance``."""

    law: str
    query: str
    node: str
    error: float
    tolerance: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.error <= self.tolerance

    def describe(self) -> str:
        what = f"{self.law}: node {self.node!r} under {self.query}"
        return f"{what}: {self.detail or 'error'} {self.error:.3g} > tolerance {self.tolerance:.3g}"


def error(a: Tensor, b: Tensor) -> float:
    """``max |a - b| / max(1, |b|)`` in float64 (``inf`` if the values cannot be compared)."""
    if a.numel() != b.numel():
        return float("inf")
    if a.numel() == 0:
        return 0.0
    a, b = a.detach().reshape(-1).double().cpu(), b.detach().reshape(-1).double().cpu()
    return float(((a - b).abs() / b.abs().clamp_min(1.0)).max())


def mismatch(a: Tensor, b: Tensor) -> float:
    """0 if ``a`` and ``b`` are bit-for-bit equal in value, else the error between them (or 1)."""
    if a.numel() == b.numel() and torch.equal(a.reshape(-1).cpu(), b.reshape(-1).to(a.dtype).cpu()):
        return 0.0
    e = error(a, b)
    return e if e > 0 else 1.0


class LawViolation(AssertionError):
    """A counterfactual law does not hold; the message names the law, the node and the query.
    ``report`` holds every measurement of the run (passing ones included)."""

    def __init__(self, message: str, report: "LawReport | None" = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class LawReport:
    """Every measurement a law run made; printed, one line per law with its largest error, or, for
    a failing law, its culprit: the first failing node in topological order (a node downstream
    of a broken mechanism fails too, often by more, as a symptom)."""

    measurements: list[Measurement] = field(default_factory=list)
    #: queries the run could not make, and why (e.g. a node that cannot be abducted)
    skipped: list[str] = field(default_factory=list)
    #: the SCM's nodes in topological order (failures are named in this order)
    order: tuple[str, ...] = ()
    #: what the reader should know about the tolerances (e.g. a latent node's floor)
    notes: list[str] = field(default_factory=list)

    def add(self, ms: Iterable[Measurement]) -> "LawReport":
        self.measurements.extend(ms)
        return self

    @property
    def laws(self) -> list[str]:
        seen = set(m.law for m in self.measurements)
        return [law for law in LAWS if law in seen] + sorted(seen - set(LAWS))

    @property
    def failed(self) -> set[str]:
        """The laws with at least one measurement over its tolerance."""
        return {m.law for m in self.measurements if not m.ok}

    @property
    def checked(self) -> list[str]:
        """One entry per (law, query) checked, e.g. ``"composition do(x=Shift(0.0))"``."""
        return list(dict.fromkeys(f"{m.law} {m.query}" for m in self.measurements))

    def _rank(self, m: Measurement) -> int:
        """The position of the measured node in topological order (after every node if not a node)."""
        return self.order.index(m.node) if m.node in self.order else len(self.order)

    def worst(self, law: str) -> Measurement:
        """The measurement of ``law`` nearest to its tolerance, or, if the law fails, the failing
        one of the first node in topological order (the culprit; the furthest over among its own)."""
        ms = [m for m in self.measurements if m.law == law]
        bad = [m for m in ms if not m.ok]
        if bad:
            return min(bad, key=lambda m: (self._rank(m), -_ratio(m)))
        return max(ms, key=_ratio)

    def rows(self) -> list[dict[str, object]]:
        """Per law: checks, largest error, its tolerance, node and query, ok (for JSON reports)."""
        out = []
        for law in self.laws:
            w = self.worst(law)
            n = sum(m.law == law for m in self.measurements)
            out.append({"law": law, "checks": n, "max_error": w.error, "tolerance": w.tolerance,
                        "node": w.node, "query": w.query, "ok": law not in self.failed})
        return out

    def raise_if_failed(self) -> "LawReport":
        bad = sorted((m for m in self.measurements if not m.ok), key=self._rank)  # culprits first
        if bad:
            lines = [m.describe() for m in bad[:5]] + ([f"... and {len(bad) - 5} more"] if len(bad) > 5 else [])
            raise LawViolation("\n".join(lines) + f"\n{self!r}", self)
        return self

    def __repr__(self) -> str:
        rows = self.rows()
        head = f"LawReport({len(rows)} laws, {len(self.measurements)} checks, " \
               f"{'all passed' if not self.failed else 'failed: ' + ', '.join(sorted(self.failed))})"
        lines = [f"  {'ok  ' if r['ok'] else 'FAIL'} {r['law']:<22} {r['checks']:>4} checks  max error "
                 f"{r['max_error']:.3g} (tolerance {r['tolerance']:.3g}; node {r['node']!r}, {r['query']})"
                 for r in rows]
        return "\n".join([head, *lines, *(f"  skipped {s}" for s in self.skipped),
                          *(f"  note: {s}" for s in self.notes)])


def _ratio(m: Measurement) -> float:
    return m.error / m.tolerance if m.tolerance else m.error


__all__ = ["LAWS", "Measurement", "LawReport", "LawViolation", "error", "mismatch"]
