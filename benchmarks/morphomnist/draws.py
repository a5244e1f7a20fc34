"""The benchmark's rule for drawing intervention values (Melistas et al. 2024).

counterfactual-benchmark, commit 581dbb4: ``counterfactual_benchmark/datasets/morphomnist/dataset.py``
(``possible_values``, ``bins``) and ``counterfactual_benchmark/methods/deepscm/evaluate.py``
(``different_value``, ``produce_counterfactuals(force_change=True)``, called by
``evaluate_effectiveness`` with the **test** set's values and bins):

* the candidates are the split's unique min-max scaled values (float32, :func:`.scaling.scale`);
* the 9 cut points are the float32 means of the scaled values falling in each bin of
  ``np.digitize(values, np.linspace(-1, 1, 10))`` (bins 1..9), so they make 10 regions;
* a candidate's region is ``np.digitize(candidate, cuts)`` (a value on a cut goes *above* it), the
  factual's is ``np.searchsorted(cuts, factual)`` (a value on a cut goes *below* it); the value is
  drawn uniformly among the candidates whose region differs from the factual's.  The two sides
  differ only for a value lying exactly on a cut: in the published test split the thickest image is
  alone in the last bin, so it is its own cut, and its own value can be drawn for it (kept as the
  benchmark does);
* digit: uniformly among the nine other classes.

Vectorised over the factual rows; randomness from an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import published
from .scaling import scale

#: the bins whose means are the cut points
BIN_EDGES = np.linspace(-1, 1, 10)
#: number of digit classes
NUM_DIGITS = 10


@dataclass(frozen=True)
class DrawRule:
    """The candidates (sorted unique scaled float32 values, with one raw value each) and cuts."""

    node: str
    values: np.ndarray
    raw: np.ndarray
    cuts: np.ndarray

    @classmethod
    def from_values(cls, node: str, raw: np.ndarray) -> "DrawRule":
        """The rule of a split whose (unscaled, float32) values of ``node`` are ``raw``."""
        raw = np.asarray(raw, dtype=np.float32)
        return cls.from_scaled(node, scale(node, raw), raw)

    @classmethod
    def from_scaled(cls, node: str, scaled: np.ndarray, raw: np.ndarray) -> "DrawRule":
        """The rule of scaled float32 values ``scaled`` (``raw``: their unscaled values)."""
        scaled = np.asarray(scaled, dtype=np.float32)
        which = np.digitize(scaled, BIN_EDGES)
        empty = [k for k in range(1, len(BIN_EDGES)) if not (which == k).any()]
        if empty:
            raise ValueError(f"{node}: no value in the bin(s) {empty} of linspace(-1, 1, 10): "
                             "their means, the cut points, are undefined")
        cuts = np.array([scaled[which == k].mean() for k in range(1, len(BIN_EDGES))])
        values, first = np.unique(scaled, return_index=True)
        return cls(node, values, raw[first], cuts)

    def candidate_region(self, scaled: np.ndarray) -> np.ndarray:
        """Region of candidate values (``np.digitize``: a value on a cut goes above it)."""
        return np.digitize(scaled, self.cuts)

    def factual_region(self, scaled: np.ndarray) -> np.ndarray:
        """Region of factual values (``np.searchsorted``: a value on a cut goes below it)."""
        return np.searchsorted(self.cuts, scaled)

    def draw(self, factual_scaled: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Index into :attr:`values` (int64 ``(n,)``) of one draw per factual scaled value."""
        factual_scaled = np.asarray(factual_scaled, dtype=np.float32)
        regions = self.candidate_region(self.values)  # non-decreasing: each region is a slice
        start = np.searchsorted(regions, np.arange(len(self.cuts) + 1), side="left")
        count = np.bincount(regions, minlength=len(self.cuts) + 1)
        f = self.factual_region(factual_scaled)
        n_candidates = len(self.values) - count[f]
        if (n_candidates == 0).any():
            raise ValueError(f"{self.node}: every value lies in the factual's region")
        u = rng.integers(0, n_candidates)  # uniform over the candidates left of and right of f
        return np.where(u < start[f], u, u + count[f]).astype(np.int64)

    def draw_raw(self, factual_raw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Unscaled float32 intervention values (the split's own values) for unscaled factuals."""
        return self.raw[self.draw(scale(self.node, factual_raw), rng)]


def draw_digit(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniformly one of the nine other classes of each digit (int64 ``(n,)``)."""
    digits = np.asarray(digits, dtype=np.int64)
    if digits.size and (digits.min() < 0 or digits.max() >= NUM_DIGITS):
        raise ValueError(f"digits must lie in 0..{NUM_DIGITS - 1}")
    return (digits + rng.integers(1, NUM_DIGITS, size=digits.shape)) % NUM_DIGITS


def t10k_rules() -> dict[str, DrawRule]:
    """The rules of the published test split (thickness and intensity), as the benchmark draws."""
    t, i = published.targets("test")
    return {"thickness": DrawRule.from_values("thickness", t),
            "intensity": DrawRule.from_values("intensity", i)}

__all__ = ["BIN_EDGES", "NUM_DIGITS", "DrawRule", "draw_digit", "t10k_rules"]
