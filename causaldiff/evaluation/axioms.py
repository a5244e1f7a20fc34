"""Image counterfactuals scored by the axioms of Monteiro et al. (ICLR 2023), as functions.

**Effectiveness**, **composition**, **reversibility**, **minimality**, and for Diff-SCM on MNIST
(Sanchez & Tsaftaris 2022) **IM1/IM2** (Van Looveren & Klaise) and **CLD**: each defined once, in
:mod:`causaldiff.metrics`; this module picks the images, batches the model calls and summarises
per-row values. :func:`image_counterfactual_metrics`: every metric of one ``do`` on an SCM;
:func:`counterfactual_image_scores`: of given images; :func:`guidance_sweep`: against the
diffusion nodes' guidance scale (and abduction fraction), abducting once per fraction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import networkx as nx
import torch
from torch import Tensor

from .. import metrics as M
from ..errors import DataError, GraphError
from ..progress import progress
from ..scm import SCM
from .report import Timer, batched

Summary = Callable[[Tensor], Any]


def mean(values: Tensor) -> float:
    """The mean of per-row values."""
    return float(values.mean())


def mean_sem(values: Tensor) -> dict[str, float]:
    """Mean and standard error of the mean of per-row values (float64; sem NaN for one row)."""
    v = values.double()
    sem = float(v.std() / math.sqrt(v.numel())) if v.numel() > 1 else float("nan")
    return {"mean": float(v.mean()), "sem": sem}


def other_class(labels: Tensor, num_classes: int, generator: torch.Generator) -> Tensor:
    """A class other than each row's, uniform over the ``num_classes - 1`` others (drawn on the
    CPU from ``generator``, returned on ``labels``' device)."""
    draw = torch.randint(num_classes - 1, labels.shape, generator=generator)
    return ((labels.cpu() + 1 + draw) % num_classes).to(labels.device)


def _per_row(do: Mapping[str, Any], n: int) -> list[str]:
    return [k for k, v in do.items() if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == n]


def _chunked(call: Callable[[dict[str, Tensor], dict[str, Any]], Mapping[str, Tensor]],
             rows: Mapping[str, Tensor], do: Mapping[str, Any], batch_size: int | None) -> dict[str, Tensor]:
    """``call(rows, do)`` over consecutive chunks of the rows (and of per-row ``do`` values)."""
    if batch_size is None:
        return dict(call(dict(rows), dict(do)))
    keys = list(rows)
    per_row = _per_row(do, rows[keys[0]].shape[0])

    def chunk(*cols: Tensor) -> Mapping[str, Tensor]:
        return call(dict(zip(keys, cols)), {**do, **dict(zip(per_row, cols[len(keys):]))})

    return batched(chunk, batch_size, *(rows[k] for k in keys), *(do[k] for k in per_row))


def counterfactual_fn(scm: SCM, *, seed: int | None = 0, batch_size: int | None = None) -> M.CounterfactualFn:
    """``fn(rows, do) = scm.counterfactual(rows, do=do, seed=seed)``, over chunks of ``batch_size``
    rows when given (the form :func:`causaldiff.metrics.composition` and ``reversibility`` take)."""
    def fn(rows: Mapping[str, Tensor], do: Mapping[str, Any]) -> dict[str, Tensor]:
        return _chunked(lambda r, d: scm.counterfactual(r, do=d, seed=seed), rows, do, batch_size)

    return fn


def counterfactual_image_scores(factual: Tensor, counterfactual: Tensor, target: Tensor, *,
                                factual_label: Tensor | None = None, classifier: Any = None,
                                autoencoders: M.AutoencoderSet | None = None, vae: M.TrainedVAE | None = None,
                                reference: tuple[Tensor, Tensor] | None = None,
                                truth_images: Tensor | None = None, summary: Summary = mean) -> dict[str, Any]:
    """The metrics of counterfactual images ``(n, C, H, W)`` of intervened label ``target``: minimality
    (L1); CLD with ``vae`` (ranked against ``reference = (images, labels)``); IM1/IM2 with
    ``autoencoders``; effectiveness with ``classifier``; against ``truth_images``: MSE, PSNR (capped
    at 100 dB), the unchanged image's MSE and the classifier's effectiveness on them. Per-row
    metrics reduced by ``summary`` (:func:`mean` or :func:`mean_sem`)."""
    if (vae is not None or autoencoders is not None) and factual_label is None:
        raise DataError("CLD and IM1 need factual_label= (the factual label of each row)")
    if vae is not None and reference is None:
        raise DataError("CLD needs reference=(images, labels): the data set its divergences are ranked against")
    out: dict[str, Any] = {}
    if vae is not None:
        out["CLD"] = summary(M.cld(vae, factual, counterfactual, factual_label, target, *reference))
    if autoencoders is not None:
        out["IM1"] = summary(M.im1(autoencoders, counterfactual, target, factual_label))
        out["IM2"] = summary(M.im2(autoencoders, counterfactual, target))
    if classifier is not None:
        out["effectiveness"] = float(M.effectiveness(classifier, counterfactual, target))
    out["minimality_l1"] = summary(M.minimality(factual, counterfactual))
    if truth_images is not None:
        out["true_cf_mse"] = summary(M.mse(counterfactual, truth_images))
        out["true_cf_psnr"] = summary(M.psnr(counterfactual, truth_images).clamp(max=100))
        out["unchanged_factual_mse"] = summary(M.mse(factual, truth_images))
        if classifier is not None:
            out["effectiveness_true_cf"] = float(M.effectiveness(classifier, truth_images, target))
    return out


