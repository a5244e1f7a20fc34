"""The Morpho-MNIST benchmark run: settings, the causaldiff SCM, and the protocol over systems.

Systems scored by :class:`causaldiff.evaluation.morphomnist.Protocol` on the same test rows and
intervention values: ``truth`` (the exact counterfactuals: do(t), do(i)), ``unchanged`` (the
factual image: a floor for minimality, a ceiling for every error), and causaldiff with the image
node's denoiser of each entry of ``Setting.nets`` (a UNet, a DiT). Without ``n_sweep`` every
guidance scale is scored on every row; with it, the scales are swept on the first ``n_sweep`` rows
(no composition nor reversibility) and the scale :func:`choose_scale` picks is scored on all rows.
The true counterfactuals are rendered in worker processes while the networks train.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx
import torch
from torch import Tensor

from .. import metrics as M
from ..datasets.base import Draw
from ..datasets.morphomnist import EDGES, TRUE_INTERVENTIONS, MorphoMNIST
from ..mechanisms.categorical import CategoricalMechanism
from ..mechanisms.diffusion import DiffusionConfig, DiffusionMechanism
from ..mechanisms.neural import AdditiveNoiseConfig, AdditiveNoiseMechanism
from ..scm import SCM
from .axioms import counterfactual_fn, guidance_sweep, shared_abduction_counterfactuals, with_inference
from .budget import budgeted_diffusion
from .morphomnist import Protocol, TrueCounterfactuals, benchmark_interventions, train_predictors, unchanged_fn
from .morphomnist_plan import fit_time_limit, measure_units
from .morphomnist_settings import SETTINGS, Setting, image_config
from .report import Timer


def build_scm(setting: Setting, net: Any, image: DiffusionConfig | None = None) -> SCM:
    """The unfitted SCM: categorical digit, additive-noise thickness and intensity, and the
    image node of :func:`image_config` (or ``image``)."""
    parents = AdditiveNoiseConfig(hidden=(64, 64), steps=setting.parents_steps)
    return SCM(nx.DiGraph(EDGES), {"digit": CategoricalMechanism(num_classes=10),
                                   "thickness": AdditiveNoiseMechanism(parents),
                                   "intensity": AdditiveNoiseMechanism(parents),
                                   "image": DiffusionMechanism(image or image_config(setting, net))})


def fit_scm(setting: Setting, net: Any, train: Draw, device: str, timer: Timer, name: str) -> tuple[SCM, dict]:
    """The SCM of ``net`` fitted on ``train``, the image node's step counts fitted into the
    setting's budgets first (``{"denoiser": ..., "predictor": ...}``: what the budgets gave)."""
    config = image_config(setting, net)
    parents = sorted(p for p, c in EDGES if c == "image")
    with timer(f"budget probes {name}"):
        config, info = budgeted_diffusion(config, train.values["image"].to(device),
                                          {p: train.values[p].to(device) for p in parents}, parents, node="image",
                                          device=device, denoiser=setting.denoiser_budget,
                                          predictor=setting.predictor_budget)
    scm = build_scm(setting, net, config).to(device)
    with timer(f"fit {name}"):
        scm.fit(train.values)
    return scm, info


def grid_rows(fn: M.CounterfactualFn, ds: MorphoMNIST, factual: Draw, ivs: Mapping[str, Mapping[str, Tensor]],
              n: int = 8) -> tuple[list[Tensor], list[str]]:
    """The counterfactual grid: the factual row, a row per intervention, the true counterfactual
    beside do(t) and do(i)."""
    rows_f = factual[torch.arange(min(n, len(factual)))]
    rows, labels = [rows_f.values["image"]], ["factual"]
    for node, do in ivs.items():
        do = {k: v[:len(rows_f)] for k, v in do.items()}
        rows.append(fn(rows_f.values, do)["image"])
        labels.append(f"do({node})")
        if node in TRUE_INTERVENTIONS:
            rows.append(ds.counterfactual(rows_f, do)["image"])
            labels.append(f"true do({node})")
    return rows, labels


def _flat(r: Mapping[str, Any]) -> dict[str, float]:
    i = r["interventions"]
    return {"thickness MAE do(t)": i["thickness"]["effectiveness"]["thickness_mae"],
            "intensity MAE do(i)": i["intensity"]["effectiveness"]["intensity_mae"],
            "digit acc do(digit)": i["digit"]["effectiveness"]["digit_acc"],
            "measured thickness MAE do(t)": i["thickness"]["measured"]["thickness_mae"]}


def choose_scale(sweep: Mapping[float, Mapping[str, float]]) -> float:
    """The main guidance scale, by a rule fixed before any run: the best mean rank over the three
    effectiveness figures (thickness MAE of do(t), intensity MAE of do(i): lower; digit accuracy
    of do(digit): higher); ties go to the smaller scale."""
    scales = sorted(sweep)
    keys = {"thickness MAE do(t)": 1.0, "intensity MAE do(i)": 1.0, "digit acc do(digit)": -1.0}
    ranks = {s: 0.0 for s in scales}
    for key, sign in keys.items():
        for rank, s in enumerate(sorted(scales, key=lambda s: (sign * sweep[s][key], s))):
            ranks[s] += rank
    return min(scales, key=lambda s: (ranks[s], s))


