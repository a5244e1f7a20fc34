"""Metrics of a fitted SCM on test rows of its data set: what ``causaldiff evaluate`` and ``sweep``
report. :func:`tabular_counterfactual_mse`: counterfactual MSE against the true SCM per intervened
node; :func:`image_run_metrics`: effectiveness, minimality, reversibility, composition (and the error
against the truth when known) of ``do(label = another class)``; :func:`image_run_sweep`: those
against the guidance scale; :func:`flag_untrusted`: marks the verdicts of a classifier that
misreads real images.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import networkx as nx
import torch
from torch import Tensor

from .. import metrics as M
from ..datasets.base import Draw, GroundTruth
from ..scm import SCM
from .axioms import guidance_sweep, image_counterfactual_metrics, other_class


#: below this accuracy on the real (factual) test images, the effectiveness classifier's verdicts
#: on counterfactuals are not evidence of anything
TRUSTED_ACCURACY = 0.9
#: the metrics computed with the effectiveness classifier
CLASSIFIER_METRICS = ("effectiveness",)


def flag_untrusted(row: Mapping[str, Any], threshold: float = TRUSTED_ACCURACY) -> dict[str, Any]:
    """``row`` with ``untrusted`` (the classifier's metrics, when its ``factual_accuracy`` is below
    ``threshold``; else empty) and, when any, a ``warning`` saying why."""
    acc = row.get("factual_accuracy")
    bad = [k for k in CLASSIFIER_METRICS if k in row] if acc is not None and acc < threshold else []
    out = {**row, "untrusted": bad}
    if bad:
        out["warning"] = (f"{', '.join(bad)} cannot be trusted: the classifier that scores it is right on "
                          f"only {acc:.2f} of the real test images (< {threshold}); train the run longer "
                          f"or evaluate on more training rows")
    return out


def tabular_counterfactual_mse(scm: SCM, truth: GroundTruth, draw: Draw, values: int = 5) -> dict[str, Any]:
    """``{"do(node)": {"cf_mse", "descendants"}}``: the mean over ``values`` quantiles of each
    intervention node of the counterfactual error over its descendants, on the rows of ``draw``
    against the data set's exact counterfactuals."""
    graph = truth.graph()
    out: dict[str, Any] = {}
    for node in truth.intervention_nodes:
        grid = truth.quantile_grid(node, values, generator=torch.Generator().manual_seed(0))
        desc = [v for v in nx.topological_sort(graph) if v in nx.descendants(graph, node)]
        errs = []
        for v in grid:
            do = {node: v.item() if v.dim() == 0 else v}
            cf = scm.counterfactual(draw.values, do=do)
            errs.append(float(M.counterfactual_error(cf, truth.counterfactual(draw, do), desc).mean()))
        out[f"do({node})"] = {"cf_mse": sum(errs) / len(errs), "descendants": list(desc)}
    return out


def image_label(scm: SCM, image_node: str, values: Mapping[str, Tensor]) -> str:
    """The image node's first categorical (integer-valued) parent: the one intervened on."""
    return next(p for p in scm.parents(image_node) if not values[p].is_floating_point())


def effectiveness_classifier(train: Mapping[str, Tensor], image_node: str, label: str, config: Any = None) -> Any:
    """An image classifier of ``label``, independent of the model under test, trained on ``train``."""
    k = int(train[label].max()) + 1
    return M.train_classifier(train[image_node], train[label], num_classes=k, config=config)


def _query(values: Mapping[str, Tensor], train: Mapping[str, Tensor], n: int, label: str) -> tuple[dict, Tensor, int]:
    """The first ``n`` rows, each one's other class (seeded), and the number of classes."""
    m = next(iter(values.values())).shape[0]
    factual = {k: v[:min(n, m)] for k, v in values.items()}
    k = int(max(int(train[label].max()), int(factual[label].max()))) + 1
    return factual, other_class(factual[label], k, torch.Generator().manual_seed(0)), k


def _true_images(truth: GroundTruth | None, draw: Draw | None, n: int, do: Mapping[str, Any],
                 node: str) -> Tensor | None:
    """The true counterfactual images when the data set knows them (the shapes SCM), else None."""
    if truth is None or draw is None:
        return None
    return truth.counterfactual(draw[:n], do)[node]


def _image_row(scm: SCM, factual: dict, target: Tensor, *, node: str, label: str, classifier: Any,
               truth_images: Tensor | None, cycles: Iterable[int],
               counterfactual: Mapping[str, Tensor] | None = None) -> dict[str, Any]:
    n = factual[node].shape[0]
    m = image_counterfactual_metrics(scm, factual, {label: target}, image_node=node, label=label,
                                     classifier=classifier, truth_images=truth_images, cycles=cycles,
                                     counterfactual=counterfactual)
    row = {"n": n, "intervened": label, "effectiveness": m.pop("effectiveness"),
           "factual_accuracy": float(M.effectiveness(classifier, factual[node], factual[label]))}
    if "counterfactual_seconds" in m:
        row["seconds_per_counterfactual"] = m.pop("counterfactual_seconds") / n
    return flag_untrusted({**row, **m})


def image_run_metrics(scm: SCM, values: Mapping[str, Tensor], train: Mapping[str, Tensor], n: int, *,
                      node: str = "image", label: str | None = None, cycles: tuple[int, ...] = (1, 10),
                      classifier: Any = None, truth: GroundTruth | None = None, draw: Draw | None = None) -> dict[str, Any]:
    """Effectiveness, composition, reversibility, minimality (and error vs truth when known)
    of ``do(label = another class)`` counterfactuals on the first ``n`` test rows ``values``."""
    label = label or image_label(scm, node, values)
    factual, target, k = _query(values, train, n, label)
    if classifier is None:
        classifier = M.train_classifier(train[node], train[label], num_classes=k)
    truth_images = _true_images(truth, draw, factual[node].shape[0], {label: target}, node)
    return _image_row(scm, factual, target, node=node, label=label, classifier=classifier,
                      truth_images=truth_images, cycles=cycles)


def image_run_sweep(scm: SCM, values: Mapping[str, Tensor], train: Mapping[str, Tensor], n: int,
                    scales: Sequence[float], *, node: str, label: str, classifier: Any,
                    truth: GroundTruth | None = None, draw: Draw | None = None, nodes: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """:func:`image_run_metrics` (composition after one cycle) at each guidance scale of the
    diffusion ``nodes`` (default: all), one abduction shared by the scales; each row has ``scale``."""
    factual, target, _ = _query(values, train, n, label)
    truth_images = _true_images(truth, draw, factual[node].shape[0], {label: target}, node)

    def score(scm_s: SCM, rows: Mapping[str, Tensor]) -> dict[str, Any]:
        return _image_row(scm_s, factual, target, node=node, label=label, classifier=classifier,
                          truth_images=truth_images, cycles=(1,), counterfactual=rows)

    sweeps, _ = guidance_sweep(scm, factual, {label: target}, image_node=node, scales=scales, score=score,
                               nodes=nodes)
    return [{**r, "scale": s} for s, r in sweeps[None].items()]


__all__ = ["TRUSTED_ACCURACY", "CLASSIFIER_METRICS", "flag_untrusted", "tabular_counterfactual_mse", "image_label", "effectiveness_classifier", "image_run_metrics",
           "image_run_sweep"]
