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
VAE (CLD); then, on ``n_test`` test images and for each abduction fraction (0.75, Diff-SCM's later
revision, and 1, the whole trajectory), abducts once and scores

* for every guidance scale ``s`` of the sweep (Diff-SCM's 0, 0.3, 0.7, 1, 2, 3, extended by 5 and
  10): CLD, IM1, IM2, effectiveness, minimality (L1);
* at the main (fraction, scale): also composition (L1 after 1 and 10 null-intervention cycles, on
  ``n_composition`` images) and reversibility (L1 after ``do(k)`` then back to the factual
  digit). The main pair follows a rule fixed before any run (:func:`choose_main`): the lowest CLD
  among the pairs whose effectiveness reaches 0.9, else the most effective pair; ``--scale S``
  fixes the scale (with the first fraction) instead;

and writes ``mnist_diffscm_<setting>.{json,md}``, a grid (factual row, one row per target digit)
and the sweep plot (CLD / IM1 / IM2 / effectiveness against ``s``, like Diff-SCM's figure) into
``--out`` (default ``benchmarks/results``). ``--save DIR`` keeps the fitted SCM, ``--load DIR``
evaluates a saved one without training.

Settings:

* ``gpu``: the reference architecture (64-channel UNet (1, 2, 4), one residual block per level,
  mid-block attention, cosine T = 1000, AdamW wd 0.01, batch 256, bf16 autocast) with training
  budgeted in seconds so that the whole run fits 9 minutes on one H100: the number of steps is
  set from a short timed probe of the same training loop (recorded in the results);
* ``cpu``: a clearly smaller setting for a 2-core machine (~15 minutes): 16-channel UNet,
  700 steps, 50 DDIM steps, 100 test images. Not comparable with the paper;
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

#: effectiveness the automatic main scale asks for (the acceptance bar of issue 4)
EFFECTIVE = 0.9

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
    #: clip the predicted x_0 to [-c, c] in generation, never in inversion (guided-diffusion's
    #: clip_denoised, on in Diff-SCM's sampling); None: no clipping
    clip_sample: float | None = 1.0
    #: abduction fractions evaluated (Diff-SCM's later revision: the first 75%; 1: the whole trajectory)
    abduction_fractions: tuple[float, ...] = (0.75, 1.0)
    denoiser_train: TrainConfig
    predictor_train: TrainConfig
    denoiser_budget: Budget | None = None
    predictor_budget: Budget | None = None
    classifier: M.ClassifierConfig
    autoencoders: M.AutoencoderConfig
    vae: M.VAEConfig
    #: main guidance scale; None: the (fraction, scale) pair chosen by :func:`choose_main`
    scale: float | None = None
    scales: tuple[float, ...] = (0.0, 0.3, 0.7, 1.0, 2.0, 3.0, 5.0, 10.0)
    cycles: tuple[int, ...] = (1, 10)


SETTINGS: dict[str, Setting] = {
    # One H100, at most 9 minutes in all. Expected split (estimated from BENCHMARKS.md section 3's
    # throughputs, to be confirmed by the recorded timings): start-up and data ~15 s, probes ~10 s,
    # denoiser 210 s (budgeted), noisy classifier <= 40 s (budgeted), metric models ~30 s,
    # evaluation ~60-120 s (1000 images x 8 scales, composition 256 x 10 cycles).
    "gpu": Setting(
        label="GPU setting: reference architecture, training budgeted to fit 9 minutes on one H100",
        n_train=60000, n_test=1000, n_composition=256, n_reference=10000, eval_batch=500,
        unet=UNetConfig(base_channels=64, channel_mult=(1, 2, 4), num_res_blocks=1, mid_attention=True),
        predictor=ImagePredictorConfig(base_channels=64, channel_mult=(1, 2, 4), num_res_blocks=1),
        denoiser_train=TrainConfig(steps=12000, batch_size=256, lr=2e-4, weight_decay=0.01,
                                   warmup_steps=200, ema_decay=0.999, log_every=200),
        predictor_train=TrainConfig(steps=3000, batch_size=256, lr=3e-4, weight_decay=0.01,
                                    warmup_steps=100, ema_decay=0.999, log_every=200),
        denoiser_budget=Budget(seconds=210, probe_steps=30, warm=10, min_steps=500),
        predictor_budget=Budget(seconds=40, probe_steps=30, warm=10, min_steps=300),
        classifier=M.ClassifierConfig(iterations=2000, batch_size=256),
        autoencoders=M.AutoencoderConfig(iterations=2000, batch_size=64),
        vae=M.VAEConfig(iterations=3000, batch_size=256),
    ),
    # Two shared CPU cores, ~15 minutes: a 16-channel UNet (a 32-channel one costs ~2 s per step
    # of 64 images here, too slow to train in minutes), 50 DDIM steps, 100 test images.
    "cpu": Setting(
        label="small CPU setting (16-channel UNet, 700 steps; 16-channel classifier, 2000 steps; K = 50): "
              "NOT comparable with the paper",
        n_train=60000, n_test=100, n_composition=32, n_reference=2000, eval_batch=100,
        unet=UNetConfig(base_channels=16, channel_mult=(1, 2, 4), num_res_blocks=1, mid_attention=True,
                        num_groups=8),
        predictor=ImagePredictorConfig(base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=1,
                                       num_groups=8),
        ddim_steps=50,
        denoiser_train=TrainConfig(steps=700, batch_size=64, lr=1e-3, weight_decay=0.01,
                                   warmup_steps=50, ema_decay=0.995, log_every=50),
        predictor_train=TrainConfig(steps=2000, batch_size=64, lr=1e-3, weight_decay=0.01,
                                    warmup_steps=50, ema_decay=0.995, log_every=50),
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
        dt = time.perf_counter() - t0
        self.seconds[name] = self.seconds.get(name, 0.0) + dt
        print(f"  [{name}: {dt:.1f} s; all phases {sum(self.seconds.values()):.0f} s]", flush=True)


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
        here = Path(__file__).resolve().parent

        def git(*a: str) -> str:
            return subprocess.run(["git", *a], capture_output=True, text=True, cwd=here, timeout=10).stdout.strip()

        commit = git("rev-parse", "--short", "HEAD") or None
        dirty = commit and git("status", "--porcelain", "--", "../causaldiff", "mnist_diffscm.py")
        env["git_commit"] = f"{commit}+uncommitted changes" if dirty else commit
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env


# ============================================================================= the benchmark
def build_scm(setting: Setting, denoiser_train: TrainConfig, predictor_train: TrainConfig, scale: float,
              abduction_fraction: float) -> cd.SCM:
    image = cd.DiffusionMechanism(DiffusionConfig(
        guidance="anticausal", guidance_scale=scale, guide_abduction=False,
        abduction_fraction=abduction_fraction, schedule=setting.schedule,
        sampler=DDIMConfig(num_inference_steps=setting.ddim_steps, clip_sample=setting.clip_sample,
                           inversion_fixed_point_iters=setting.inversion_fixed_point_iters),
        net=setting.unet, predictor=setting.predictor, train=denoiser_train, predictor_train=predictor_train))
    return cd.SCM(nx.DiGraph([("digit", "image")]),
                  {"digit": cd.CategoricalMechanism(num_classes=NUM_CLASSES), "image": image})


def set_inference(scm: cd.SCM, *, scale: float | None = None, fraction: float | None = None) -> None:
    """Set the image mechanism's guidance scale and/or abduction fraction (inference-only settings)."""
    m = scm.mechanisms["image"]
    update = {"guidance_scale": None if scale is None else float(scale),
              "abduction_fraction": None if fraction is None else float(fraction)}
    m.config = m.config.model_copy(update={k: v for k, v in update.items() if v is not None})


def load_scm(path: Path, setting: Setting, abduction_fraction: float, device: torch.device) -> cd.SCM:
    """A saved run's SCM with this run's inference settings (K, abduction fraction)."""
    saved = cd.load(path)
    m = saved.mechanisms["image"]
    cfg = m.get_config()
    c = cfg["config"]
    c.update(abduction_fraction=abduction_fraction, guide_abduction=False,
             sampler={**c["sampler"], "num_inference_steps": setting.ddim_steps, "clip_sample": setting.clip_sample,
                      "inversion_fixed_point_iters": setting.inversion_fixed_point_iters})
    image = cd.DiffusionMechanism.from_saved(cfg, m.state_tensors())
    return cd.SCM(nx.DiGraph([("digit", "image")]), {"digit": saved.mechanisms["digit"], "image": image}).to(device)


def sweeps_json(sweeps: Mapping[float, Mapping[float, Any]]) -> dict[str, dict[str, Any]]:
    """``{fraction: {scale: metrics}}`` with string keys, as the JSON files hold it."""
    return {str(f): {str(s): r for s, r in sw.items()} for f, sw in sweeps.items()}


def choose_main(sweeps: Mapping[float, Mapping[float, Mapping[str, Any]]]) -> tuple[float, float]:
    """``(abduction fraction, scale)`` of the main results: among the pairs whose effectiveness
    reaches EFFECTIVE, the lowest CLD (Diff-SCM picks its scale by CLD); else the most effective
    pair (ties: the lower CLD). Fixed before any run."""
    pairs = [(f, s) for f in sorted(sweeps) for s in sorted(sweeps[f])]
    cld = {p: sweeps[p[0]][p[1]]["CLD"]["mean"] for p in pairs}
    eff = {p: sweeps[p[0]][p[1]]["effectiveness"] for p in pairs}
    ok = [p for p in pairs if eff[p] >= EFFECTIVE]
    if ok:
        return min(ok, key=lambda p: cld[p])
    return max(pairs, key=lambda p: (eff[p], -cld[p]))


def run(setting: Setting, name: str, *, data: str | None, out: Path, device: torch.device,
        scale: float | None, scales: tuple[float, ...], fractions: tuple[float, ...], seed: int,
        command: str, save: Path | None = None, load: Path | None = None) -> dict[str, Any]:
    torch.manual_seed(seed)
    timer = Timer(device)
    env = environment(device)  # once: it asks git for the commit
    print(f"MNIST Diff-SCM benchmark, setting {name!r}: {setting.label}\n  device: "
          f"{env['device_name']}", flush=True)

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

    if load is not None:
        with timer("load"):
            scm = load_scm(load, setting, fractions[0], device)
        mech = scm.mechanisms["image"]
        den_info = {"budgeted": False, "steps": mech.config.train.steps, "loaded_from": str(load)}
        pred_info = {"budgeted": False, "steps": mech.config.predictor_train.steps, "loaded_from": str(load)}
    else:
        with timer("budget probes"):
            den_cfg, den_info = budget_steps(setting.denoiser_train, setting.denoiser_budget, lambda: seconds_per_step(
                probe_denoiser, setting.denoiser_train, setting.denoiser_budget, device))
            pred_cfg, pred_info = budget_steps(setting.predictor_train, setting.predictor_budget, lambda: (
                seconds_per_step(probe_predictor, setting.predictor_train, setting.predictor_budget, device)))
        # on the device before fitting: the SCM moves every row it is given to its device
        scm = build_scm(setting, den_cfg, pred_cfg, 1.0, fractions[0]).to(device)
        # scm.fit trains the digit root, then the image node's denoiser and noisy classifier
        with timer("fit denoiser + noisy classifier"):
            scm.fit({"digit": y_train, "image": x_train})
        mech = scm.mechanisms["image"]
        if save is not None:
            scm.save(save)
            print(f"  saved the fitted SCM to {save}", flush=True)
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

    # ---- counterfactuals: per abduction fraction, one abduction and one guided generation per scale
    def counterfactual(digit: Tensor, image: Tensor, do_digit: Tensor) -> Mapping[str, Tensor]:
        return scm.counterfactual({"digit": digit, "image": image}, do={"digit": do_digit}, seed=seed)

    def predict(u: Tensor, do_digit: Tensor) -> Mapping[str, Tensor]:
        return scm.predict({"image": u}, do={"digit": do_digit}, seed=seed)

    sweep_scales = tuple(sorted(set(scales) | ({scale} if scale is not None else set())))
    sweeps: dict[float, dict[float, dict[str, Any]]] = {}
    stem = f"mnist_diffscm_{name}"
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f"{stem}_partial.json"

    def write_partial(stage: str) -> None:
        """What is measured so far, rewritten after every phase: a run cut short keeps it."""
        partial.write_text(json.dumps({
            "benchmark": "mnist_diffscm", "setting": name, "stage": stage, "command": command,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "env": env,
            "training": {"denoiser": den_info, "predictor": pred_info,
                         "effectiveness_classifier_test_accuracy": clf_acc},
            "timings_s": dict(timer.seconds),
            "sweeps": sweeps_json(sweeps)}, indent=2))

    write_partial("metric models trained")
    cfs: dict[tuple[float, float], Tensor] = {}
    for f in fractions:
        set_inference(scm, fraction=f)
        with timer("abduction"):
            u = chunked(lambda d, i: {"image": scm.abduct({"digit": d, "image": i}, seed=seed)["image"]},
                        setting.eval_batch, yf, xf)["image"]
        sweeps[f] = {}
        for s in progress(sweep_scales, desc=f"guidance scales (abduction fraction {f:g})"):
            set_inference(scm, scale=s)
            with timer("generation (sweep)"):
                cf = chunked(predict, setting.eval_batch, u, target)["image"]
            with timer("metrics"):
                r = sweeps[f][s] = {
                    "CLD": mean_sem(M.cld(vae, xf, cf, yf, target, x_ref, y_ref)),
                    "IM1": mean_sem(M.im1(aes, cf, target, yf)),
                    "IM2": mean_sem(M.im2(aes, cf, target)),
                    "effectiveness": float(M.effectiveness(clf, cf, target)),
                    "minimality_l1": mean_sem(M.minimality(xf, cf)),
                    "in_sweep": s in scales,
                }
            print(f"  fraction {f:g} s={s:<4g} CLD {r['CLD']['mean']:.3f}  IM1 {r['IM1']['mean']:.3f}  "
                  f"IM2 {r['IM2']['mean']:.4f}  effectiveness {r['effectiveness']:.3f}  "
                  f"minimality {r['minimality_l1']['mean']:.4f}", flush=True)
            cfs[(f, s)] = cf
            write_partial(f"sweep: fraction {f:g}, s = {s:g}")

    # ---- axioms at the main (fraction, scale) (Monteiro et al. 2023)
    auto = scale is None
    if auto:
        fraction, scale = choose_main({f: {s: r for s, r in sw.items() if r["in_sweep"]} for f, sw in sweeps.items()})
        print(f"  main: abduction fraction {fraction:g}, s = {scale:g} (lowest CLD with effectiveness >= "
              f"{EFFECTIVE}, else the most effective)", flush=True)
    else:
        fraction = fractions[0]
    cf_main = cfs[(fraction, scale)]
    set_inference(scm, scale=scale, fraction=fraction)
    with timer("reversibility"):
        back = chunked(counterfactual, setting.eval_batch, target, cf_main, yf)["image"]
        reversibility = M.l1_distance(xf, back)
    with timer("composition"):
        nc = min(setting.n_composition, setting.n_test)
        comp = M.composition(lambda rows, do: chunked(counterfactual, setting.eval_batch, rows["digit"],
                                                      rows["image"], do["digit"]),
                             {"digit": yf[:nc], "image": xf[:nc]}, nodes=["digit"], cycles=setting.cycles)
    main = {**sweeps[fraction][scale], "scale": scale, "abduction_fraction": fraction,
            "abduction_steps": scm.mechanisms["image"].config.abduction_steps,
            "rule": "auto" if auto else "fixed", "reversibility_l1": mean_sem(reversibility),
            **{f"composition_l1_{c}": mean_sem(v) for c, v in comp.items()}, "n_composition": nc}

    write_partial("axioms measured")

    # ---- figures: a grid (factual row, one row per target digit) and the sweep
    with timer("grid"):
        first = torch.stack([(y_test == k).nonzero()[0, 0] for k in range(NUM_CLASSES)])
        xg, yg = x_test[first], y_test[first]
        ug = scm.abduct({"digit": yg, "image": xg}, seed=seed)["image"]
        rows = [xg] + [predict(ug, torch.full_like(yg, k))["image"] for k in range(NUM_CLASSES)]
        save_grid(rows, ["factual"] + [f"do(digit={k})" for k in range(NUM_CLASSES)], out / f"{stem}_grid.png",
                  title=f"Diff-SCM on MNIST, s = {scale:g}, abduction fraction {fraction:g} ({name} setting)")
    plot_sweep(sweeps, out / f"{stem}_sweep.png", title=f"Diff-SCM on MNIST ({name} setting)")

    results = {
        "benchmark": "mnist_diffscm", "setting": name, "label": setting.label, "command": command,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "env": env, "settings": setting.model_dump(mode="json"),
        "model": mech.config.model_dump(mode="json"),
        "run": {"scale": scale, "abduction_fraction": fraction, "rule": "auto" if auto else "fixed",
                "scales": list(scales), "abduction_fractions": list(fractions), "seed": seed, "data": data},
        "training": {"denoiser": den_info, "predictor": pred_info,
                     "effectiveness_classifier_test_accuracy": clf_acc,
                     "trained_on": str(next(mech.denoiser.parameters()).device),
                     "denoiser_params": sum(p.numel() for p in mech.denoiser.parameters()),
                     "predictor_params": sum(p.numel() for p in mech.predictor.parameters())},
        "timings_s": {**timer.seconds, "total": sum(timer.seconds.values())},
        "paper": {"IM1": PAPER["IM1"], "IM2": PAPER["IM2"], "CLD": {str(k): v for k, v in PAPER["CLD"].items()}},
        "main": main,
        "sweeps": sweeps_json(sweeps),
        "files": {"grid": f"{stem}_grid.png", "sweep": f"{stem}_sweep.png"},
    }
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    (out / f"{stem}.md").write_text(markdown(results))
    partial.unlink()  # superseded by the full results
    print(markdown(results), flush=True)
    print(f"wrote {out / (stem + '.json')}, {stem}.md, {stem}_grid.png, {stem}_sweep.png", flush=True)
    return results


def plot_sweep(sweeps: Mapping[float, Mapping[float, Mapping[str, Any]]], path: Path, title: str) -> None:
    """CLD, IM1, IM2 and effectiveness against the guidance scale, one line per abduction fraction
    (Diff-SCM's CLD figure, with its published CLD points and IM1/IM2 figures for comparison)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = ("#2b5d8a", "#e08a1e", "#4f9a4f", "#8a2b7d")
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.3))
    for ax, key in zip(axes, ("CLD", "IM1", "IM2", "effectiveness")):
        for color, (f, per_scale) in zip(colors, sorted(sweeps.items())):
            xs = sorted(x for x, r in per_scale.items() if r.get("in_sweep", True))
            vals = [per_scale[x][key] for x in xs]
            mean = [v["mean"] if isinstance(v, dict) else v for v in vals]
            ax.plot(xs, mean, "o-", color=color, ms=4, label=f"causaldiff, abduction {f:g}")
            if isinstance(vals[0], dict):
                sem = [v["sem"] for v in vals]
                ax.fill_between(xs, [m - e for m, e in zip(mean, sem)], [m + e for m, e in zip(mean, sem)],
                                color=color, alpha=0.2)
        if key == "CLD":
            px = sorted(PAPER["CLD"])
            ax.plot(px, [PAPER["CLD"][x] for x in px], "s--", color="#c0504d", ms=4, label="Diff-SCM paper")
            ax.axhline(M.CLD_UNCHANGED, color="grey", lw=0.8, ls=":", label="unchanged image")
        elif key in ("IM1", "IM2"):
            ax.axhline(PAPER[key], color="#c0504d", lw=1, ls="--", label="Diff-SCM paper")
        else:
            ax.axhline(EFFECTIVE, color="grey", lw=0.8, ls=":")
        ax.legend(fontsize=6)
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
    m, env, st, tr, mo = r["main"], r["env"], r["settings"], r["training"], r["model"]
    K = mo["sampler"]["num_inference_steps"]
    lines = [f"# Diff-SCM on MNIST: `{r['setting']}` setting", "",
             f"**{r['label']}**", "",
             f"- date: {r['date']}; device: **{env['device_name']}**; torch {env['torch']}; "
             f"causaldiff {env['causaldiff']} (commit {env.get('git_commit')})",
             f"- command: `{r['command']}`",
             f"- denoiser: UNet {mo['net']['base_channels']} channels x {tuple(mo['net']['channel_mult'])}, "
             f"{mo['net']['num_res_blocks']} res block(s), mid attention {mo['net']['mid_attention']} "
             f"({tr['denoiser_params'] / 1e6:.2f}M parameters); "
             f"{mo['train']['steps']} steps of batch {mo['train']['batch_size']}, "
             f"AdamW lr {mo['train']['lr']:g} wd {mo['train']['weight_decay']:g}, EMA "
             f"{mo['train']['ema_decay']:g}, bf16 autocast on CUDA; {mo['schedule']['kind']} schedule T = "
             f"{mo['schedule']['num_train_timesteps']}"
             + (f" (budget {tr['denoiser']['budget_s']:g} s at {tr['denoiser']['probe_seconds_per_step'] * 1000:.1f}"
                f" ms/step)" if tr["denoiser"]["budgeted"] else ""),
             f"- noisy classifier: time-conditioned encoder {mo['predictor']['base_channels']} channels x "
             f"{tuple(mo['predictor']['channel_mult'])} ({tr['predictor_params'] / 1e6:.2f}M parameters), "
             f"{mo['predictor_train']['steps']} steps of batch {mo['predictor_train']['batch_size']}, "
             f"lr {mo['predictor_train']['lr']:g}"
             + (f" (budget {tr['predictor']['budget_s']:g} s)" if tr["predictor"]["budgeted"] else "")
             + (f"; both loaded from `{tr['denoiser']['loaded_from']}`" if "loaded_from" in tr["denoiser"] else ""),
             f"- counterfactuals: unguided DDIM inversion over the first fraction of a K = {K}-step trajectory "
             f"({mo['sampler']['inversion_fixed_point_iters']} fixed-point refinements), classifier-guided DDIM "
             f"back (predicted x_0 clipped to ±{mo['sampler']['clip_sample']} in generation only); do(digit = k), k != factual, uniform; {st['n_test']} test images (composition on "
             f"{m['n_composition']}), CLD ranked against {st['n_reference']} test images",
             f"- effectiveness classifier (independent of the guidance one): test accuracy "
             f"{tr['effectiveness_classifier_test_accuracy']:.4f}",
             "", f"## Main results: abduction fraction {m['abduction_fraction']:g} ({m['abduction_steps']} of {K} "
             f"steps), s = {m['scale']:g}", "",
             ("Chosen by a rule fixed before any run: among the (fraction, scale) pairs of the sweeps whose "
              f"effectiveness reaches {EFFECTIVE}, the lowest CLD; else the most effective pair."
              if m["rule"] == "auto" else "Scale fixed by `--scale`, first abduction fraction."),
             "Mean ± standard error over images.", "",
             "| metric | causaldiff | Diff-SCM paper | better |", "|---|---|---|---|",
             f"| IM1 | {_fmt(m['IM1'])} | {PAPER['IM1']} | lower |",
             f"| IM2 | {_fmt(m['IM2'], 4)} | {PAPER['IM2']} | lower |",
             f"| CLD | {_fmt(m['CLD'])} | ~1.06 at s = 0.7-0.8 | lower |",
             f"| effectiveness | {m['effectiveness']:.3f} | - | higher |",
             f"| minimality (L1) | {_fmt(m['minimality_l1'], 4)} | - | lower |",
             f"| reversibility (L1) | {_fmt(m['reversibility_l1'], 4)} | - | lower |"]
    for c in st["cycles"]:
        lines.append(f"| composition, {c} cycle(s) (L1) | {_fmt(m[f'composition_l1_{c}'], 4)} | - | lower |")
    paper_cld = {float(k): v for k, v in r["paper"]["CLD"].items()}
    for f, sweep in sorted(((float(k), v) for k, v in r["sweeps"].items())):
        lines += ["", f"## Guidance-scale sweep, abduction fraction {f:g}", "",
                  "| s | CLD | paper CLD | IM1 | IM2 | effectiveness | minimality (L1) |",
                  "|---|---|---|---|---|---|---|"]
        for s, row in sorted(((float(k), v) for k, v in sweep.items())):
            near = next((f"{v}" for k, v in paper_cld.items()
                         if abs(k - s) <= 0.05 or (k == 0.75 and 0.7 <= s <= 0.8)), "")
            lines.append(f"| {s:g} | {_fmt(row['CLD'])} | {near} | {_fmt(row['IM1'])} | {_fmt(row['IM2'], 4)} | "
                         f"{row['effectiveness']:.3f} | {_fmt(row['minimality_l1'], 4)} |")
    lines += ["", f"CLD of an unchanged image: {M.CLD_UNCHANGED:.3f}. Paper: IM1 0.94, IM2 0.04; CLD 1.31 at s = 0, "
              "minimum ~1.06 near s = 0.7-0.8, 1.11 at s = 2, 1.12 at s = 3.", "", "## Timings (s)", "",
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
    p.add_argument("--scale", default=None, help="main guidance scale s (with the first abduction fraction), or "
                   f"'auto' (default): among the swept pairs with effectiveness >= {EFFECTIVE} the lowest CLD, "
                   "else the most effective")
    p.add_argument("--scales", default=None, help="comma-separated sweep scales (default: 0,0.3,0.7,1,2,3,5,10)")
    p.add_argument("--abduction-fractions", default=None,
                   help="comma-separated shares of the DDIM trajectory abducted (default: 0.75,1; Diff-SCM's "
                   "later revision: 0.75)")
    p.add_argument("--ddim-steps", type=int, default=None, help="K DDIM steps (default: the setting's)")
    p.add_argument("--n-test", type=int, default=None, help="test images scored (default: the setting's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--save", default=None, help="save the fitted SCM to this folder (cd.load reads it)")
    p.add_argument("--load", default=None, help="evaluate a saved SCM (from --save) instead of training one")
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # the setting's pipeline, tiny counts
    args = p.parse_args(argv)
    if args.scales is not None:
        try:
            args.scales = tuple(float(s) for s in args.scales.split(",") if s.strip())
        except ValueError:
            p.error(f"--scales expects comma-separated numbers, got {args.scales!r}")
        if not args.scales or any(s < 0 for s in args.scales):
            p.error("--scales expects non-negative numbers")
    if args.scale is not None:
        if args.scale == "auto":
            args.scale = None
        else:
            try:
                args.scale = float(args.scale)
            except ValueError:
                p.error(f"--scale expects a number or 'auto', got {args.scale!r}")
            if args.scale < 0:
                p.error("--scale must be non-negative")
    if args.save and args.load:
        p.error("--save and --load exclude each other")
    if args.abduction_fractions is not None:
        try:
            args.abduction_fractions = tuple(float(f) for f in args.abduction_fractions.split(",") if f.strip())
        except ValueError:
            p.error(f"--abduction-fractions expects comma-separated numbers, got {args.abduction_fractions!r}")
        if not args.abduction_fractions or any(not 0 < f <= 1 for f in args.abduction_fractions):
            p.error("--abduction-fractions must lie in (0, 1]")
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
               save=Path(args.save) if args.save else None, load=Path(args.load) if args.load else None,
               scales=setting.scales if args.scales is None else args.scales,
               fractions=setting.abduction_fractions if args.abduction_fractions is None
               else args.abduction_fractions, seed=args.seed, command=command)


if __name__ == "__main__":
    main()