def _score_net(setting: Setting, scm: SCM, protocol: Protocol, name: str, seed: int,
               timer: Timer) -> tuple[dict[str, Any], dict[float, dict[str, float]], float]:
    """The scores of one fitted SCM (``{system: scores}``), its sweep and its main scale."""
    def fn(s: float) -> M.CounterfactualFn:
        return counterfactual_fn(with_inference(scm, ["image"], guidance_scale=s), seed=seed,
                                 batch_size=setting.eval_batch)

    if setting.n_sweep is None:
        out = {}
        for s in setting.scales:
            with timer(f"score {name} s={s:g}"):
                out[f"{name} s={s:g}"] = protocol.score(fn(s))
        sweep = {s: _flat(out[f"{name} s={s:g}"]) for s in setting.scales}
        return out, sweep, setting.scales[len(setting.scales) // 2]
    head, per_node = protocol.head(setting.n_sweep), {}
    for node, do in head.interventions.items():  # one abduction per intervention, generated at every scale
        rows, _ = guidance_sweep(scm, head.factual.values, do, image_node="image", scales=setting.scales,
                                 score=lambda _scm, cf, node=node: head.intervention_scores(
                                     node, cf, measured=node == "thickness"),
                                 batch_size=setting.eval_batch, seed=seed, timer=timer)
        per_node[node] = rows[None]
    sweep = {s: _flat({"interventions": {node: per_node[node][s] for node in per_node}}) for s in setting.scales}
    main = choose_scale(sweep)
    with timer(f"score {name} s={main:g}"):
        cfs = shared_abduction_counterfactuals(with_inference(scm, ["image"], guidance_scale=main),
                                               protocol.factual.values, protocol.interventions,
                                               batch_size=setting.eval_batch, seed=seed)
        return {f"{name} s={main:g}": protocol.score(fn(main), counterfactuals=cfs)}, sweep, main


def _fit_to_limit(setting: Setting, ds: MorphoMNIST, device: str, timer: Timer) -> tuple[Setting, dict[str, Any]]:
    """The setting with its denoiser budget cut to what ``time_limit_s`` leaves, from unit costs
    timed here on ``device`` with the first net (:func:`~.morphomnist_plan.fit_time_limit`)."""
    if setting.time_limit_s is None or setting.denoiser_budget is None:
        return setting, {"fitted": False}
    with timer("time plan"):
        units = measure_units(setting, next(iter(setting.nets.values())), ds.handwriting("test")[0][:32], device)
    fitted, info = fit_time_limit(setting, units, elapsed=sum(timer.seconds.values()))
    print(f"  time limit {setting.time_limit_s:g} s: the rest projected at {info['projected_rest_s']:.0f} s, "
          f"the denoiser gets {fitted.denoiser_budget.seconds:.0f} s", flush=True)
    return fitted, {**info, "units": units}


def run(setting: Setting, *, seed: int = 0, device: str = "cpu", timer: Timer | None = None,
        cache_dir: str | None = None) -> dict[str, Any]:
    """Every system of the module docstring scored on the same rows: ``{"scores": {system:
    scores}, "sweeps": {net: {scale: figures}}, "main": {net: scale}, "budgets": {net: ...},
    "grid": (rows, labels)}`` (the grid of the first net at its main scale)."""
    timer = timer or Timer(device)
    ds = MorphoMNIST(subset=setting.subset, workers=setting.workers, cache_dir=cache_dir)
    with timer("data"):
        train, factual = ds.load("train", setting.n_train, seed), ds.load("test", setting.n_test, seed)
        reference = ds.load("test", setting.n_reference, seed + 1)
    ivs = benchmark_interventions(factual, train, torch.Generator().manual_seed(seed))
    truths = TrueCounterfactuals(ds, factual, ivs, background=True)  # rendered while the networks train
    with timer("metric models"):
        predictors = train_predictors(train, setting.metric_models, device, seed + 10)
        vae = M.train_vae(train.values["image"], config=setting.vae, device=device, seed=seed + 30)
    protocol = Protocol(ds, factual, ivs, predictors, vae, reference, setting.cycles, truths, setting.n_detail,
                        setting.workers)
    setting, limit = _fit_to_limit(setting, ds, device, timer)
    models: dict[str, Any] = {}
    sweeps, main, budgets, grid = {}, {}, {"time_limit": limit}, None
    for name, net in setting.nets.items():
        scm, budgets[name] = fit_scm(setting, net, train, device, timer, name)
        scores, sweeps[name], main[name] = _score_net(setting, scm, protocol, name, seed, timer)
        models.update(scores)
        if grid is None:
            fn = counterfactual_fn(with_inference(scm, ["image"], guidance_scale=main[name]), seed=seed,
                                   batch_size=setting.eval_batch)
            with timer("grid"):
                grid = grid_rows(fn, ds, factual, ivs)
    with timer("truth and unchanged"):
        out = {"truth": protocol.score(truths.fn, tuple(TRUE_INTERVENTIONS)), "unchanged": protocol.score(unchanged_fn)}
    return {"scores": {**out, **models}, "sweeps": sweeps, "main": main, "budgets": budgets, "grid": grid}


__all__ = ["Setting", "SETTINGS", "image_config", "build_scm", "fit_scm", "choose_scale", "grid_rows", "run"]
