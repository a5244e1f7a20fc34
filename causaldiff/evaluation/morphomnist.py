"""Morpho-MNIST protocol, as library code (``BENCHMARKS.md`` section 4).

Implemented so far: the generator's acceptance statistics (:func:`generator_statistics`: the
(t, i) law on the 60k training split against the published files, the measured thickness and
intensity of rendered images against their targets, determinism, and the true counterfactuals of a
null intervention and of do(t = measured thickness)). The benchmark's model protocol (composition,
effectiveness, CLD 0.8/0.2, reversibility) is not written yet.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..datasets.base import split_seed
from ..datasets.morphomnist import (MorphoMNIST, draw_noise, intensity_equation, measure,
                                    thickness_equation)

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
    law = law_statistics(n_law, ds.config.seed)
    return {"law": law, "law_within_published": within_published(law), "published": PUBLISHED,
            "measured_vs_target": measured_against_target(ds, n_render),
            "true_counterfactuals": true_counterfactual_checks(ds, n_counterfactual)}


__all__ = ["PUBLISHED", "law_statistics", "within_published", "measured_against_target",
           "true_counterfactual_checks", "generator_statistics"]
