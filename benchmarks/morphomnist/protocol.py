"""Morpho-MNIST protocol, as library code (``BENCHMARKS.md`` section 4; Melistas et al. 2024).

* the generator's acceptance figures (:func:`generator_statistics`): the (t, i) law of the 60k
  training split against the published files, the measured thickness and intensity of rendered
  images against their targets, determinism, the true counterfactuals of a null intervention and of
  do(t = measured thickness);
* the benchmark's interventions (:func:`benchmark_interventions`, the rule of :mod:`.draws`: the
  published test split's unique values outside the factual's region, another digit of the nine);
  their targets are the *true* counterfactual parents (intensity after do(t) through the true
  mechanism: stricter than the benchmark's, which scores against its model's own learned flow);
* the scores of a counterfactual function (:func:`score_counterfactuals`): composition (L1 on the
  padded 32x32 image, 0-255 scale, after 1 and 10 cycles), effectiveness by the benchmark's released
  predictors in both BatchNorm modes (:mod:`.effectiveness`: ``batch``, the benchmark's statistics
  of each batch of 256, and ``eval``; :meth:`Protocol.floors`: the real test images' scores,
  each column's floor), the same MAEs *measured* with Morpho-MNIST's ``measure``,
  reversibility, minimality CLD with the benchmark's 0.8/0.2 weighting (comparison sets: same bins),
  and the error against the exact true counterfactual for do(t) and do(i) (MSE, PSNR on [-1, 1];
  beside the unchanged image's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from causaldiff import metrics as M
from causaldiff.datasets.base import Draw, split_seed
from causaldiff.errors import DataError

from benchmarks.morphomnist.dataset import (BENCHMARK_INTERVENTIONS, TRUE_INTERVENTIONS, MorphoMNIST,
                                            draw_noise, intensity_equation, measure, thickness_equation)
from benchmarks.morphomnist.draws import DrawRule, draw_digit, t10k_rules
from benchmarks.morphomnist.effectiveness import ReleasedPredictors, score
from benchmarks.morphomnist.scaling import scale

#: statistics of the published files (60k train) and the acceptance tolerances
PUBLISHED = {"thickness_mean": (2.503, 0.03), "thickness_std": (0.632, 0.03),
             "intensity_mean": (158.0, 3.0), "intensity_std": (48.4, 3.0), "corr_t_i": (0.908, 0.02)}


def law_statistics(n: int = 60_000, seed: int = 0) -> dict[str, float]:
    """Mean, std and correlation of the (t, i) draws of a generated training split of ``n`` rows."""
    u_t, u_i = draw_noise(n, split_seed(seed, "train"))
    t = thickness_equation(u_t).double()
    i = intensity_equation(thickness_equation(u_t), u_i).double()
    return {"thickness_mean": t.mean().item(), "thickness_std": t.std().item(),
            "intensity_mean": i.mean().item(), "intensity_std": i.std().item(),
            "corr_t_i": torch.corrcoef(torch.stack([t, i]))[0, 1].item()}


def within_published(stats: dict[str, float]) -> dict[str, bool]:
    return {k: abs(stats[k] - want) <= tol for k, (want, tol) in PUBLISHED.items()}


def measured_against_target(ds: MorphoMNIST, n: int, seed: int = 0) -> dict[str, float]:
    """``measure`` of ``n`` freshly rendered rows against their target (t, i): MAE, correlation."""
    draw = ds.sample(n, torch.Generator().manual_seed(seed))
    m = measure(draw.values["image"])
    out: dict[str, float] = {"n": n}
    for node in ("thickness", "intensity"):
        target, got = draw.values[node].double(), m[node]
        out[f"{node}_mae"] = (got - target).abs().mean().item()
        out[f"{node}_corr"] = torch.corrcoef(torch.stack([got, target]))[0, 1].item()
    return out


def true_counterfactual_checks(ds: MorphoMNIST, n: int, seed: int = 0) -> dict[str, Any]:
    """Null intervention (identical to the pixel?) and do(t = measured thickness of the factual):
    the pixel MSE (on [-1, 1]) to the factual, beside do(t + 1)'s, and the determinism of sampling."""
    g = torch.Generator().manual_seed(seed)
    draw = ds.sample(n, g)
    again = ds.sample(n, torch.Generator().manual_seed(seed))
    image = draw.values["image"]
    null = ds.counterfactual(draw, {"thickness": draw.values["thickness"]})
    measured = measure(image)["thickness"].float()
    near = ds.counterfactual(draw, {"thickness": measured})
    far = ds.counterfactual(draw, {"thickness": draw.values["thickness"] + 1.0})

    def mse(x: torch.Tensor) -> float:
        return (x - image).pow(2).mean().item()

    return {"n": n, "null_identical": bool(torch.equal(null["image"], image)),
            "same_seed_identical": bool(np.array_equal(image.numpy(), again.values["image"].numpy())),
            "mse_do_measured_thickness": mse(near["image"]), "mse_do_thickness_plus_1": mse(far["image"]),
            "max_abs_do_measured_thickness": (near["image"] - image).abs().max().item()}


