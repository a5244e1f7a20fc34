"""The Morpho-MNIST benchmark run: settings, the causaldiff SCM, and the protocol over systems.

Systems scored by :class:`benchmarks.morphomnist.protocol.Protocol` on the same test rows (the
published test split) and intervention values (the benchmark's draw rule): ``truth`` (the exact
counterfactuals: do(t), do(i)), ``unchanged`` (the factual image: a floor for minimality, a ceiling
for every error), and causaldiff with the image node of each entry of ``Setting.nets``
(:func:`benchmarks.morphomnist.settings.image_config`: the conditional node with anchored guidance by
default). Without ``n_sweep`` every scale is scored on every test row; with it, the last ``n_sweep``
of the drawn training rows are held out as validation rows, the scales and ``fractions`` are swept
on them (:func:`validation_sweep`) and the pair of the best mean rank over :data:`RANKED`
(:func:`benchmarks.common.choose.choose_main`) is scored on the test rows: the test split never
chooses. The true counterfactuals are rendered in worker processes while the networks train.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch
from torch import Tensor

from causaldiff import metrics as M
from causaldiff.datasets.base import Draw
from causaldiff.evaluation.axioms import counterfactual_fn, with_inference
from causaldiff.evaluation.report import Timer
from causaldiff.mechanisms.categorical import CategoricalMechanism
from causaldiff.mechanisms.diffusion import DiffusionConfig, DiffusionMechanism
from causaldiff.mechanisms.neural import AdditiveNoiseConfig, AdditiveNoiseMechanism
from causaldiff.scm import SCM
from causaldiff.scm import load as load_scm

from benchmarks.common.budget import budgeted_diffusion
from benchmarks.common.choose import choose_main
from benchmarks.morphomnist.dataset import EDGES, TRUE_INTERVENTIONS, MorphoMNIST
from benchmarks.morphomnist.effectiveness import BN_MODES, ReleasedPredictors
from benchmarks.morphomnist.draws import DrawRule
from benchmarks.morphomnist.protocol import (Protocol, TrueCounterfactuals, benchmark_interventions, composition_scores,
                                             first, unchanged_fn)
from benchmarks.morphomnist import published
from benchmarks.morphomnist.settings import SETTINGS, Setting, image_config, sampler_update


def build_scm(setting: Setting, net: Any, image: DiffusionConfig | None = None) -> SCM:
    """The unfitted SCM: categorical digit, additive-noise thickness and intensity, and the
    image node of :func:`image_config` (or ``image``)."""
    parents = AdditiveNoiseConfig(hidden=(64, 64), steps=setting.parents_steps)
    return SCM(nx.DiGraph(EDGES), {"digit": CategoricalMechanism(num_classes=10),
                                   "thickness": AdditiveNoiseMechanism(parents),
                                   "intensity": AdditiveNoiseMechanism(parents),
                                   "image": DiffusionMechanism(image or image_config(setting, net))})


def fit_scm(setting: Setting, net: Any, train: Draw, device: str, timer: Timer, name: str,
            checkpoint_dir: str | None = None) -> tuple[SCM, dict]:
    """The SCM of ``net`` fitted on ``train``, the image node's step counts fitted into the
    setting's budgets first (``{"denoiser": ..., "predictor": ...}``: what the budgets gave); the
    denoiser checkpoints into (and resumes from) ``checkpoint_dir``/``name`` when given."""
    config = image_config(setting, net, None if checkpoint_dir is None else str(Path(checkpoint_dir) / name))
    parents = sorted(p for p, c in EDGES if c == "image")
    with timer(f"budget probes {name}"):
        config, info = budgeted_diffusion(config, train.values["image"].to(device),
                                          {p: train.values[p].to(device) for p in parents}, parents, node="image",
                                          device=device, denoiser=setting.denoiser_budget,
                                          predictor=setting.predictor_budget if setting.guidance == "anticausal"
                                          else None)
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
    cycled = dict(rows_f.values)
    for _ in range(10):  # the null intervention fed back in: composition's 10 cycles
        cycled = fn(cycled, {k: cycled[k] for k in ivs})
    rows.append(cycled["image"])
    labels.append("10-cycle composition")
    return rows, labels


def _flat(r: Mapping[str, Any]) -> dict[str, float]:
    i = r["interventions"]
    return {"thickness MAE do(t)": i["thickness"]["effectiveness"][BN_MODES[0]]["thickness_mae"],
            "intensity MAE do(i)": i["intensity"]["effectiveness"][BN_MODES[0]]["intensity_mae"],
            "digit acc do(digit)": i["digit"]["effectiveness"][BN_MODES[0]]["digit_acc"],
            "measured thickness MAE do(t)": i["thickness"]["measured"]["thickness_mae"]}


#: the validation figures the main pair is ranked by (1: lower is better, -1: higher)
RANKED = {"thickness MAE do(t)": 1.0, "intensity MAE do(i)": 1.0, "digit acc do(digit)": -1.0,
          "composition L1 1 cycle": 1.0}


def _fn(setting: Setting, scm: SCM, f: float, s: float, seed: int) -> M.CounterfactualFn:
    """The counterfactual function at abduction fraction ``f`` and scale ``s`` (the anchor scale w
    of the conditional node, the guidance scale of the anti-causal one), with the setting's sampler
    (a loaded SCM is scored with it too)."""
    scale = {"anchor_scale" if setting.guidance == "conditional" else "guidance_scale": s}
    return counterfactual_fn(with_inference(scm, ["image"], abduction_fraction=f, sampler=sampler_update(setting),
                                            **scale), seed=seed,
                             batch_size=setting.eval_batch)


def validation_sweep(setting: Setting, scm: SCM, validation: Protocol, seed: int,
                     timer: Timer) -> dict[tuple[float, float], dict[str, float]]:
    """``{(fraction, scale): figures}`` on the validation rows of the training split: the
    effectiveness of each intervention and the 1-cycle composition (which a scale does not change
    for the anchored node: one per fraction)."""
    sweep, anchored = {}, setting.guidance == "conditional"
    for f in setting.fractions or (setting.abduction_fraction,):
        comp = None
        for s in setting.scales:
            fn = _fn(setting, scm, f, s, seed)
            with timer("validation sweep"):
                if comp is None or not anchored:
                    comp = composition_scores(fn, validation.factual.values, (1,))["1"]["mean"]
                sweep[(f, s)] = {**_flat(validation.score(fn, sweep=True)), "composition L1 1 cycle": comp}
    return sweep


#: the validation column each intervention's pair is chosen by (``per_intervention``)
OWN_COLUMN = {"thickness": "thickness MAE do(t)", "intensity": "intensity MAE do(i)", "digit": "digit acc do(digit)"}


def per_intervention(sweep: Mapping[tuple[float, float], Mapping[str, float]]) -> dict[str, tuple[float, float]]:
    """``{node: (fraction, scale)}``: each intervention's best pair of ``sweep`` on its own column,
    and ``"null"``'s (composition, a null intervention) on the 1-cycle composition."""
    columns = {**OWN_COLUMN, "null": "composition L1 1 cycle"}
    return {node: choose_main(sweep, "rank", ranked={col: RANKED[col]}) for node, col in columns.items()}