def axiom_metrics(scm: SCM, factual: Mapping[str, Tensor], do: Mapping[str, Any], *, image_node: str,
                  label: str, counterfactual: Mapping[str, Tensor] | None = None, cycles: Iterable[int] = (1, 10),
                  reversibility: bool = True, n_composition: int | None = None, batch_size: int | None = None,
                  seed: int | None = 0, summary: Summary = mean, timer: Timer | None = None) -> dict[str, Any]:
    """The axioms that query the model again: ``reversibility_l1`` (``do`` then back to the factual
    values of the intervened nodes; ``counterfactual``: the rows of ``do`` when already computed)
    and ``composition_l1_<m>`` for each ``m`` in ``cycles`` (null interventions on ``label``, on
    the first ``n_composition`` rows). ``timer`` gets the phases ``reversibility``, ``composition``."""
    fn = counterfactual_fn(scm, seed=seed, batch_size=batch_size)
    timer = timer or Timer(scm.device)
    out: dict[str, Any] = {}
    if reversibility:
        with timer("reversibility"):
            out["reversibility_l1"] = summary(M.reversibility(fn, factual, do, image_node=image_node,
                                                              counterfactual=counterfactual))
    cycles = tuple(cycles)
    if cycles:
        n = factual[image_node].shape[0]
        m = min(n_composition or n, n)
        with timer("composition"):
            comp = M.composition(fn, {k: v[:m] for k, v in factual.items()}, nodes=[label], cycles=cycles,
                                 image_node=image_node)
        out.update({f"composition_l1_{c}": summary(v) for c, v in comp.items()})
    return out


def image_counterfactual_metrics(scm: SCM, factual: Mapping[str, Tensor], do: Mapping[str, Any], *,
                                 image_node: str, label: str, classifier: Any = None,
                                 autoencoders: M.AutoencoderSet | None = None, vae: M.TrainedVAE | None = None,
                                 reference: tuple[Tensor, Tensor] | None = None,
                                 truth_images: Tensor | None = None, cycles: Iterable[int] = (1, 10),
                                 reversibility: bool = True, n_composition: int | None = None,
                                 counterfactual: Mapping[str, Tensor] | None = None, target: Tensor | None = None,
                                 batch_size: int | None = None, seed: int | None = 0,
                                 summary: Summary = mean) -> dict[str, Any]:
    """Every metric of the counterfactuals ``do`` of ``factual`` rows: :func:`counterfactual_image_scores`
    (``target`` by default ``do[label]`` or the factual label), then :func:`axiom_metrics`.
    ``counterfactual``: the rows when already computed; else computed and timed."""
    factual = dict(factual)
    missing = [k for k in (image_node, label) if k not in factual]
    if missing:
        raise DataError(f"the factual rows have no {missing} column(s); they have {sorted(factual)}")
    out: dict[str, Any] = {}
    if counterfactual is None:
        timer = Timer(scm.device)
        with timer("counterfactual"):
            counterfactual = counterfactual_fn(scm, seed=seed, batch_size=batch_size)(factual, do)
        out["counterfactual_seconds"] = timer.seconds["counterfactual"]
    if target is None:
        target = factual[label] if label not in do else \
            torch.as_tensor(do[label], device=factual[label].device).expand_as(factual[label])
    out.update(counterfactual_image_scores(
        factual[image_node], counterfactual[image_node], target, factual_label=factual[label],
        classifier=classifier, autoencoders=autoencoders, vae=vae, reference=reference,
        truth_images=truth_images, summary=summary))
    out.update(axiom_metrics(scm, factual, do, image_node=image_node, label=label, counterfactual=counterfactual,
                             cycles=cycles, reversibility=reversibility, n_composition=n_composition,
                             batch_size=batch_size, seed=seed, summary=summary))
    return out


def diffusion_nodes(scm: SCM) -> list[str]:
    """The nodes bound to a diffusion mechanism (those with inference settings to sweep)."""
    return [n for n, m in scm.mechanisms.items() if getattr(m, "name", None) == "diffusion"]


