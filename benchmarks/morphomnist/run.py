"""The Morpho-MNIST benchmark run: settings, the causaldiff SCM, and the protocol over systems.

Systems scored by :class:`benchmarks.morphomnist.protocol.Protocol` on the same test rows and
intervention values: ``truth`` (the exact counterfactuals: do(t), do(i)), ``unchanged`` (the
factual image: a floor for minimality, a ceiling for every error), and causaldiff with the image
node's denoiser of each entry of ``Setting.nets`` (a UNet, a DiT). Without ``n_sweep`` every
guidance scale is scored on every row; with it, the scales (and ``fractions``) are swept on the
first ``n_sweep`` rows (no composition nor reversibility) and the pair of the best mean rank over
:data:`RANKED` (:func:`benchmarks.common.choose.choose_main`) is
scored on all rows.
The true counterfactuals are rendered in worker processes while the networks train.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx
import torch
from torch import Tensor

from causaldiff import metrics as M
from causaldiff.datasets.base import Draw
from causaldiff.evaluation.axioms import counterfactual_fn, guidance_sweep, shared_abduction_counterfactuals, with_inference
from causaldiff.evaluation.report import Timer
from causaldiff.mechanisms.categorical import CategoricalMechanism
from causaldiff.mechanisms.diffusion import DiffusionConfig, DiffusionMechanism
from causaldiff.mechanisms.neural import AdditiveNoiseConfig, AdditiveNoiseMechanism
from causaldiff.scm import SCM

from benchmarks.common.budget import budgeted_diffusion
from benchmarks.common.choose import choose_main
from benchmarks.morphomnist.dataset import EDGES, TRUE_INTERVENTIONS, MorphoMNIST
from benchmarks.morphomnist.protocol import Protocol, TrueCounterfactuals, benchmark_interventions, first, train_predictors, unchanged_fn
from benchmarks.morphomnist.settings import SETTINGS, Setting, image_config


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
        do = first(do, len(rows_f))
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


#: the effectiveness figures the main pair is ranked by (1: lower is better, -1: higher)
RANKED = {"thickness MAE do(t)": 1.0, "intensity MAE do(i)": 1.0, "digit acc do(digit)": -1.0}


def _score_net(setting: Setting, scm: SCM, protocol: Protocol, name: str, seed: int,
               timer: Timer) -> tuple[dict[str, Any], dict[tuple[float, float], dict[str, float]], tuple[float, float]]:
    """The scores of one fitted SCM (``{system: scores}``), its sweep ``{(fraction, scale):
    figures}`` and its main ``(fraction, scale)``."""
    def fn(f: float, s: float) -> M.CounterfactualFn:
        return counterfactual_fn(with_inference(scm, ["image"], abduction_fraction=f, guidance_scale=s), seed=seed,
                                 batch_size=setting.eval_batch)

    if setting.n_sweep is None:
        f, out = setting.abduction_fraction, {}
        for s in setting.scales:
            with timer(f"score {name} s={s:g}"):
                out[f"{name} s={s:g}"] = protocol.score(fn(f, s))
        sweep = {(f, s): _flat(out[f"{name} s={s:g}"]) for s in setting.scales}
        return out, sweep, (f, setting.scales[len(setting.scales) // 2])
    head, per_node = protocol.head(setting.n_sweep), {}
    fractions = setting.fractions or (setting.abduction_fraction,)
    for node, do in head.interventions.items():  # one abduction per intervention and fraction
        per_node[node], _ = guidance_sweep(scm, head.factual.values, do, image_node="image", scales=setting.scales,
                                           fractions=fractions, batch_size=setting.eval_batch, seed=seed,
                                           score=lambda _scm, cf, node=node: head.intervention_scores(
                                               node, cf, measured=node == "thickness"), timer=timer)
    sweep = {(f, s): _flat({"interventions": {node: per_node[node][f][s] for node in per_node}})
             for f in fractions for s in setting.scales}
    f, s = main = choose_main(sweep, "rank", ranked=RANKED)
    with timer(f"score {name} f={f:g} s={s:g}"):
        cfs = shared_abduction_counterfactuals(with_inference(scm, ["image"], abduction_fraction=f, guidance_scale=s),
                                               protocol.factual.values, protocol.interventions,
                                               batch_size=setting.eval_batch, seed=seed)
        return {f"{name} f={f:g} s={s:g}": protocol.score(fn(f, s), counterfactuals=cfs)}, sweep, main


def sweep_lines(sweeps: Mapping[str, Mapping[tuple[float, float], Any]]) -> dict[str, dict[float, Any]]:
    """``{label: {scale: figures}}`` for the plot and the results: one line per net, per
    abduction fraction where a net swept several (``"unet f=0.75"``)."""
    out: dict[str, dict[float, Any]] = {}
    for net, sweep in sweeps.items():
        fractions = sorted({f for f, _ in sweep})
        for (f, s), figures in sorted(sweep.items()):
            out.setdefault(net if len(fractions) == 1 else f"{net} f={f:g}", {})[s] = figures
    return out


def run(setting: Setting, *, seed: int = 0, device: str = "cpu", timer: Timer | None = None,
        cache_dir: str | None = None) -> dict[str, Any]:
    """Every system of the module docstring scored on the same rows: ``{"scores": {system:
    scores}, "sweeps": {net: {(fraction, scale): figures}}, "main": {net: {"abduction_fraction",
    "guidance_scale"}}, "budgets": {net: ...}, "grid": (rows, labels)}`` (the grid of the first net
    at its main setting)."""
    timer = timer or Timer(device)
    ds = MorphoMNIST(subset=setting.subset, workers=setting.workers, cache_dir=cache_dir)
    with timer("data"):
        train, factual = ds.load("train", setting.n_train, seed), ds.load("test", setting.n_test, seed)
        reference = ds.load("test", setting.n_reference, seed + 1)
    ivs = benchmark_interventions(factual, train, torch.Generator().manual_seed(seed))
    truths = TrueCounterfactuals(ds, factual, ivs, background=True)  # rendered while the networks train
    try:
        return _run_systems(setting, ds, train, factual, reference, ivs, truths, seed, device, timer)
    except BaseException:
        truths.cancel()
        raise


def _run_systems(setting: Setting, ds: MorphoMNIST, train: Draw, factual: Draw, reference: Draw,
                 ivs: Mapping[str, Mapping[str, Tensor]], truths: TrueCounterfactuals, seed: int, device: str,
                 timer: Timer) -> dict[str, Any]:
    """:func:`run` once its data and the background renders are ready."""
    with timer("metric models"):
        predictors = train_predictors(train, setting.metric_models, device, seed + 10)
        vae = M.train_vae(train.values["image"], config=setting.vae, device=device, seed=seed + 30)
    protocol = Protocol(ds, factual, ivs, predictors, vae, reference, setting.cycles, truths, setting.n_detail,
                        setting.workers)
    models: dict[str, Any] = {}
    sweeps, main, budgets, grid = {}, {}, {}, None
    for name, net in setting.nets.items():
        scm, budgets[name] = fit_scm(setting, net, train, device, timer, name)
        scores, sweeps[name], (f, s) = _score_net(setting, scm, protocol, name, seed, timer)
        main[name] = {"abduction_fraction": f, "guidance_scale": s}
        models.update(scores)
        if grid is None:
            fn = counterfactual_fn(with_inference(scm, ["image"], abduction_fraction=f, guidance_scale=s), seed=seed,
                                   batch_size=setting.eval_batch)
            with timer("grid"):
                grid = grid_rows(fn, ds, factual, ivs)
    with timer("truth and unchanged"):
        out = {"truth": protocol.score(truths.fn, tuple(TRUE_INTERVENTIONS)), "unchanged": protocol.score(unchanged_fn)}
    return {"scores": {**out, **models}, "sweeps": sweeps, "main": main, "budgets": budgets, "grid": grid}


__all__ = ["Setting", "SETTINGS", "image_config", "build_scm", "fit_scm", "RANKED", "sweep_lines", "grid_rows", "run"]