def dispatch(fns: Mapping[str, M.CounterfactualFn]) -> M.CounterfactualFn:
    """One counterfactual function: a do of one node by that node's function, any other do (the
    null intervention of composition) by ``fns["null"]``."""
    def fn(rows: Mapping[str, Tensor], do: Mapping[str, Any]) -> dict[str, Tensor]:
        return fns.get(next(iter(do)) if len(do) == 1 else "null", fns["null"])(rows, do)
    return fn


def _score_net(setting: Setting, scm: SCM, protocol: Protocol, validation: Protocol | None, name: str,
               seed: int, timer: Timer) -> tuple[dict[str, Any], dict[tuple[float, float], dict[str, float]],
                                             dict[str, tuple[float, float]]]:
    """The scores of one fitted SCM (``{system: scores}``), its sweep ``{(fraction, scale):
    figures}`` and its main pairs ``{node: (fraction, scale)}`` (``"null"``: the pair of every do
    without its own, :func:`dispatch`): chosen on the ``validation`` rows (of the training split) by
    :func:`choose_main`, per intervention with ``per_intervention``, and scored on the test rows;
    without validation rows every scale is scored on the test rows."""
    if validation is None:
        f, out = setting.abduction_fraction, {}
        for s in setting.scales:
            with timer(f"score {name} s={s:g}"):
                out[f"{name} s={s:g}"] = protocol.score(_fn(setting, scm, f, s, seed))
        sweep = {(f, s): _flat(out[f"{name} s={s:g}"]) for s in setting.scales}
        return out, sweep, {"null": (f, setting.scales[len(setting.scales) // 2])}
    sweep = validation_sweep(setting, scm, validation, seed, timer)
    if setting.per_intervention:
        pairs = per_intervention(sweep)
        fn = dispatch({node: _fn(setting, scm, f, s, seed) for node, (f, s) in pairs.items()})
        with timer(f"score {name} per intervention"):
            return {f"{name} per-intervention": protocol.score(fn)}, sweep, pairs
    f, s = main = choose_main(sweep, "rank", ranked=RANKED)
    with timer(f"score {name} f={f:g} s={s:g}"):
        return {f"{name} f={f:g} s={s:g}": protocol.score(_fn(setting, scm, f, s, seed))}, sweep, {"null": main}


def sweep_lines(sweeps: Mapping[str, Mapping[tuple[float, float], Any]]) -> dict[str, dict[float, Any]]:
    """``{label: {scale: figures}}`` for the plot and the results: one line per net, per
    abduction fraction where a net swept several (``"unet f=0.75"``)."""
    out: dict[str, dict[float, Any]] = {}
    for net, sweep in sweeps.items():
        fractions = sorted({f for f, _ in sweep})
        for (f, s), figures in sorted(sweep.items()):
            out.setdefault(net if len(fractions) == 1 else f"{net} f={f:g}", {})[s] = figures
    return out


def training_rules() -> dict[str, DrawRule]:
    """The benchmark's draw rule on the training split's csv values (the validation rows'
    interventions: nothing of the test split is used to choose)."""
    t, i = published.targets("train")
    return {"thickness": DrawRule.from_values("thickness", t), "intensity": DrawRule.from_values("intensity", i)}


def run(setting: Setting, *, seed: int = 0, device: str = "cpu", timer: Timer | None = None,
        cache_dir: str | None = None, checkpoint_dir: str | None = None, save_dir: str | None = None,
        evaluate: str | None = None) -> dict[str, Any]:
    """Every system of the module docstring scored on the same rows: ``{"scores": {system:
    scores}, "floors": ..., "sweeps": {net: {(fraction, scale): figures}}, "main": {net:
    {"abduction_fraction", "guidance_scale"}}, "budgets": {net: ...}, "grid": (rows, labels)}`` (the
    grid of the first net at its main setting). The fitted SCMs are saved under ``save_dir/NET``
    (safetensors) when given; ``evaluate`` re-scores the SCMs saved under ``evaluate/NET`` without
    training."""
    timer = timer or Timer(device)
    ds = MorphoMNIST(subset=setting.subset, workers=setting.workers, cache_dir=cache_dir)
    n_val = setting.n_sweep or 0
    if n_val and setting.n_train - n_val < 8:
        raise ValueError(f"n_sweep={n_val} leaves fewer than 8 of n_train={setting.n_train} rows to fit on")
    with timer("data"):
        drawn = ds.load("train", setting.n_train, seed)
        train = drawn[torch.arange(setting.n_train - n_val)]
        factual = ds.load("test", setting.n_test, seed)
        reference = ds.load("test", setting.n_reference, seed + 1)
    ivs = benchmark_interventions(factual, np.random.default_rng(seed))
    n_truth = min(setting.n_detail or setting.n_test, setting.n_test)  # the costly renders: the detail rows
    truths = TrueCounterfactuals(ds, factual[torch.arange(n_truth)], {k: first(v, n_truth) for k, v in ivs.items()},
                                 background=True)  # rendered while the networks train
    validation = None
    if n_val:
        val = drawn[torch.arange(setting.n_train - n_val, setting.n_train)]
        val_ivs = benchmark_interventions(val, np.random.default_rng(seed + 1), training_rules())
        validation = (val, val_ivs)
    try:
        return _run_systems(setting, ds, train, factual, reference, ivs, truths, validation, seed, device, timer,
                            checkpoint_dir, save_dir, evaluate)
    except BaseException:
        truths.cancel()
        raise


def variants(setting: Setting) -> list[tuple[str, Any, Setting]]:
    """``(row name, net, setting)`` of each system fitted: every net with the setting's guidance,
    and with Diff-SCM's anti-causal guidance as its own row ``"NET anticausal"`` when
    ``anticausal_row``."""
    out = [(name, net, setting) for name, net in setting.nets.items()]
    if setting.anticausal_row and setting.guidance != "anticausal":
        other = setting.model_copy(update={"guidance": "anticausal"})
        out += [(f"{name} anticausal", net, other) for name, net in setting.nets.items()]
    return out


def _fitted(setting: Setting, name: str, net: Any, train: Draw, device: str, timer: Timer,
            checkpoint_dir: str | None, save_dir: str | None, evaluate: str | None) -> tuple[SCM, dict]:
    """The SCM of ``net``: loaded from ``evaluate/name``, or fitted (and saved to ``save_dir/name``)."""
    if evaluate is not None:
        with timer(f"load {name}"):
            return load_scm(Path(evaluate) / name, map_location=device), {"loaded": str(Path(evaluate) / name)}
    scm, budget = fit_scm(setting, net, train, device, timer, name, checkpoint_dir)
    if save_dir is not None:
        scm.save(Path(save_dir) / name)
    return scm, budget


def _run_systems(setting: Setting, ds: MorphoMNIST, train: Draw, factual: Draw, reference: Draw,
                 ivs: Mapping[str, Mapping[str, Tensor]], truths: TrueCounterfactuals,
                 validation: tuple[Draw, Mapping[str, Mapping[str, Tensor]]] | None, seed: int, device: str,
                 timer: Timer, checkpoint_dir: str | None, save_dir: str | None,
                 evaluate: str | None) -> dict[str, Any]:
    """:func:`run` once its data and the background renders are ready."""
    predictors = ReleasedPredictors.load()
    with timer("metric models"):
        vae = M.train_vae(train.values["image"], config=setting.vae, device=device, seed=seed + 30)
    protocol = Protocol(ds, factual, ivs, predictors, vae, reference, setting.cycles, truths, setting.n_detail,
                        setting.workers)
    val = None if validation is None else Protocol(ds, validation[0], validation[1], predictors, None, validation[0],
                                                   (1,), None, None, setting.workers)
    models: dict[str, Any] = {}
    sweeps, main, budgets, grid = {}, {}, {}, None
    for name, net, variant in variants(setting):
        scm, budgets[name] = _fitted(variant, name, net, train, device, timer, checkpoint_dir, save_dir, evaluate)
        scores, sweeps[name], pairs = _score_net(variant, scm, protocol, val, name, seed, timer)
        main[name] = {node: {"abduction_fraction": f, "guidance_scale": s} for node, (f, s) in pairs.items()}
        models.update(scores)
        if grid is None:
            with timer("grid"):
                grid = grid_rows(dispatch({k: _fn(variant, scm, f, s, seed) for k, (f, s) in pairs.items()}),
                                 ds, factual, ivs)
    with timer("truth and unchanged"):
        out = {"truth": protocol.head(len(truths.factual)).score(truths.fn, tuple(TRUE_INTERVENTIONS)),
               "unchanged": protocol.score(unchanged_fn)}
    return {"scores": {**out, **models}, "floors": protocol.floors(), "sweeps": sweeps, "main": main,
            "budgets": budgets, "grid": grid}


__all__ = ["Setting", "SETTINGS", "image_config", "build_scm", "fit_scm", "RANKED", "OWN_COLUMN", "per_intervention",
           "dispatch", "sweep_lines", "grid_rows",
           "training_rules", "validation_sweep", "variants", "run"]