def with_inference(scm: SCM, nodes: Sequence[str] | None = None, **settings: Any) -> SCM:
    """A new SCM whose diffusion ``nodes`` (default: all) use ``settings`` (``guidance_scale``,
    ``abduction_fraction``, ``num_inference_steps``; ``guidance_scale`` to anti-causal nodes only)."""
    nodes = diffusion_nodes(scm) if nodes is None else list(nodes)
    other = [n for n in nodes if n not in diffusion_nodes(scm)]
    if other:
        raise GraphError(f"inference settings apply to diffusion nodes; {other} are not "
                         f"(the diffusion nodes are {diffusion_nodes(scm)})")
    settings = {k: v for k, v in settings.items() if v is not None}
    own = {n: {k: v for k, v in settings.items()
               if k != "guidance_scale" or scm.mechanisms[n].config.guidance == "anticausal"} for n in nodes}
    if not any(own.values()):
        return scm
    return scm.with_mechanisms({n: scm.mechanisms[n].with_inference(**own[n]) for n in nodes if own[n]})


def _fixed_non_descendants(scm: SCM, factual: Mapping[str, Tensor], do: Mapping[str, Any]) -> dict[str, Tensor]:
    """The factual values of the nodes ``do`` cannot change, as hard interventions: generation
    from abducted noise then keeps them bit-for-bit, as a counterfactual does."""
    changed = set(do).union(*(nx.descendants(scm.graph, k) for k in do))
    return {k: factual[k] for k in scm.nodes if k not in changed}


def shared_abduction_counterfactuals(scm: SCM, factual: Mapping[str, Tensor], dos: Mapping[str, Mapping[str, Any]], *,
                                     batch_size: int | None = None, seed: int | None = 0) -> dict[str, dict[str, Tensor]]:
    """``{name: counterfactual rows}`` of ``factual`` under each intervention of ``dos``, from one
    abduction of every node (the exogenous noise does not depend on the intervention); each
    generated with the nodes its intervention cannot change held at their factual values."""
    noise = _chunked(lambda r, _: scm.abduct(r, seed=seed), factual, {}, batch_size)
    out = {}
    for name, do in dos.items():
        fixed = _fixed_non_descendants(scm, factual, do)
        kept = {k: v for k, v in noise.items() if k not in fixed}
        out[name] = _chunked(lambda u, d: scm.predict(u, do=d, seed=seed), kept, {**fixed, **do}, batch_size)
    return out


def guidance_sweep(scm: SCM, factual: Mapping[str, Tensor], do: Mapping[str, Any], *, image_node: str,
                   scales: Sequence[float], score: Callable[[SCM, dict[str, Tensor]], dict[str, Any]],
                   fractions: Sequence[float | None] = (None,), nodes: Sequence[str] | None = None,
                   batch_size: int | None = None, seed: int | None = 0, timer: Timer | None = None,
                   on_row: Callable[[float | None, float, dict[str, Any]], None] | None = None,
                   ) -> tuple[dict[float | None, dict[float, dict[str, Any]]], dict[tuple, dict[str, Tensor]]]:
    """``score(scm_fs, counterfactual_rows)`` for every abduction fraction ``f`` (None: the mechanisms'
    own) and guidance scale ``s`` of the diffusion ``nodes`` (Diff-SCM's figure), abducting once per
    fraction. Returns ``({f: {s: row}}, {(f, s): rows})``; ``on_row(f, s, row)`` after each row;
    ``timer`` gets the phases ``abduction``, ``generation (sweep)``, ``metrics``."""
    timer = timer or Timer(scm.device)
    fixed = _fixed_non_descendants(scm, factual, do)
    sweeps: dict[float | None, dict[float, dict[str, Any]]] = {}
    counterfactuals: dict[tuple, dict[str, Tensor]] = {}
    for f in fractions:
        scm_f = with_inference(scm, nodes, abduction_fraction=f)
        with timer("abduction"):
            noise = _chunked(lambda r, _: (scm_f.do(fixed) if fixed else scm_f).abduct(r, seed=seed),
                             factual, {}, batch_size)
        sweeps[f] = {}
        desc = "guidance scales" + ("" if f is None else f" (abduction fraction {f:g})")
        for s in progress(list(scales), desc=desc):
            scm_fs = with_inference(scm_f, nodes, guidance_scale=s)
            with timer("generation (sweep)"):
                rows = _chunked(lambda u, d: scm_fs.predict(u, do=d, seed=seed), noise, {**fixed, **do},
                                batch_size)
            with timer("metrics"):
                row = sweeps[f][s] = score(scm_fs, rows)
            counterfactuals[(f, s)] = rows
            if on_row is not None:
                on_row(f, s, row)
    return sweeps, counterfactuals


__all__ = ["shared_abduction_counterfactuals", "mean", "mean_sem", "other_class", "counterfactual_fn", "counterfactual_image_scores",
           "axiom_metrics", "image_counterfactual_metrics", "diffusion_nodes", "with_inference", "guidance_sweep"]
