"""The Diff-SCM MNIST benchmark's run (Sanchez & Tsaftaris, CLeaR 2022).

Graph ``digit -> image``: a learned categorical root and a :class:`DiffusionMechanism` with
anti-causal guidance (an unconditional UNet plus a time-conditioned digit classifier of ``x_t``).
:func:`run_mnist` trains the SCM (step counts fitted into a time budget by a timed probe), the
independent metric models (effectiveness classifier, IM1/IM2 autoencoders, CLD VAE), sweeps the
guidance scale for each abduction fraction (:func:`~causaldiff.evaluation.axioms.guidance_sweep`),
picks the main pair (:func:`benchmarks.common.choose.choose_main`, rule ``"cld"``), measures composition and
reversibility there, and writes ``mnist_diffscm_<name>.{json,md}``, a grid and the sweep plot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import networkx as nx
import torch
from torch import Tensor

from causaldiff import metrics as M
from causaldiff.datasets.mnist import load_mnist
from causaldiff.mechanisms.categorical import CategoricalMechanism
from causaldiff.mechanisms.diffusion import DiffusionMechanism
from causaldiff.scm import SCM, load
from causaldiff.training import TrainConfig
from causaldiff.evaluation.axioms import axiom_metrics, counterfactual_image_scores, guidance_sweep, mean_sem, \
    other_class, with_inference
from causaldiff.evaluation.plotting import save_grid
from causaldiff.evaluation.report import Timer, environment, now, write_json, write_text

from benchmarks.common.budget import budgeted_diffusion
from benchmarks.common.choose import EFFECTIVE, choose_main
from benchmarks.mnist.report import markdown, plot_mnist_sweep
from benchmarks.mnist.settings import NUM_CLASSES, PAPER, Setting


def sweeps_json(sweeps: Mapping[Any, Mapping[float, Any]]) -> dict[str, dict[str, Any]]:
    """``{fraction: {scale: metrics}}`` with string keys, as JSON holds it."""
    return {str(f): {str(s): r for s, r in sw.items()} for f, sw in sweeps.items()}


def build_scm(setting: Setting, denoiser_train: TrainConfig, predictor_train: TrainConfig, scale: float,
              abduction_fraction: float) -> SCM:
    """The unfitted ``digit -> image`` SCM of ``setting`` (unguided abduction, Diff-SCM's Algorithm 1)."""
    image = DiffusionMechanism(setting.diffusion_config(scale, abduction_fraction, denoiser_train, predictor_train))
    return SCM(nx.DiGraph([("digit", "image")]),
               {"digit": CategoricalMechanism(num_classes=NUM_CLASSES), "image": image})


def load_scm(path: Path, setting: Setting, abduction_fraction: float, device: torch.device) -> SCM:
    """A saved run's SCM with this run's inference settings (K, abduction fraction)."""
    saved = load(path)
    return with_inference(saved, ["image"], abduction_fraction=abduction_fraction,
                          num_inference_steps=setting.ddim_steps).to(device)


def _data(setting: Setting, data: str | None, device: torch.device, seed: int) -> dict[str, Any]:
    """Training and test splits, the scored test rows, their targets (``k`` != the factual digit,
    uniform) and the reference images CLD ranks against."""
    x_train, y_train = load_mnist(data, "train", n=None if setting.n_train == 60000 else setting.n_train, seed=seed)
    x_test, y_test = load_mnist(data, "test")
    x_train, y_train, x_test, y_test = (t.to(device) for t in (x_train, y_train, x_test, y_test))
    g = torch.Generator().manual_seed(seed + 1)
    order = torch.randperm(x_test.shape[0], generator=g)
    ev, ref = order[:setting.n_test], order[:setting.n_reference]
    factual = {"digit": y_test[ev], "image": x_test[ev]}
    return {"train": (x_train, y_train), "test": (x_test, y_test), "factual": factual,
            "target": other_class(factual["digit"], NUM_CLASSES, g), "reference": (x_test[ref], y_test[ref])}


def _fit(setting: Setting, x: Tensor, y: Tensor, fraction: float, device: torch.device, seed: int,
         timer: Timer, save: Path | None) -> tuple[SCM, dict, dict]:
    """The SCM fitted by ``scm.fit`` (denoiser, then noisy classifier), step counts budgeted from a
    timed probe of the same training loops (:func:`~.budget.budgeted_diffusion`)."""
    with timer("budget probes"):
        config, info = budgeted_diffusion(setting.diffusion_config(1.0, fraction), x, {"digit": y}, ("digit",),
                                          node="image", device=device, denoiser=setting.denoiser_budget,
                                          predictor=setting.predictor_budget)
    # on the device before fitting: the SCM moves every row it is given to its device
    scm = build_scm(setting, config.train, config.predictor_train, 1.0, fraction).to(device)
    with timer("fit denoiser + noisy classifier"):
        scm.fit({"digit": y, "image": x})
    if save is not None:
        scm.save(save)
        print(f"  saved the fitted SCM to {save}", flush=True)
    return scm, info["denoiser"], info["predictor"]


def _metric_models(setting: Setting, d: Mapping[str, Any], device: torch.device, seed: int,
                   timer: Timer) -> dict[str, Any]:
    """The metric models, trained on the training split, independent of the model under test."""
    x, y = d["train"]
    with timer("effectiveness classifier"):
        clf = M.train_classifier(x, y, num_classes=NUM_CLASSES, config=setting.classifier, device=device,
                                 seed=seed + 10)
    with timer("IM1/IM2 autoencoders"):
        aes = M.train_autoencoders(x, y, num_classes=NUM_CLASSES, config=setting.autoencoders, device=device,
                                   seed=seed + 20)
    with timer("CLD VAE"):
        vae = M.train_vae(x, config=setting.vae, device=device, seed=seed + 30)
    acc = float(M.effectiveness(clf, *d["test"]))
    print(f"  effectiveness classifier: test accuracy {acc:.4f}", flush=True)
    return {"classifier": clf, "autoencoders": aes, "vae": vae, "accuracy": acc}


def _sweep(scm: SCM, setting: Setting, d: Mapping[str, Any], models: Mapping[str, Any], *, scales: tuple,
           sweep_scales: tuple, fractions: tuple, seed: int, timer: Timer,
           on_row: Callable[[float, float], None]) -> tuple[dict, dict]:
    """CLD, IM1, IM2, effectiveness and minimality at every (fraction, scale), one abduction per
    fraction; ``in_sweep``: the scale is one of ``scales`` (not only the fixed main one)."""
    factual, target = d["factual"], d["target"]

    def score(_scm: SCM, rows: Mapping[str, Tensor]) -> dict[str, Any]:
        return counterfactual_image_scores(factual["image"], rows["image"], target, factual_label=factual["digit"],
                                           classifier=models["classifier"], autoencoders=models["autoencoders"],
                                           vae=models["vae"], reference=d["reference"], summary=mean_sem)

    def row_done(f: float, s: float, r: dict[str, Any]) -> None:
        r["in_sweep"] = s in scales
        print(f"  fraction {f:g} s={s:<4g} CLD {r['CLD']['mean']:.3f}  IM1 {r['IM1']['mean']:.3f}  "
              f"IM2 {r['IM2']['mean']:.4f}  effectiveness {r['effectiveness']:.3f}  "
              f"minimality {r['minimality_l1']['mean']:.4f}", flush=True)
        on_row(f, s)

    return guidance_sweep(scm, factual, {"digit": target}, image_node="image", scales=sweep_scales, score=score,
                          fractions=fractions, batch_size=setting.eval_batch, seed=seed, timer=timer,
                          on_row=row_done)


def _main(scm: SCM, setting: Setting, d: Mapping[str, Any], sweeps: dict, cfs: dict, *, scale: float | None,
          fractions: tuple, seed: int, timer: Timer) -> tuple[SCM, dict[str, Any]]:
    """The main (fraction, scale): fixed, or by :func:`choose_main`; there also reversibility and
    composition (Monteiro et al. 2023). Returns the SCM with those settings and the main results."""
    auto = scale is None
    if auto:
        swept = {(f, s): r for f, sw in sweeps.items() for s, r in sw.items() if r["in_sweep"]}
        fraction, scale = choose_main(swept, rule="cld")
        print(f"  main: abduction fraction {fraction:g}, s = {scale:g} (lowest CLD with effectiveness >= "
              f"{EFFECTIVE}, else the most effective)", flush=True)
    else:
        fraction = fractions[0]
    scm = with_inference(scm, ["image"], abduction_fraction=fraction, guidance_scale=scale)
    nc = min(setting.n_composition, setting.n_test)
    axioms = axiom_metrics(scm, d["factual"], {"digit": d["target"]}, image_node="image", label="digit",
                           counterfactual=cfs[(fraction, scale)], cycles=setting.cycles, n_composition=nc,
                           batch_size=setting.eval_batch, seed=seed, summary=mean_sem, timer=timer)
    return scm, {**sweeps[fraction][scale], "scale": scale, "abduction_fraction": fraction,
                 "abduction_steps": scm.mechanisms["image"].config.abduction_steps,
                 "rule": "auto" if auto else "fixed", **axioms, "n_composition": nc,
                 # realism, only where local Inception weights are given (CAUSALDIFF_FID_WEIGHTS)
                 "fid": M.fid_if_configured(d["factual"]["image"], cfs[(fraction, scale)]["image"],
                                            batch_size=setting.eval_batch)}


def _grid(scm: SCM, d: Mapping[str, Any], path: Path, title: str, seed: int) -> None:
    """The first test image of each digit (factual row), then one row per target digit."""
    x_test, y_test = d["test"]
    first = torch.stack([(y_test == k).nonzero()[0, 0] for k in range(NUM_CLASSES)])
    xg, yg = x_test[first], y_test[first]
    ug = scm.abduct({"digit": yg, "image": xg}, seed=seed)["image"]
    rows = [xg] + [scm.predict({"image": ug}, do={"digit": torch.full_like(yg, k)}, seed=seed)["image"]
                   for k in range(NUM_CLASSES)]
    save_grid(rows, ["factual"] + [f"do(digit={k})" for k in range(NUM_CLASSES)], path, title=title)


def run_mnist(setting: Setting, name: str, *, data: str | None, out: Path, device: torch.device,
              scale: float | None, scales: tuple[float, ...], fractions: tuple[float, ...], seed: int,
              command: str, save: Path | None = None, load: Path | None = None) -> dict[str, Any]:
    """One run of the benchmark (see the module docstring); returns the results written."""
    torch.manual_seed(seed)
    timer, env = Timer(device, verbose=True), environment(device)
    print(f"MNIST Diff-SCM benchmark, setting {name!r}: {setting.label}\n  device: {env['device_name']}", flush=True)
    with timer("data"):
        d = _data(setting, data, device, seed)
    if load is not None:
        with timer("load"):
            scm = load_scm(load, setting, fractions[0], device)
        info = {k: {"budgeted": False, "steps": getattr(scm.mechanisms["image"].config, key).steps,
                    "loaded_from": str(load)} for k, key in (("denoiser", "train"), ("predictor", "predictor_train"))}
    else:
        scm, *dp = _fit(setting, *d["train"], fractions[0], device, seed, timer, save)
        info = dict(zip(("denoiser", "predictor"), dp))
    print(f"  {scm}", flush=True)
    models = _metric_models(setting, d, device, seed, timer)
    base, sweeps = stem(name), {}
    partial = out / f"{base}_partial.json"
    training = {**info, "effectiveness_classifier_test_accuracy": models["accuracy"]}

    def write_partial(stage: str) -> None:
        """What is measured so far, rewritten after every phase: a run cut short keeps it."""
        write_json(partial, {"benchmark": "mnist_diffscm", "setting": name, "stage": stage, "command": command,
                             "date": env["date"], "env": env, "training": training,
                             "timings_s": dict(timer.seconds), "sweeps": sweeps_json(sweeps)})

    write_partial("metric models trained")
    sweep_scales = tuple(sorted(set(scales) | ({scale} if scale is not None else set())))
    sweeps, cfs = _sweep(scm, setting, d, models, scales=scales, sweep_scales=sweep_scales, fractions=fractions,
                         seed=seed, timer=timer, on_row=lambda f, s: write_partial(f"sweep: fraction {f:g}, s = {s:g}"))
    scm_main, main = _main(scm, setting, d, sweeps, cfs, scale=scale, fractions=fractions, seed=seed, timer=timer)
    write_partial("axioms measured")
    with timer("grid"):
        _grid(scm_main, d, out / f"{base}_grid.png", seed=seed, title=f"Diff-SCM on MNIST, s = {main['scale']:g}, "
              f"abduction fraction {main['abduction_fraction']:g} ({name} setting)")
    plot_mnist_sweep(sweeps, out / f"{base}_sweep.png", title=f"Diff-SCM on MNIST ({name} setting)")
    results = _results(setting, name, command, env, scm_main, training, timer, main, sweeps, seed=seed, data=data,
                       scales=scales, fractions=fractions)
    write_json(out / f"{base}.json", results)
    write_text(out / f"{base}.md", markdown(results))
    partial.unlink()  # superseded by the full results
    print(markdown(results), flush=True)
    print(f"wrote {out / (base + '.json')}, {base}.md, {base}_grid.png, {base}_sweep.png", flush=True)
    return results


def _results(setting: Setting, name: str, command: str, env: dict, scm: SCM, training: dict, timer: Timer,
             main: dict, sweeps: dict, *, seed: int, data: str | None, scales: tuple, fractions: tuple) -> dict:
    mech = scm.mechanisms["image"]
    return {
        "benchmark": "mnist_diffscm", "setting": name, "label": setting.label, "command": command,
        "date": now(), "env": env, "settings": setting.model_dump(mode="json"),
        "model": mech.config.model_dump(mode="json"),
        "run": {"scale": main["scale"], "abduction_fraction": main["abduction_fraction"], "rule": main["rule"],
                "scales": list(scales), "abduction_fractions": list(fractions), "seed": seed, "data": data},
        "training": {**training, "trained_on": str(next(mech.denoiser.parameters()).device),
                     "denoiser_params": sum(p.numel() for p in mech.denoiser.parameters()),
                     "predictor_params": sum(p.numel() for p in mech.predictor.parameters())},
        "timings_s": {**timer.seconds, "total": sum(timer.seconds.values())},
        "paper": {"IM1": PAPER["IM1"], "IM2": PAPER["IM2"], "CLD": {str(k): v for k, v in PAPER["CLD"].items()}},
        "main": main,
        "sweeps": sweeps_json(sweeps),
        "files": {"grid": f"{stem(name)}_grid.png", "sweep": f"{stem(name)}_sweep.png"},
    }


def stem(name: str) -> str:
    """The file stem of a run's results: ``mnist_diffscm_<name>``."""
    return f"mnist_diffscm_{name}"


__all__ = ["build_scm", "load_scm", "run_mnist", "stem"]
