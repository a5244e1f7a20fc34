"""Diff-SCM on MNIST (BENCHMARKS.md section 1; Sanchez & Tsaftaris, CLeaR 2022), through causaldiff.

Graph ``digit -> image``. ``digit`` is a learned categorical root; ``image`` is a
:class:`~causaldiff.DiffusionMechanism` with anti-causal guidance: an unconditional UNet denoiser
plus a time-conditioned classifier of the digit from the noised image ``x_t``. Counterfactuals
``do(digit = k)`` of MNIST test images (``k`` != the factual class, drawn uniformly) follow
Diff-SCM's Algorithm 1: unguided deterministic DDIM inversion over the first
``abduction_fraction`` of a ``K``-step trajectory, then DDIM generation guided by
``s * grad_x log p_phi(k | x_t, t)``.

The script trains, in order: the denoiser, the noisy classifier (both by ``scm.fit``), the
independent effectiveness classifier, the per-class and global autoencoders (IM1/IM2) and the
VAE (CLD); then scores, on ``n_test`` test images,

* for every guidance scale ``s`` of the sweep: CLD, IM1, IM2, effectiveness, minimality (L1);
* at the main scale: also composition (L1 after 1 and 10 null-intervention cycles, on
  ``n_composition`` images) and reversibility (L1 after ``do(k)`` then back to the factual digit);

and writes ``mnist_diffscm_<setting>.{json,md}``, a grid (factual row, one row per target digit)
and the sweep plot (CLD / IM1 / IM2 / effectiveness against ``s``, like Diff-SCM's figure) into
``--out`` (default ``benchmarks/results``).

Settings:

* ``gpu``: the reference architecture (64-channel UNet (1, 2, 4), one residual block per level,
  mid-block attention, cosine T = 1000, AdamW wd 0.01, batch 256, bf16 autocast) with training
  budgeted in seconds so that the whole run fits 9 minutes on one H100: the number of steps is
  set from a short timed probe of the same training loop (recorded in the results);
* ``cpu``: a clearly smaller setting for a 2-core machine (~15 minutes): 16-channel UNet,
  hundreds of steps, 50 DDIM steps, 100 test images. Not comparable with the paper;
* ``quick``: seconds, for CI (``tests/benchmarks/test_mnist_quick.py``).

Usage::

    python benchmarks/mnist_diffscm.py --setting gpu --data shared/data/mnist
    OMP_NUM_THREADS=1 python benchmarks/mnist_diffscm.py --setting cpu --threads 1
    python benchmarks/mnist_diffscm.py --setting quick --out /tmp/q
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import networkx as nx
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

import causaldiff as cd
from causaldiff import metrics as M
from causaldiff.datasets.mnist import load_mnist
from causaldiff.diffusion.ddim import DDIMConfig
from causaldiff.diffusion.guidance import ParentHead
from causaldiff.diffusion.nets import ImagePredictorConfig, UNetConfig, build_denoiser, build_predictor
from causaldiff.diffusion.schedule import NoiseSchedule, ScheduleConfig
from causaldiff.diffusion.train import TrainConfig, train_denoiser, train_predictor
from causaldiff.mechanisms.diffusion import DiffusionConfig
from causaldiff.progress import progress, set_progress
from causaldiff.runs import save_grid

RESULTS_DIR = Path(__file__).resolve().parent / "results"
NUM_CLASSES = 10
IMAGE_SHAPE = (1, 28, 28)

#: Diff-SCM's published figures on MNIST (BENCHMARKS.md section 1); lower is better.
PAPER = {"IM1": 0.94, "IM2": 0.04,
         "CLD": {0.0: 1.31, 0.75: 1.06, 2.0: 1.11, 3.0: 1.12}}  # CLD minimum ~1.06 near s = 0.7-0.8

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Budget(BaseModel):
    """Fit a training run into ``seconds``: time ``probe_steps`` steps (after ``warm`` untimed
    ones) of the same loop, then take ``min(max_steps, seconds / seconds_per_step)`` steps."""

    model_config = _FROZEN
    seconds: float = Field(gt=0)
    probe_steps: int = Field(25, ge=2)
    warm: int = Field(5, ge=1)
    min_steps: int = Field(1, ge=1)


class Setting(BaseModel):
    """Everything one run of the benchmark is made of (recorded in the results)."""

    model_config = _FROZEN
    label: str
    n_train: int = Field(ge=100, le=60000)
    n_test: int = Field(ge=2, le=10000)
    n_composition: int = Field(ge=1)
    n_reference: int = Field(ge=100, le=10000, description="test images the CLD divergences are ranked against")
    eval_batch: int = Field(ge=1)
    unet: UNetConfig
    predictor: ImagePredictorConfig
    schedule: ScheduleConfig = ScheduleConfig(kind="cosine", num_train_timesteps=1000)
    ddim_steps: int = 100
    inversion_fixed_point_iters: int = 0
    abduction_fraction: float = 0.75
    denoiser_train: TrainConfig
    predictor_train: TrainConfig
    denoiser_budget: Budget | None = None
    predictor_budget: Budget | None = None
    classifier: M.ClassifierConfig
    autoencoders: M.AutoencoderConfig
    vae: M.VAEConfig
    scale: float = 1.0
    scales: tuple[float, ...] = (0.0, 0.3, 0.7, 1.0, 2.0, 3.0)
    cycles: tuple[int, ...] = (1, 10)


SETTINGS: dict[str, Setting] = {
    # One H100, at most 9 minutes in all. Expected split (estimated from BENCHMARKS.md section 3's
    # throughputs, to be confirmed by the recorded timings): start-up and data ~15 s, probes ~10 s,
    # denoiser 240 s (budgeted), noisy classifier <= 45 s (budgeted), metric models ~30 s,
    # evaluation ~60-120 s (1000 images x 6 scales, composition 256 x 10 cycles).
    "gpu": Setting(
        label="GPU setting: reference architecture, training budgeted to fit 9 minutes on one H100",
        n_train=60000, n_test=1000, n_composition=256, n_reference=10000, eval_batch=500,
        unet=UNetConfig(base_channels=64, channel_mult=(1, 2, 4), num_res_blocks=1, mid_attention=True),
        predictor=ImagePredictorConfig(base_channels=64, channel_mult=(1, 2, 4), num_res_blocks=1),
        denoiser_train=TrainConfig(steps=12000, batch_size=256, lr=2e-4, weight_decay=0.01,
                                   warmup_steps=200, ema_decay=0.999, log_every=200),
        predictor_train=TrainConfig(steps=3000, batch_size=256, lr=3e-4, weight_decay=0.01,
                                    warmup_steps=100, ema_decay=0.999, log_every=200),
        denoiser_budget=Budget(seconds=240, probe_steps=30, warm=10, min_steps=500),
        predictor_budget=Budget(seconds=45, probe_steps=30, warm=10, min_steps=300),
        classifier=M.ClassifierConfig(iterations=2000, batch_size=256),
        autoencoders=M.AutoencoderConfig(iterations=2000, batch_size=64),
        vae=M.VAEConfig(iterations=3000, batch_size=256),
    ),
    # Two shared CPU cores, ~15 minutes: a 16-channel UNet (a 32-channel one costs ~2 s per step
    # of 64 images here, too slow to train in minutes), 50 DDIM steps, 100 test images.
    "cpu": Setting(
        label="small CPU setting (16-channel UNet, 700 steps, K = 50): NOT comparable with the paper",
        n_train=60000, n_test=100, n_composition=32, n_reference=2000, eval_batch=100,
        unet=UNetConfig(base_channels=16, channel_mult=(1, 2, 4), num_res_blocks=1, mid_attention=True,
                        num_groups=8),
        predictor=ImagePredictorConfig(base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=1,
                                       num_groups=8),
        ddim_steps=50,
        denoiser_train=TrainConfig(steps=700, batch_size=64, lr=1e-3, weight_decay=0.01,
                                   warmup_steps=50, ema_decay=0.995, log_every=50),
        predictor_train=TrainConfig(steps=400, batch_size=64, lr=1e-3, weight_decay=0.01,
                                    warmup_steps=20, ema_decay=0.99, log_every=50),
        classifier=M.ClassifierConfig(iterations=400, batch_size=64),
        autoencoders=M.AutoencoderConfig(iterations=300, batch_size=16),
        vae=M.VAEConfig(iterations=600, batch_size=64),
    ),
    # CI: seconds on one CPU thread; checks the pipeline, not the figures.
    "quick": Setting(
        label="CI quick setting (tiny networks, tens of steps): checks the pipeline only",
        n_train=600, n_test=8, n_composition=4, n_reference=200, eval_batch=8,
        unet=UNetConfig(base_channels=8, channel_mult=(1, 2), num_res_blocks=1, mid_attention=True,
                        num_groups=4),
        predictor=ImagePredictorConfig(base_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_groups=4),
        ddim_steps=4,
        denoiser_train=TrainConfig(steps=20, batch_size=16, lr=2e-3, log_every=10),
        predictor_train=TrainConfig(steps=20, batch_size=16, lr=2e-3, log_every=10),
        classifier=M.ClassifierConfig(iterations=30, batch_size=32),
        autoencoders=M.AutoencoderConfig(iterations=10, batch_size=4, hidden=8),
        vae=M.VAEConfig(iterations=20, batch_size=32),
        scales=(0.0, 1.0),
    ),
}


def smoke(setting: Setting) -> Setting:
    """The same architectures with tiny data and iteration counts: runs anywhere in a minute."""
    def tiny(cfg: TrainConfig) -> TrainConfig:
        return cfg.model_copy(update={"steps": 2, "batch_size": 4, "warmup_steps": 0, "log_every": 1})

    def tiny_budget(b: Budget | None) -> Budget | None:
        return None if b is None else Budget(seconds=b.seconds, probe_steps=3, warm=1, min_steps=1)

    return setting.model_copy(update={
        "label": setting.label + " [SMOKE: tiny iteration counts, not a measurement]",
        "n_train": 200, "n_test": 4, "n_composition": 2, "n_reference": 200, "eval_batch": 4,
        "ddim_steps": 4, "denoiser_train": tiny(setting.denoiser_train),
        "predictor_train": tiny(setting.predictor_train),
        "denoiser_budget": tiny_budget(setting.denoiser_budget),
        "predictor_budget": tiny_budget(setting.predictor_budget),
        "classifier": setting.classifier.model_copy(update={"iterations": 2, "batch_size": 8}),
        "autoencoders": setting.autoencoders.model_copy(update={"iterations": 2, "batch_size": 2}),
        "vae": setting.vae.model_copy(update={"iterations": 2, "batch_size": 8}),
    })


# ============================================================================= helpers
class Timer:
    """Wall-clock seconds per phase (synchronising CUDA so asynchronous work is counted)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds = device, {}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self._sync()
        t0 = time.perf_counter()
        yield
        self._sync()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
        print(f"  [{name}: {self.seconds[name]:.1f} s]", flush=True)