def generator_statistics(ds: MorphoMNIST, n_law: int = 60_000, n_render: int = 1000,
                         n_counterfactual: int = 100) -> dict[str, Any]:
    """Every acceptance figure of the generator (see the module docstring)."""
    law = law_statistics(n_law)
    return {"law": law, "law_within_published": within_published(law), "published": PUBLISHED,
            "measured_vs_target": measured_against_target(ds, n_render),
            "true_counterfactuals": true_counterfactual_checks(ds, n_counterfactual)}


# ------------------------------------------------------------------------------ interventions
NUM_BINS = 9
GREY = 127.5  # [-1, 1] -> 0-255: L1 * 127.5


def bins(node: str, values: torch.Tensor, num_bins: int = NUM_BINS) -> torch.Tensor:
    """Bin index (long, 0..num_bins-1) of each value on the benchmark's float32-scaled [-1, 1]
    axis (clamped): CLD's comparison sets (the digit is its own bin)."""
    if node == "digit":
        return values.long()
    x = (torch.from_numpy(scale(node, values.cpu().numpy())).double() + 1) / 2 * num_bins
    return x.floor().clamp(0, num_bins - 1).long().to(values.device)


def benchmark_interventions(factual: Draw, rng: np.random.Generator,
                            rules: Mapping[str, DrawRule] | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """``{node: {node: values}}``: the benchmark's do(t), do(i), do(digit) of each factual row, drawn
    by its rule (:mod:`.draws`: the published test split's unique values outside the factual's
    region, ``rules`` by default :func:`.draws.t10k_rules`; another digit of the nine)."""
    rules = t10k_rules() if rules is None else rules
    f = factual.values
    out = {"digit": {"digit": torch.from_numpy(draw_digit(f["digit"].cpu().numpy(), rng))}}
    for node in ("intensity", "thickness"):
        out[node] = {node: torch.from_numpy(rules[node].draw_raw(f[node].cpu().numpy(), rng))}
    return out


# ------------------------------------------------------------------------------ scores
def mean_std(values: torch.Tensor) -> dict[str, float]:
    v = values.double()
    return {"mean": v.mean().item(), "std": v.std().item() if v.numel() > 1 else float("nan")}


def effectiveness_scores(predicted: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Thickness and intensity MAE (unscaled units) and digit accuracy of predicted attributes."""
    out = {f"{k}_mae": (predicted[k].double().cpu() - targets[k].double().cpu()).abs().mean().item()
           for k in ("thickness", "intensity") if k in predicted}
    if "digit" in predicted:
        out["digit_acc"] = (predicted["digit"].cpu() == targets["digit"].cpu()).double().mean().item()
    return out


def true_error(predicted: torch.Tensor, truth: torch.Tensor, factual: torch.Tensor) -> dict[str, float]:
    """MSE and PSNR (images in [-1, 1]) of the predicted counterfactual against the exact one,
    beside those of the unchanged factual image."""
    def both(x: torch.Tensor) -> tuple[float, float]:
        return M.mse(x, truth).mean().item(), M.psnr(x, truth).clamp(max=100.0).mean().item()
    (m, p), (m0, p0) = both(predicted), both(factual)
    return {"mse": m, "psnr": p, "unchanged_mse": m0, "unchanged_psnr": p0}


def composition_scores(fn: M.CounterfactualFn, factual: Mapping[str, torch.Tensor],
                       cycles: tuple[int, ...] = (1, 10)) -> dict[str, dict[str, float]]:
    """L1 on the 0-255 scale between the image and its null-intervention counterfactual after
    each number of cycles (outputs fed back in): mean and std over images."""
    l1 = M.composition(fn, factual, nodes=list(BENCHMARK_INTERVENTIONS), cycles=cycles)
    return {str(k): mean_std(v * GREY) for k, v in l1.items()}


def weighted_cld(vae: M.TrainedVAE, factual: torch.Tensor, counterfactual: torch.Tensor, factual_bins: torch.Tensor,
                 target_bins: torch.Tensor, reference: torch.Tensor, reference_bins: torch.Tensor) -> dict[str, float]:
    """CLD with the benchmark's 0.8/0.2 weighting, comparison sets of the same bins: mean over
    the rows whose factual and target bins the reference set holds (``n``: how many)."""
    present = torch.isin(factual_bins, reference_bins) & torch.isin(target_bins, reference_bins)
    if not present.any():
        return {"mean": float("nan"), "n": 0}
    v = M.cld(vae, factual[present], counterfactual[present], factual_bins[present], target_bins[present],
              reference, reference_bins, weights=CLD_WEIGHTS)
    return {"mean": v.mean().item(), "n": int(present.sum())}


CLD_WEIGHTS = (0.8, 0.2)
#: the effectiveness targets, in the order of :func:`.effectiveness.score`'s arguments
NODES = ("thickness", "intensity", "digit")


def first(rows: Mapping[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """The first ``n`` rows of each column."""
    return {k: v[:n] for k, v in rows.items()}


class TrueCounterfactuals:
    """The exact counterfactuals of the factual rows under the benchmark's do(t) and do(i),
    rendered once in ``ds.config.workers`` processes (in the background with ``background=True``:
    the CPU renders while the GPU trains); :attr:`fn` is the ``truth`` system."""

    def __init__(self, ds: MorphoMNIST, factual: Draw, interventions: Mapping[str, Mapping[str, torch.Tensor]],
                 background: bool = False, _rows: dict[str, dict[str, torch.Tensor]] | None = None):
        self.ds, self.factual = ds, factual
        self.interventions = {k: dict(v) for k, v in interventions.items() if k in TRUE_INTERVENTIONS}
        self._rows = dict(_rows or {})
        self._jobs = {} if _rows is not None else {
            k: ds.counterfactual_job(factual, do, background=background) for k, do in self.interventions.items()}

    def rows(self, node: str) -> dict[str, torch.Tensor]:
        """The true counterfactual rows of the benchmark's do(``node``) (waits for the renderer)."""
        if node not in self._rows:
            self._rows[node] = self._jobs.pop(node).result()
        return self._rows[node]

    def cancel(self) -> None:
        """Drop the renders not started (a run that failed does not wait for them)."""
        for job in self._jobs.values():
            job.cancel()

    def head(self, n: int) -> "TrueCounterfactuals":
        """The same for the first ``n`` factual rows."""
        idx = torch.arange(min(n, len(self.factual)))
        rows = {k: first(self.rows(k), len(idx)) for k in self.interventions}
        ivs = {k: first(do, len(idx)) for k, do in self.interventions.items()}
        return TrueCounterfactuals(self.ds, self.factual[idx], ivs, _rows=rows)

    def fn(self, rows: Mapping[str, torch.Tensor], do: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The exact counterfactual of the *factual* rows under ``do`` (the factual rows themselves
        where ``do`` sets every node to its factual value: the renderer's null intervention is the
        factual image to the pixel); the benchmark's interventions come from the rendered cache."""
        n = len(next(iter(rows.values())))
        if n > len(self.factual):
            raise DataError(f"the truth knows {len(self.factual)} factual rows, got {n}")
        if n < len(self.factual):  # the protocol's detail rows: a prefix of the factual rows
            return self.head(n).fn(rows, do)
        f = self.factual.values
        do = {k: v for k, v in do.items() if not torch.equal(torch.as_tensor(v).to(f[k].device).expand_as(f[k]), f[k])}
        if not do:
            return dict(f)
        for node, known in self.interventions.items():
            if do.keys() == known.keys() and all(torch.equal(torch.as_tensor(do[k]), known[k]) for k in do):
                return dict(self.rows(node))
        return self.ds.counterfactual(self.factual, do)


def truth_fn(ds: MorphoMNIST, factual: Draw) -> M.CounterfactualFn:
    """The exact counterfactuals of ``factual``'s rows (do(t), do(i); a node set to its factual
    value left as it is)."""
    return TrueCounterfactuals(ds, factual, {}).fn


def unchanged_fn(rows: Mapping[str, torch.Tensor], do: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The reference that changes nothing: the intervened values set, the image left as it is."""
    n = rows["image"].shape[0]
    return {**rows, **{k: torch.as_tensor(v).expand(n) if torch.as_tensor(v).dim() == 0 else torch.as_tensor(v)
                       for k, v in do.items()}}


@dataclass(frozen=True)
class Protocol:
    """What every system is scored against: the factual test rows, the benchmark's interventions,
    the metric models, CLD's reference rows, the true counterfactuals; ``detail``: how many of the
    first rows the costly metrics use (composition, reversibility, the measured MAEs; None: all),
    measured in ``workers`` processes; ``truths`` may hold a prefix of the rows (the error against
    the truth is scored on it)."""

    ds: MorphoMNIST
    factual: Draw
    interventions: Mapping[str, Mapping[str, torch.Tensor]]
    predictors: ReleasedPredictors
    vae: M.TrainedVAE | None
    reference: Draw
    cycles: tuple[int, ...] = (1, 10)
    truths: TrueCounterfactuals | None = None
    detail: int | None = None
    workers: int = 1

    def __post_init__(self) -> None:
        if self.truths is None:
            object.__setattr__(self, "truths", TrueCounterfactuals(self.ds, self.factual, self.interventions))

    @property
    def n_detail(self) -> int:
        """Rows of the costly metrics: the first ``detail`` (all without it)."""
        return len(self.factual) if self.detail is None else min(self.detail, len(self.factual))

    def floors(self) -> dict[str, dict[str, float]]:
        """The released predictors' scores of the factual (real) test images against their own
        parents: each effectiveness column's floor, in both BatchNorm modes."""
        f = self.factual.values
        return score(self.predictors, f["image"].cpu(), *(f[k].cpu().numpy() for k in NODES))

    def head(self, n: int) -> "Protocol":
        """The protocol on the first ``n`` factual rows."""
        idx = torch.arange(min(n, len(self.factual)))
        ivs = {k: first(do, len(idx)) for k, do in self.interventions.items()}
        return replace(self, factual=self.factual[idx], interventions=ivs, truths=self.truths.head(len(idx)))

    def score(self, fn: M.CounterfactualFn, nodes: tuple[str, ...] | None = None, *, sweep: bool = False,
              counterfactuals: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> dict[str, Any]:
        """The benchmark's scores of ``fn``: composition, then each intervention of ``nodes``
        (default: all), its counterfactual rows ``fn(factual, do)`` or ``counterfactuals[node]``.
        ``sweep``: no composition nor reversibility (a guidance-scale sweep)."""
        nodes = tuple(self.interventions) if nodes is None else nodes
        out: dict[str, Any] = {"n": len(self.factual), "n_detail": self.n_detail}
        if self.cycles and not sweep:
            out["composition_l1"] = composition_scores(fn, first(self.factual.values, self.n_detail), self.cycles)
        cfs = counterfactuals or {}
        out["interventions"] = {
            node: self.intervention_scores(node, cfs[node] if node in cfs else fn(self.factual.values, self.interventions[node]),
                                           None if sweep else fn) for node in nodes}
        return out

    def intervention_scores(self, node: str, cf: Mapping[str, torch.Tensor], fn: M.CounterfactualFn | None = None,
                            measured: bool = True) -> dict[str, Any]:
        """Every score of the benchmark's do(``node``) whose counterfactual rows are ``cf``:
        effectiveness (predicted, and ``measured`` on the detail rows), minimality, CLD, the error
        against the truth, and with ``fn`` (the counterfactual function that gave ``cf``)
        reversibility."""
        do, factual = self.interventions[node], self.factual
        targets = self.ds.counterfactual_parents(factual, do)
        k = self.n_detail
        out: dict[str, Any] = {
            "effectiveness": score(self.predictors, cf["image"].cpu(), *(targets[k].cpu().numpy() for k in NODES)),
            "minimality_l1": mean_std(M.minimality(factual.values["image"], cf["image"]) * GREY)}
        if measured:
            out["measured"] = effectiveness_scores(measure(cf["image"][:k], self.workers), first(targets, k))
        if fn is not None:
            back = M.reversibility(fn, first(factual.values, k), first(do, k), counterfactual=first(cf, k))
            out["reversibility_l1"] = mean_std(back * GREY)
        if self.vae is not None:
            out["cld"] = weighted_cld(self.vae, factual.values["image"], cf["image"], bins(node, factual.values[node]),
                                      bins(node, do[node]), self.reference.values["image"],
                                      bins(node, self.reference.values[node]))
        if node in TRUE_INTERVENTIONS:  # on the rows the truth was rendered for (a prefix)
            m = len(self.truths.factual)
            out["true_counterfactual"] = {**true_error(cf["image"][:m], self.truths.rows(node)["image"],
                                                       factual.values["image"][:m]), "n": m}
        return out


def score_counterfactuals(fn: M.CounterfactualFn, ds: MorphoMNIST, factual: Draw,
                          interventions: Mapping[str, Mapping[str, torch.Tensor]], predictors: ReleasedPredictors,
                          vae: M.TrainedVAE | None, reference: Draw, cycles: tuple[int, ...] = (1, 10)) -> dict[str, Any]:
    """The benchmark's scores of a counterfactual function on every row (:meth:`Protocol.score`)."""
    return Protocol(ds, factual, interventions, predictors, vae, reference, cycles).score(fn)


__all__ = ["Protocol", "TrueCounterfactuals", "first", "score_counterfactuals", "truth_fn", "unchanged_fn", "NUM_BINS", "CLD_WEIGHTS", "bins", "benchmark_interventions",
           "mean_std", "effectiveness_scores", "true_error", "composition_scores", "weighted_cld",
           "PUBLISHED", "law_statistics", "within_published", "measured_against_target",
           "true_counterfactual_checks", "generator_statistics"]
