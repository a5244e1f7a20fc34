"""The Morpho-MNIST benchmark run: settings, the causaldiff SCM, and the protocol over systems.

Systems scored by :func:`causaldiff.evaluation.morphomnist.score_counterfactuals` on the same test
rows and intervention values: ``truth`` (the exact counterfactuals: do(t), do(i)), ``unchanged``
(the factual image: a floor for minimality, a ceiling for every error), and causaldiff with the
image node's denoiser of each entry of ``Setting.nets`` (a UNet, a DiT), at each guidance scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from .. import metrics as M
from ..datasets.base import Draw
from ..datasets.morphomnist import EDGES, TRUE_INTERVENTIONS, MorphoMNIST
from ..diffusion.ddim import DDIMConfig
from ..diffusion.nets import DenoiserConfig, ImagePredictorConfig, UNetConfig
from ..diffusion.schedule import ScheduleConfig
from ..mechanisms.categorical import CategoricalMechanism
from ..mechanisms.diffusion import DiffusionConfig, DiffusionMechanism
from ..mechanisms.neural import AdditiveNoiseConfig, AdditiveNoiseMechanism
from ..scm import SCM
from ..training import TrainConfig
from .axioms import counterfactual_fn, with_inference
from .morphomnist import (benchmark_interventions, score_counterfactuals, train_predictors, truth_fn,
                          unchanged_fn)
from .report import Timer


class Setting(BaseModel):
    """One benchmark setting (``quick``, ``cpu``, ``gpu`` in :data:`SETTINGS`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subset: int | None = None
    workers: int = 2
    n_train: int = Field(60_000, ge=8)
    n_test: int = Field(10_000, ge=2)
    n_reference: int = Field(1000, ge=10)
    nets: dict[str, DenoiserConfig] = {"unet": UNetConfig()}
    predictor: ImagePredictorConfig = ImagePredictorConfig()
    denoiser_train: TrainConfig = TrainConfig()
    predictor_train: TrainConfig = TrainConfig()
    parents_steps: int = 2000
    ddim_steps: int = 100
    abduction_fraction: float = 0.75
    scales: tuple[float, ...] = (0.0, 1.0, 2.0)
    cycles: tuple[int, ...] = (1, 10)
    metric_models: M.ClassifierConfig = M.ClassifierConfig()
    vae: M.VAEConfig = M.VAEConfig()
    eval_batch: int = 256


def _tiny_net(kind: str) -> dict[str, Any]:
    return {"kind": kind, "base_channels": 8, "channel_mult": (1, 2), "mid_attention": False,
            "num_groups": 4} if kind == "unet" else {"kind": kind, "patch_size": 4, "hidden": 32, "depth": 2}


SETTINGS: dict[str, Setting] = {
    "quick": Setting.model_validate({
        "subset": 32, "workers": 1, "n_train": 32, "n_test": 6, "n_reference": 16,
        "nets": {"unet": _tiny_net("unet")}, "predictor": {"base_channels": 8, "channel_mult": (1, 2), "num_groups": 4},
        "denoiser_train": {"steps": 4, "batch_size": 16}, "predictor_train": {"steps": 4, "batch_size": 16},
        "parents_steps": 20, "ddim_steps": 4, "scales": (0.0, 1.0), "cycles": (1, 10),
        "metric_models": {"steps": 4, "batch_size": 16, "hidden": 4},
        "vae": {"steps": 4, "batch_size": 16, "hidden": 4, "latent_dim": 4}}),
}


def _net(kind: str, width: int) -> dict[str, Any]:
    if kind == "unet":
        return {"kind": "unet", "base_channels": width, "channel_mult": (1, 2, 2), "mid_attention": True,
                "num_groups": 8}
    return {"kind": "dit", "patch_size": 4, "hidden": 4 * width, "depth": 4, "num_heads": 4}


SETTINGS["cpu"] = Setting.model_validate({
    "subset": 3000, "workers": 2, "n_train": 3000, "n_test": 200, "n_reference": 1000,
    "nets": {"unet": _net("unet", 16), "dit": _net("dit", 16)},
    "predictor": {"base_channels": 16, "channel_mult": (1, 2, 2), "num_groups": 8},
    "denoiser_train": {"steps": 800, "batch_size": 64, "lr": 1e-3},
    "predictor_train": {"steps": 400, "batch_size": 64, "lr": 1e-3},
    "parents_steps": 1000, "ddim_steps": 10, "scales": (0.0, 1.0, 3.0),
    "metric_models": {"steps": 500, "batch_size": 64}, "vae": {"steps": 500, "batch_size": 64}})
SETTINGS["gpu"] = Setting.model_validate({
    "subset": None, "workers": 16, "n_train": 60_000, "n_test": 10_000, "n_reference": 10_000,
    "nets": {"unet": {"kind": "unet", "base_channels": 64, "channel_mult": (1, 2, 4)},
             "dit": {"kind": "dit", "patch_size": 2, "hidden": 256, "depth": 6}},
    "predictor": {"base_channels": 64, "channel_mult": (1, 2, 4)},
    "denoiser_train": {"steps": 4000, "batch_size": 256, "lr": 2e-4, "weight_decay": 0.01, "bf16": True},
    "predictor_train": {"steps": 1500, "batch_size": 256, "lr": 2e-4, "bf16": True},
    "parents_steps": 2000, "ddim_steps": 50, "scales": (0.0, 0.5, 1.0, 2.0, 3.0), "eval_batch": 2048,
    "metric_models": {"steps": 2000, "batch_size": 256}, "vae": {"steps": 2000, "batch_size": 256}})


def build_scm(setting: Setting, net: Any) -> SCM:
    """The unfitted SCM: categorical digit, additive-noise thickness and intensity, and the
    image as an unconditional denoiser guided by an anti-causal predictor of all three parents."""
    image = DiffusionMechanism(DiffusionConfig(
        guidance="anticausal", guidance_scale=1.0, guide_abduction=False,
        abduction_fraction=setting.abduction_fraction, schedule=ScheduleConfig(kind="cosine"),
        sampler=DDIMConfig(num_inference_steps=setting.ddim_steps, inversion_fixed_point_iters=0),
        net=net, predictor=setting.predictor, train=setting.denoiser_train,
        predictor_train=setting.predictor_train))
    parents = AdditiveNoiseConfig(hidden=(64, 64), steps=setting.parents_steps)
    return SCM(nx.DiGraph(EDGES), {"digit": CategoricalMechanism(num_classes=10),
                                   "thickness": AdditiveNoiseMechanism(parents),
                                   "intensity": AdditiveNoiseMechanism(parents), "image": image})


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


def run(setting: Setting, *, seed: int = 0, device: str = "cpu", timer: Timer | None = None,
        cache_dir: str | None = None) -> dict[str, Any]:
    """Every system of the module docstring scored on the same rows: ``{"scores": {system:
    scores}, "grid": (rows, labels)}`` (the grid of the first net at its middle guidance scale)."""
    timer = timer or Timer(device)
    ds = MorphoMNIST(subset=setting.subset, workers=setting.workers, cache_dir=cache_dir)
    with timer("data"):
        train, factual = ds.load("train", setting.n_train, seed), ds.load("test", setting.n_test, seed)
        reference = ds.load("test", setting.n_reference, seed + 1)
    ivs = benchmark_interventions(factual, train, torch.Generator().manual_seed(seed))
    with timer("metric models"):
        predictors = train_predictors(train, setting.metric_models, device, seed + 10)
        vae = M.train_vae(train.values["image"], config=setting.vae, device=device, seed=seed + 30)
    args, scores = (ds, factual), (predictors, vae, reference, setting.cycles)
    out: dict[str, Any] = {"truth": score_counterfactuals(truth_fn(ds, factual), *args,
                                                          {k: ivs[k] for k in TRUE_INTERVENTIONS}, *scores),
                           "unchanged": score_counterfactuals(unchanged_fn, *args, ivs, *scores)}
    grid = None
    for name, net in setting.nets.items():
        scm = build_scm(setting, net).to(device)
        with timer(f"fit {name}"):
            scm.fit(train.values)
        for s in setting.scales:
            fn = counterfactual_fn(with_inference(scm, ["image"], guidance_scale=s), seed=seed,
                                   batch_size=setting.eval_batch)
            with timer(f"score {name} s={s:g}"):
                out[f"{name} s={s:g}"] = score_counterfactuals(fn, *args, ivs, *scores)
            if grid is None and s == setting.scales[len(setting.scales) // 2]:
                grid = grid_rows(fn, ds, factual, ivs)
    return {"scores": out, "grid": grid}


def sweep(scores: Mapping[str, Any], setting: Setting) -> dict[str, dict[float, dict[str, float]]]:
    """``{net: {scale: {metric: value}}}``: effectiveness against the guidance scale."""
    def flat(r: Mapping[str, Any]) -> dict[str, float]:
        i = r["interventions"]
        return {"thickness MAE do(t)": i["thickness"]["effectiveness"]["thickness_mae"],
                "intensity MAE do(i)": i["intensity"]["effectiveness"]["intensity_mae"],
                "digit acc do(digit)": i["digit"]["effectiveness"]["digit_acc"],
                "measured thickness MAE do(t)": i["thickness"]["measured"]["thickness_mae"]}
    return {net: {s: flat(scores[f"{net} s={s:g}"]) for s in setting.scales} for net in setting.nets}


__all__ = ["Setting", "SETTINGS", "build_scm", "grid_rows", "run", "sweep"]
