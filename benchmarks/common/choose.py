"""The main ``(abduction fraction, guidance scale)`` of an image benchmark, by a rule fixed before
any run, over a sweep ``{(fraction, scale): figures}``:

* ``rule="cld"`` (Diff-SCM on MNIST): among the pairs whose ``effectiveness`` reaches ``effective``,
  the lowest ``CLD`` mean; else the most effective pair (ties: the lower CLD);
* ``rule="rank"`` (Morpho-MNIST): the best mean rank over the figures of ``ranked``
  (``{name: 1.0}`` lower is better, ``{name: -1.0}`` higher is better).

Ties go to the smaller fraction, then the smaller scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

#: the effectiveness the ``cld`` rule asks for (the acceptance bar of the MNIST benchmark)
EFFECTIVE = 0.9

Pair = tuple[float, float]


def _lowest_cld_effective(sweep: Mapping[Pair, Mapping[str, Any]], effective: float) -> Pair:
    pairs = sorted(sweep)
    cld = {p: sweep[p]["CLD"]["mean"] for p in pairs}
    eff = {p: sweep[p]["effectiveness"] for p in pairs}
    ok = [p for p in pairs if eff[p] >= effective]
    if ok:
        return min(ok, key=lambda p: cld[p])
    return max(pairs, key=lambda p: (eff[p], -cld[p]))


def _best_mean_rank(sweep: Mapping[Pair, Mapping[str, float]], ranked: Mapping[str, float]) -> Pair:
    pairs = sorted(sweep)
    ranks = {p: 0.0 for p in pairs}
    for key, sign in ranked.items():
        for rank, p in enumerate(sorted(pairs, key=lambda p: (sign * sweep[p][key], p))):
            ranks[p] += rank
    return min(pairs, key=lambda p: (ranks[p], p))


def choose_main(sweep: Mapping[Pair, Mapping[str, Any]], rule: Literal["cld", "rank"], *,
                effective: float = EFFECTIVE, ranked: Mapping[str, float] | None = None) -> Pair:
    """The main pair of ``sweep`` by ``rule`` (module docstring)."""
    if not sweep:
        raise ValueError("choose_main: the sweep is empty")
    if rule == "cld":
        return _lowest_cld_effective(sweep, effective)
    if rule == "rank":
        if not ranked:
            raise ValueError("choose_main(rule='rank') needs the figures to rank: ranked={name: +1 or -1}")
        return _best_mean_rank(sweep, ranked)
    raise ValueError(f"choose_main: unknown rule {rule!r}; rules: 'cld', 'rank'")


__all__ = ["EFFECTIVE", "choose_main"]