def chunked(fn: Callable[..., Mapping[str, Tensor]], batch: int, *tensors: Tensor) -> dict[str, Tensor]:
    """``fn`` on consecutive row chunks of ``tensors`` (each ``(n, ...)``), outputs concatenated."""
    n = tensors[0].shape[0]
    outs: list[Mapping[str, Tensor]] = []
    for start in progress(range(0, n, batch), total=math.ceil(n / batch), desc="batches"):
        outs.append(fn(*(t[start:start + batch] for t in tensors)))
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


def mean_sem(values: Tensor) -> dict[str, float]:
    v = values.double()
    sem = float(v.std() / math.sqrt(v.numel())) if v.numel() > 1 else float("nan")
    return {"mean": float(v.mean()), "sem": sem}


def seconds_per_step(train_fn: Callable[[TrainConfig, Callable[[int, Any], None]], Any], cfg: TrainConfig,
                     budget: Budget, device: torch.device) -> float:
    """Time steps ``warm+1 .. probe_steps`` of a throw-away run of the same training loop."""
    marks: dict[int, float] = {}

    def mark(step: int, _model: Any) -> None:
        if step in (budget.warm, budget.probe_steps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            marks[step] = time.perf_counter()

    train_fn(cfg.model_copy(update={"steps": budget.probe_steps, "checkpoint_every": None,
                                    "checkpoint_dir": None}), mark)
    return (marks[budget.probe_steps] - marks[budget.warm]) / (budget.probe_steps - budget.warm)


def budget_steps(cfg: TrainConfig, budget: Budget | None, probe: Callable[[], float]) -> tuple[TrainConfig, dict]:
    """``cfg`` with its step count fitted into ``budget`` (unchanged without one)."""
    if budget is None:
        return cfg, {"budgeted": False, "steps": cfg.steps}
    per_step = probe()
    steps = max(budget.min_steps, min(cfg.steps, int(budget.seconds / per_step)))
    info = {"budgeted": True, "budget_s": budget.seconds, "probe_seconds_per_step": per_step,
            "max_steps": cfg.steps, "steps": steps, "expected_s": steps * per_step}
    print(f"  budget: {per_step * 1000:.1f} ms/step -> {steps} steps (max {cfg.steps}) "
          f"in ~{steps * per_step:.0f} s", flush=True)
    return cfg.model_copy(update={"steps": steps}), info


def environment(device: torch.device) -> dict[str, Any]:
    env = {"torch": torch.__version__, "python": platform.python_version(), "causaldiff": cd.__version__,
           "platform": platform.platform(), "threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        env["tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
    else:
        env["device_name"] = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    try:
        env["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                           cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env


# ============================================================================= the benchmark
def build_scm(setting: Setting, denoiser_train: TrainConfig, predictor_train: TrainConfig, scale: float,
              abduction_fraction: float) -> cd.SCM:
    image = cd.DiffusionMechanism(DiffusionConfig(
        guidance="anticausal", guidance_scale=scale, guide_abduction=False,
        abduction_fraction=abduction_fraction, schedule=setting.schedule,
        sampler=DDIMConfig(num_inference_steps=setting.ddim_steps,
                           inversion_fixed_point_iters=setting.inversion_fixed_point_iters),
        net=setting.unet, predictor=setting.predictor, train=denoiser_train, predictor_train=predictor_train))
    return cd.SCM(nx.DiGraph([("digit", "image")]),
                  {"digit": cd.CategoricalMechanism(num_classes=NUM_CLASSES), "image": image})


def set_scale(scm: cd.SCM, s: float) -> None:
    m = scm.mechanisms["image"]
    m.config = m.config.model_copy(update={"guidance_scale": float(s)})


def run(setting: Setting, name: str, *, data: str | None, out: Path, device: torch.device,
        scale: float, scales: tuple[float, ...], abduction_fraction: float, seed: int,
        command: str) -> dict[str, Any]:
    torch.manual_seed(seed)
    timer = Timer(device)
    print(f"MNIST Diff-SCM benchmark, setting {name!r}: {setting.label}\n  device: "
          f"{environment(device)['device_name']}", flush=True)

    # ---- data
    with timer("data"):
        x_train, y_train = load_mnist(data, "train", n=None if setting.n_train == 60000 else setting.n_train,
                                      seed=seed)
        x_test, y_test = load_mnist(data, "test")
        x_train, y_train = x_train.to(device), y_train.to(device)
        x_test, y_test = x_test.to(device), y_test.to(device)
    g = torch.Generator().manual_seed(seed + 1)
    order = torch.randperm(x_test.shape[0], generator=g)
    ev = order[:setting.n_test]
    xf, yf = x_test[ev], y_test[ev]
    target = ((yf.cpu() + 1 + torch.randint(NUM_CLASSES - 1, yf.shape, generator=g)) % NUM_CLASSES).to(device)
    ref = order[:setting.n_reference]
    x_ref, y_ref = x_test[ref], y_test[ref]

    # ---- the SCM: step counts budgeted from a timed probe of the same training loops
    schedule = NoiseSchedule(setting.schedule)
    T = setting.schedule.num_train_timesteps
    head = (ParentHead("digit", "categorical", NUM_CLASSES),)

    def probe_denoiser(cfg: TrainConfig, cb: Callable) -> Any:
        torch.manual_seed(seed)
        net = build_denoiser(setting.unet, IMAGE_SHAPE, 0, T).to(device)
        return train_denoiser(net, x_train, schedule, cfg, desc="probe denoiser", callback=cb)

    def probe_predictor(cfg: TrainConfig, cb: Callable) -> Any:
        torch.manual_seed(seed)
        net = build_predictor(setting.predictor, IMAGE_SHAPE, NUM_CLASSES, T).to(device)
        return train_predictor(net, x_train, [y_train], head, schedule, cfg, desc="probe classifier", callback=cb)

    with timer("budget probes"):
        den_cfg, den_info = budget_steps(setting.denoiser_train, setting.denoiser_budget, lambda: seconds_per_step(
            probe_denoiser, setting.denoiser_train, setting.denoiser_budget, device))
        pred_cfg, pred_info = budget_steps(setting.predictor_train, setting.predictor_budget, lambda: seconds_per_step(
            probe_predictor, setting.predictor_train, setting.predictor_budget, device))
    # on the device before fitting: the SCM moves every row it is given to its device
    scm = build_scm(setting, den_cfg, pred_cfg, scale, abduction_fraction).to(device)
    # scm.fit trains the digit root, then the image node's denoiser and noisy classifier
    with timer("fit denoiser + noisy classifier"):
        scm.fit({"digit": y_train, "image": x_train})
    mech = scm.mechanisms["image"]
    print(f"  {scm}", flush=True)

    # ---- metric models, trained on the training split, independent of the model under test
    with timer("effectiveness classifier"):
        clf = M.train_classifier(x_train, y_train, num_classes=NUM_CLASSES, config=setting.classifier,
                                 device=device, seed=seed + 10)
    with timer("IM1/IM2 autoencoders"):
        aes = M.train_autoencoders(x_train, y_train, num_classes=NUM_CLASSES, config=setting.autoencoders,
                                   device=device, seed=seed + 20)
    with timer("CLD VAE"):
        vae = M.train_vae(x_train, config=setting.vae, device=device, seed=seed + 30)
    clf_acc = float(M.effectiveness(clf, x_test, y_test))
    print(f"  effectiveness classifier: test accuracy {clf_acc:.4f}", flush=True)

    # ---- counterfactuals: one abduction, one guided generation per scale
    def counterfactual(digit: Tensor, image: Tensor, do_digit: Tensor) -> Mapping[str, Tensor]:
        return scm.counterfactual({"digit": digit, "image": image}, do={"digit": do_digit}, seed=seed)

    def predict(u: Tensor, do_digit: Tensor) -> Mapping[str, Tensor]:
        return scm.predict({"image": u}, do={"digit": do_digit}, seed=seed)

    with timer("abduction"):
        u = chunked(lambda d, i: {"image": scm.abduct({"digit": d, "image": i}, seed=seed)["image"]},
                    setting.eval_batch, yf, xf)["image"]
    sweep_scales = tuple(sorted(set(scales) | {scale}))
    per_scale: dict[float, dict[str, Any]] = {}
    cf_main = None
    for s in progress(sweep_scales, desc="guidance scales"):
        set_scale(scm, s)
        with timer("generation (sweep)"):
            cf = chunked(predict, setting.eval_batch, u, target)["image"]
        with timer("metrics"):
            per_scale[s] = {
                "CLD": mean_sem(M.cld(vae, xf, cf, yf, target, x_ref, y_ref)),
                "IM1": mean_sem(M.im1(aes, cf, target, yf)),
                "IM2": mean_sem(M.im2(aes, cf, target)),
                "effectiveness": float(M.effectiveness(clf, cf, target)),
                "minimality_l1": mean_sem(M.minimality(xf, cf)),
                "in_sweep": s in scales,
            }
        r = per_scale[s]
        print(f"  s={s:<4g} CLD {r['CLD']['mean']:.3f}  IM1 {r['IM1']['mean']:.3f}  IM2 {r['IM2']['mean']:.4f}  "
              f"effectiveness {r['effectiveness']:.3f}  minimality {r['minimality_l1']['mean']:.4f}", flush=True)
        if s == scale:
            cf_main = cf

    # ---- axioms at the main scale (Monteiro et al. 2023)
    set_scale(scm, scale)
    with timer("reversibility"):
        back = chunked(counterfactual, setting.eval_batch, target, cf_main, yf)["image"]
        reversibility = M.l1_distance(xf, back)
    with timer("composition"):
        nc = min(setting.n_composition, setting.n_test)
        comp = M.composition(lambda rows, do: chunked(counterfactual, setting.eval_batch, rows["digit"],
                                                      rows["image"], do["digit"]),
                             {"digit": yf[:nc], "image": xf[:nc]}, nodes=["digit"], cycles=setting.cycles)
    main = {**per_scale[scale], "scale": scale, "reversibility_l1": mean_sem(reversibility),
            **{f"composition_l1_{c}": mean_sem(v) for c, v in comp.items()}, "n_composition": nc}

    # ---- figures: a grid (factual row, one row per target digit) and the sweep
    stem = f"mnist_diffscm_{name}"
    out.mkdir(parents=True, exist_ok=True)
    with timer("grid"):
        first = torch.stack([(y_test == k).nonzero()[0, 0] for k in range(NUM_CLASSES)])
        xg, yg = x_test[first], y_test[first]
        ug = scm.abduct({"digit": yg, "image": xg}, seed=seed)["image"]
        rows = [xg] + [predict(ug, torch.full_like(yg, k))["image"] for k in range(NUM_CLASSES)]
        save_grid(rows, ["factual"] + [f"do(digit={k})" for k in range(NUM_CLASSES)], out / f"{stem}_grid.png",
                  title=f"Diff-SCM on MNIST, s = {scale:g} ({name} setting)")
    plot_sweep(per_scale, out / f"{stem}_sweep.png", title=f"Diff-SCM on MNIST ({name} setting)")

    results = {
        "benchmark": "mnist_diffscm", "setting": name, "label": setting.label, "command": command,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "env": environment(device), "settings": setting.model_dump(mode="json"),
        "run": {"scale": scale, "scales": list(scales), "abduction_fraction": abduction_fraction, "seed": seed,
                "abduction_steps": mech.config.abduction_steps, "data": data},
        "training": {"denoiser": den_info, "predictor": pred_info,
                     "effectiveness_classifier_test_accuracy": clf_acc,
                     "trained_on": str(next(mech.denoiser.parameters()).device),
                     "denoiser_params": sum(p.numel() for p in mech.denoiser.parameters()),
                     "predictor_params": sum(p.numel() for p in mech.predictor.parameters())},
        "timings_s": {**timer.seconds, "total": sum(timer.seconds.values())},
        "paper": {"IM1": PAPER["IM1"], "IM2": PAPER["IM2"], "CLD": {str(k): v for k, v in PAPER["CLD"].items()}},
        "main": main, "sweep": {str(s): r for s, r in per_scale.items()},
        "files": {"grid": f"{stem}_grid.png", "sweep": f"{stem}_sweep.png"},
    }
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    (out / f"{stem}.md").write_text(markdown(results))
    print(markdown(results), flush=True)
    print(f"wrote {out / (stem + '.json')}, {stem}.md, {stem}_grid.png, {stem}_sweep.png", flush=True)
    return results


def plot_sweep(per_scale: Mapping[float, Mapping[str, Any]], path: Path, title: str) -> None:
    """CLD, IM1, IM2 and effectiveness against the guidance scale (Diff-SCM's CLD figure, with its
    published CLD points for comparison)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = sorted(x for x, r in per_scale.items() if r.get("in_sweep", True))
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.1))
    for ax, key in zip(axes, ("CLD", "IM1", "IM2", "effectiveness")):
        vals = [per_scale[x][key] for x in s]
        mean = [v["mean"] if isinstance(v, dict) else v for v in vals]
        ax.plot(s, mean, "o-", color="#2b5d8a", label="causaldiff")
        if isinstance(vals[0], dict):
            sem = [v["sem"] for v in vals]
            ax.fill_between(s, [m - e for m, e in zip(mean, sem)], [m + e for m, e in zip(mean, sem)],
                            color="#2b5d8a", alpha=0.2)
        if key == "CLD":
            px = sorted(PAPER["CLD"])
            ax.plot(px, [PAPER["CLD"][x] for x in px], "s--", color="#c0504d", label="Diff-SCM paper")
            ax.axhline(M.CLD_UNCHANGED, color="grey", lw=0.8, ls=":")
            ax.legend(fontsize=7)
        elif key in ("IM1", "IM2"):
            ax.axhline(PAPER[key], color="#c0504d", lw=1, ls="--", label="Diff-SCM paper")
            ax.legend(fontsize=7)
        ax.set_xlabel("guidance scale s")
        ax.set_title(key + (" (higher is better)" if key == "effectiveness" else " (lower is better)"), fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, dict):
        return f"{v['mean']:.{digits}f} ± {v['sem']:.{digits}f}"
    return f"{v:.{digits}f}"


def markdown(r: Mapping[str, Any]) -> str:
    m, env, st, tr = r["main"], r["env"], r["settings"], r["training"]
    lines = [f"# Diff-SCM on MNIST: `{r['setting']}` setting", "",
             f"**{r['label']}**", "",
             f"- date: {r['date']}; device: **{env['device_name']}**; torch {env['torch']}; "
             f"causaldiff {env['causaldiff']} (commit {env.get('git_commit')})",
             f"- command: `{r['command']}`",
             f"- denoiser: UNet {st['unet']['base_channels']} channels x {tuple(st['unet']['channel_mult'])}, "
             f"{st['unet']['num_res_blocks']} res block(s), mid attention {st['unet']['mid_attention']}; "
             f"{tr['denoiser']['steps']} steps of batch {st['denoiser_train']['batch_size']}, "
             f"AdamW lr {st['denoiser_train']['lr']:g} wd {st['denoiser_train']['weight_decay']:g}, EMA "
             f"{st['denoiser_train']['ema_decay']:g}; {st['schedule']['kind']} schedule T = "
             f"{st['schedule']['num_train_timesteps']}"
             + (f" (budget {tr['denoiser']['budget_s']:g} s at {tr['denoiser']['probe_seconds_per_step'] * 1000:.1f}"
                f" ms/step)" if tr["denoiser"]["budgeted"] else ""),
             f"- noisy classifier: time-conditioned encoder {st['predictor']['base_channels']} channels x "
             f"{tuple(st['predictor']['channel_mult'])}, {tr['predictor']['steps']} steps of batch "
             f"{st['predictor_train']['batch_size']}, lr {st['predictor_train']['lr']:g}",
             f"- counterfactuals: unguided DDIM inversion over {r['run']['abduction_steps']} of "
             f"K = {st['ddim_steps']} steps (abduction_fraction {r['run']['abduction_fraction']:g}, "
             f"{st['inversion_fixed_point_iters']} fixed-point refinements), classifier-guided DDIM back; "
             f"do(digit = k), k != factual, uniform; {st['n_test']} test images "
             f"(composition on {m['n_composition']}), CLD ranked against {st['n_reference']} test images",
             f"- effectiveness classifier: test accuracy {tr['effectiveness_classifier_test_accuracy']:.4f}",
             "", f"## Main scale s = {m['scale']:g} (mean ± standard error over images)", "",
             "| metric | causaldiff | Diff-SCM paper | better |", "|---|---|---|---|",
             f"| IM1 | {_fmt(m['IM1'])} | {PAPER['IM1']} | lower |",
             f"| IM2 | {_fmt(m['IM2'], 4)} | {PAPER['IM2']} | lower |",
             f"| CLD | {_fmt(m['CLD'])} | ~1.06 at s = 0.7-0.8 | lower |",
             f"| effectiveness | {m['effectiveness']:.3f} | - | higher |",
             f"| minimality (L1) | {_fmt(m['minimality_l1'], 4)} | - | lower |",
             f"| reversibility (L1) | {_fmt(m['reversibility_l1'], 4)} | - | lower |"]
    for c in st["cycles"]:
        lines.append(f"| composition, {c} cycle(s) (L1) | {_fmt(m[f'composition_l1_{c}'], 4)} | - | lower |")
    lines += ["", "## Guidance-scale sweep", "",
              "| s | CLD | paper CLD | IM1 | IM2 | effectiveness | minimality (L1) |", "|---|---|---|---|---|---|---|"]
    paper_cld = {float(k): v for k, v in r["paper"]["CLD"].items()}
    for s, row in sorted(((float(k), v) for k, v in r["sweep"].items())):
        near = next((f"{v}" for k, v in paper_cld.items() if abs(k - s) <= 0.05 or (k == 0.75 and 0.7 <= s <= 0.8)), "")
        lines.append(f"| {s:g} | {_fmt(row['CLD'])} | {near} | {_fmt(row['IM1'])} | {_fmt(row['IM2'], 4)} | "
                     f"{row['effectiveness']:.3f} | {_fmt(row['minimality_l1'], 4)} |")
    lines += ["", f"CLD of an unchanged image: {M.CLD_UNCHANGED:.3f}. Paper CLD curve: 1.31 at s = 0, minimum "
              "~1.06 near s = 0.7-0.8, 1.11 at s = 2, 1.12 at s = 3.", "", "## Timings (s)", "",
              "| phase | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in r["timings_s"].items()]
    lines += ["", f"![grid]({r['files']['grid']})", "", f"![sweep]({r['files']['sweep']})", ""]
    return "\n".join(lines)


# ============================================================================= command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Diff-SCM counterfactuals on MNIST (BENCHMARKS.md section 1).")
    p.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    p.add_argument("--data", default=None, help="folder with the MNIST IDX files (default: the loader's search: "
                   "CAUSALDIFF_MNIST_DIR, ../shared/data/mnist, ...)")
    p.add_argument("--out", default=str(RESULTS_DIR), help="where the JSON, markdown and PNGs go")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--scale", type=float, default=None, help="main guidance scale s (default: the setting's)")
    p.add_argument("--scales", default=None, help="comma-separated sweep scales (default: 0,0.3,0.7,1,2,3)")
    p.add_argument("--abduction-fraction", type=float, default=None,
                   help="share of the DDIM trajectory abducted (Diff-SCM's later revision: 0.75; 1: all)")
    p.add_argument("--ddim-steps", type=int, default=None, help="K DDIM steps (default: the setting's)")
    p.add_argument("--n-test", type=int, default=None, help="test images scored (default: the setting's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # the setting's pipeline, tiny counts
    args = p.parse_args(argv)
    if args.scales is not None:
        try:
            args.scales = tuple(float(s) for s in args.scales.split(",") if s.strip())
        except ValueError:
            p.error(f"--scales expects comma-separated numbers, got {args.scales!r}")
        if not args.scales or any(s < 0 for s in args.scales):
            p.error("--scales expects non-negative numbers")
    if args.scale is not None and args.scale < 0:
        p.error("--scale must be non-negative")
    if args.abduction_fraction is not None and not 0 < args.abduction_fraction <= 1:
        p.error("--abduction-fraction must be in (0, 1]")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_progress:
        set_progress(False)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.setting == "gpu" and device.type != "cuda" and not args.smoke:
        sys.exit("mnist_diffscm: the gpu setting needs a CUDA device (use --setting cpu here)")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls and convolutions at inference
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    setting = SETTINGS[args.setting]
    if args.smoke:
        setting = smoke(setting)
    updates = {k: v for k, v in (("ddim_steps", args.ddim_steps), ("n_test", args.n_test)) if v is not None}
    if updates:
        setting = Setting.model_validate({**setting.model_dump(), **updates})
    name = args.setting + ("_smoke" if args.smoke else "")
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0] if argv is None else
                                                             "benchmarks/mnist_diffscm.py", *(sys.argv[1:] if argv is None else argv)])
    return run(setting, name, data=args.data, out=Path(args.out), device=device,
               scale=setting.scale if args.scale is None else args.scale,
               scales=setting.scales if args.scales is None else args.scales,
               abduction_fraction=setting.abduction_fraction if args.abduction_fraction is None
               else args.abduction_fraction, seed=args.seed, command=command)


if __name__ == "__main__":
    main()
