"""How long a Morpho-MNIST setting takes: its work counted, its unit costs measured, projected.

* :func:`workload`: the work of a setting, phase by phase, in units (training steps of each kind
  of network, image-steps of the DDIM loops, unguided or guided, images rendered and measured),
  counted from its fields as :func:`~causaldiff.evaluation.morphomnist_run.run` does it (a test
  counts a real run's network calls against it);
* :func:`measure_units`: the seconds of one unit of each kind, timed on a device with the
  setting's own networks (untrained: the speed does not depend on the weights) and batch sizes;
  with :func:`unit_flops`, the FLOPs of each unit (``torch.utils.flop_counter``);
* :func:`reference_units`: unit seconds on another device from a recorded run of the same code
  (the MNIST benchmark's JSON: its probed step times and phase timings), rescaled by the FLOPs
  of this setting's networks over the recorded ones;
* :func:`project`: the work times the unit seconds, per phase. Worker-process CPU work is divided
  by the workers; the true counterfactuals render in the background, while the networks train.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from .. import metrics as M
from ..datasets.morphomnist import BENCHMARK_INTERVENTIONS, TRUE_INTERVENTIONS
from ..diffusion.nets import build_denoiser, build_predictor
from ..mechanisms.diffusion.config import abduction_steps
from ..mechanisms.diffusion.fit import build_networks, record_state
from .morphomnist_settings import Setting, image_config

IMAGE_SHAPE = (1, 32, 32)
UNITS = ("denoiser_step", "predictor_step", "small_step", "unguided", "guided", "small_batch", "render", "measure")
GRID_ROWS = 8


def _abduction_steps(setting: Setting, fraction: float | None = None) -> int:
    """DDIM steps each way of a counterfactual: ``fraction`` (default: the largest the run may
    use) of the K-step trajectory."""
    if fraction is None:
        fraction = max(setting.fractions or (setting.abduction_fraction,)) if setting.n_sweep else setting.abduction_fraction
    return abduction_steps(fraction, setting.ddim_steps)


def _loops(rows: int, steps: int, guided: bool) -> dict[str, float]:
    """``rows`` counterfactuals: an unguided inversion and a generation of ``steps`` steps each."""
    return {"unguided": rows * steps * (1 if guided else 2), "guided": rows * steps if guided else 0}


def _add(*parts: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in parts:
        for k, v in p.items():
            out[k] = out.get(k, 0.0) + v
    return out


def _scored(setting: Setting, rows: int, detail: int, guided: bool, one_abduction: bool) -> dict[str, float]:
    """One system-scale scored by ``Protocol.score``: three interventions on ``rows`` rows, their
    reversibility and ``max(cycles)`` composition cycles on ``detail`` rows, measured there."""
    I, k = _abduction_steps(setting), len(BENCHMARK_INTERVENTIONS)
    cfs = _loops(k * rows, I, guided)
    if one_abduction:  # abducted once for the three interventions
        cfs = _add({"unguided": rows * I}, {"guided": k * rows * I} if guided else {"unguided": k * rows * I})
    cycles = max(setting.cycles) if setting.cycles else 0
    return _add(cfs, _loops(k * detail + cycles * detail, I, guided), {"measure": k * detail})


def _fit(setting: Setting) -> dict[str, float]:
    return {"denoiser_step": setting.denoiser_train.steps, "predictor_step": setting.predictor_train.steps,
            "small_step": 2 * setting.parents_steps}


def workload(setting: Setting) -> dict[str, dict[str, float]]:
    """``{phase: {unit: count}}`` of one run of ``setting`` (see the module docstring); a
    budgeted training phase counts its steps at ``max_steps`` (:func:`project` caps its time)."""
    n, I = setting.n_test, _abduction_steps(setting)
    detail = n if setting.n_detail is None else min(setting.n_detail, n)
    k = len(BENCHMARK_INTERVENTIONS)
    phases: dict[str, dict[str, float]] = {
        "metric models": {"small_step": 3 * setting.metric_models.steps + setting.vae.steps},
        "true counterfactuals (background)": {"render": len(TRUE_INTERVENTIONS) * n}}
    for name in setting.nets:
        phases[f"fit {name}"] = _fit(setting)
        if setting.n_sweep is None:
            for s in setting.scales:
                phases[f"score {name} s={s:g}"] = _scored(setting, n, detail, s > 0, False)
        else:
            m, fractions = min(setting.n_sweep, n), setting.fractions or (setting.abduction_fraction,)
            guided = sum(s > 0 for s in setting.scales)
            steps = sum(_abduction_steps(setting, f) for f in fractions)  # an abduction per fraction
            phases[f"sweep {name}"] = _add({"unguided": k * m * steps * (1 + len(setting.scales) - guided)},
                                           {"guided": k * m * steps * guided},
                                           {"measure": len(fractions) * len(setting.scales) * min(m, detail)})
            phases[f"score {name}"] = _scored(setting, n, detail, True, True)
    phases["grid"] = {"small_batch": 2 * k * I}  # k counterfactuals of a few rows: launch-bound steps
    phases["truth and unchanged"] = {"measure": (len(TRUE_INTERVENTIONS) + k) * detail}
    return phases


# ------------------------------------------------------------------------------ unit costs
def _networks(setting: Setting, net: Any, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """The image node's denoiser and anti-causal predictor as ``DiffusionMechanism.fit`` builds
    them (the predictor's heads from ten placeholder rows of the three parents: every digit)."""
    config = image_config(setting, net)
    n = 10
    parents = {"digit": torch.arange(n), "intensity": torch.linspace(80.0, 240.0, n),
               "thickness": torch.linspace(1.0, 5.0, n)}
    state = record_state(config, torch.zeros(n, *IMAGE_SHAPE), parents, tuple(sorted(parents)), node="image",
                         device=device)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        den, pred = build_networks(config, state, device)
    return den, pred


def _inputs(rows: int, device: torch.device, shape: tuple[int, ...] = IMAGE_SHAPE) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(rows, *shape, generator=g).to(device),
            torch.randint(0, 1000, (rows,), generator=g).to(device))


def _train_step(net: nn.Module, x: Tensor, t: Tensor) -> None:
    net.zero_grad(set_to_none=True)
    net(x, t).float().square().mean().backward()


def _guided(den: nn.Module, pred: nn.Module, x: Tensor, t: Tensor) -> None:
    """One guided step's network work: the denoiser's forward, the predictor's forward and its
    gradient with respect to the image alone (Diff-SCM's anti-causal guidance; the weights are
    frozen for the call, so no weight gradient is computed, as in ``torch.autograd.grad``)."""
    with torch.no_grad():
        den(x, t)
    flags = [p.requires_grad for p in pred.parameters()]
    pred.requires_grad_(False)
    try:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            pred(xg, t).float().square().sum().backward()
    finally:
        for p, f in zip(pred.parameters(), flags):
            p.requires_grad_(f)


def _network_calls(den: nn.Module, pred: nn.Module, x: Tensor, t: Tensor) -> dict[str, Callable[[], None]]:
    def unguided() -> None:
        with torch.no_grad():
            den(x, t)

    return {"denoiser_step": lambda: _train_step(den, x, t), "predictor_step": lambda: _train_step(pred, x, t),
            "unguided": unguided, "guided": lambda: _guided(den, pred, x, t)}


def _unit_calls(setting: Setting, net: Any, device: torch.device, rows: int) -> dict[str, Callable[[], None]]:
    x, t = _inputs(rows, device)
    small = M.ImageClassifier(setting.metric_models.hidden, 10).to(device)

    def small_step() -> None:
        small.zero_grad(set_to_none=True)
        small(x).square().mean().backward()

    return {**_network_calls(*_networks(setting, net, device), x, t), "small_step": small_step}


def _count(calls: Mapping[str, Callable[[], None]], rows: int) -> dict[str, float]:
    out = {}
    for unit, call in calls.items():
        with FlopCounterMode(display=False) as counter:
            call()
        out[unit] = counter.get_total_flops() / rows
    return out


def unit_flops(setting: Setting, net: Any) -> dict[str, float]:
    """FLOPs of one row of each network unit (a training step row, an image-step), counted on
    the CPU with the setting's networks."""
    return _count(_unit_calls(setting, net, torch.device("cpu"), 2), 2)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(call: Callable[[], None], device: torch.device, repeats: int) -> float:
    call()  # warm-up (allocator, autotuning)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        call()
    _sync(device)
    return (time.perf_counter() - t0) / repeats


def measure_units(setting: Setting, net: Any, handwriting: np.ndarray, device: torch.device | str = "cpu",
                  rows: int | None = None, repeats: int = 2) -> dict[str, float]:
    """Seconds of one unit of each kind on ``device``: a training step at its real batch size, an
    image-step per row at ``eval_batch`` rows, a small-batch DDIM step (the grid's
    ``GRID_ROWS`` rows) per step; with ``rows``, every network unit timed on that many rows and
    scaled linearly (for a CPU, where the real batches take long); then :func:`cpu_units` of
    ``handwriting``."""
    device = torch.device(device)
    batch = {"denoiser_step": setting.denoiser_train.batch_size, "predictor_step": setting.predictor_train.batch_size,
             "small_step": setting.metric_models.batch_size, "unguided": setting.eval_batch,
             "guided": setting.eval_batch}
    units = {}
    for b in sorted({rows or size for size in batch.values()}):  # the networks built once per batch size
        calls = _unit_calls(setting, net, device, b)
        for unit, size in batch.items():
            if (rows or size) == b:
                per_row = _seconds(calls[unit], device, repeats) / b
                units[unit] = per_row * (size if unit.endswith("_step") else 1)
    units["small_batch"] = _seconds(_unit_calls(setting, net, device, GRID_ROWS)["guided"], device, repeats)
    units.update(cpu_units(handwriting))
    return units


def cpu_units(handwriting: np.ndarray) -> dict[str, float]:
    """Seconds per image, in this process, of rendering the given MNIST ``handwriting`` (uint8
    ``(n, 28, 28)``) at new (t, i), as a true counterfactual is, and of ``measure``-ing the result."""
    from ..datasets import morpho

    n = len(handwriting)
    g = torch.Generator().manual_seed(0)
    t = (1.5 + 3 * torch.rand(n, generator=g)).double().numpy()
    i = (80.0 + 160 * torch.rand(n, generator=g)).double().numpy()
    base = morpho.base_thickness_rows(handwriting)  # cached with the split: not part of the cost
    t0 = time.perf_counter()
    images, _ = morpho.render_rows(handwriting, base, t, i)
    t1 = time.perf_counter()
    morpho.measure_images(images)
    return {"render": (t1 - t0) / n, "measure": (time.perf_counter() - t1) / n}


# ------------------------------------------------------------------------------ projection
def reference_units(record: Mapping[str, Any], flops: Mapping[str, float], reference_flops: Mapping[str, float],
                    cpu: Mapping[str, float]) -> dict[str, float]:
    """Unit seconds on the device of a recorded MNIST benchmark run (its JSON ``record``):
    training steps from its probes; the unguided image-step from its abduction phase, the guided
    one from its sweep's generation phase; small-network steps from its effectiveness
    classifier, small-batch DDIM steps from its grid; each other network unit rescaled by
    ``flops / reference_flops`` (this setting's networks over the recorded ones, per row). Rendering and measuring keep ``cpu``'s seconds."""
    s, tm, tr = record["settings"], record["timings_s"], record["training"]
    steps = [abduction_steps(f, s["ddim_steps"]) for f in s["abduction_fractions"]]
    inverted = s["n_test"] * sum(steps)  # image-steps of the abduction phase (one per fraction)
    unguided = tm["abduction"] / inverted
    scales = s["scales"]
    guided_rows = s["n_test"] * sum(steps) * sum(x > 0 for x in scales)
    unguided_gen = s["n_test"] * sum(steps) * sum(x == 0 for x in scales)
    guided = (tm["generation (sweep)"] - unguided_gen * unguided) / guided_rows
    grid_steps = (1 + 10) * abduction_steps(record["run"]["abduction_fraction"], s["ddim_steps"])  # an abduction, ten digits
    recorded = {"denoiser_step": tr["denoiser"]["probe_seconds_per_step"],
                "predictor_step": tr["predictor"]["probe_seconds_per_step"],
                "small_step": tm["effectiveness classifier"] / s["classifier"]["iterations"],
                "unguided": unguided, "guided": guided}
    # small networks are launch-bound on a GPU: their step time is kept, not rescaled
    out = {u: v * flops[u] / reference_flops[u] if u != "small_step" else v for u, v in recorded.items()}
    out["small_batch"] = tm["grid"] / grid_steps
    return {**out, "render": cpu["render"], "measure": cpu["measure"]}


def mnist_reference_flops(record: Mapping[str, Any]) -> dict[str, float]:
    """:func:`unit_flops` of the recorded MNIST run's networks (28x28, ten digit logits)."""
    from ..diffusion.nets import ImagePredictorConfig, UNetConfig

    s, shape = record["settings"], (1, 28, 28)
    T = s["schedule"]["num_train_timesteps"]
    den = build_denoiser(UNetConfig(**s["unet"]), shape, 0, T)
    pred = build_predictor(ImagePredictorConfig(**s["predictor"]), shape, 10, T)
    return _count(_network_calls(den, pred, *_inputs(2, torch.device("cpu"), shape)), 2)


def project(setting: Setting, units: Mapping[str, float], workers: int | None = None) -> dict[str, Any]:
    """Seconds of each phase of :func:`workload` at ``units`` seconds per unit: a budgeted
    training at most its budget (plus its probe), worker-process CPU work over ``workers``
    (default: the setting's), the background rendering hidden behind the training it overlaps.
    ``costs``: ``{"phase/unit": seconds}``."""
    workers = workers or setting.workers
    phases = workload(setting)
    budgets = {"denoiser_step": setting.denoiser_budget, "predictor_step": setting.predictor_budget}
    costs: dict[str, float] = {}
    for phase, work in phases.items():
        for unit, count in work.items():
            cost = count * units[unit] / (workers if unit in ("render", "measure") else 1)
            budget = budgets.get(unit)
            if budget is not None:
                cost = min(cost, budget.seconds) + budget.probe_steps * units[unit]
            costs[f"{phase}/{unit}"] = cost
    seconds = {phase: sum(costs[f"{phase}/{u}"] for u in work) for phase, work in phases.items()}
    background = seconds.pop("true counterfactuals (background)")
    training = sum(v for k, v in seconds.items() if k.startswith(("fit ", "metric models")))
    seconds["true counterfactuals (waited for)"] = max(0.0, background - training)
    return {"phases": seconds, "background_render_s": background, "total_s": sum(seconds.values()),
            "costs": costs, "workload": phases, "units": dict(units), "workers": workers}


def fit_time_limit(setting: Setting, units: Mapping[str, float], elapsed: float,
                   margin: float = 0.1) -> tuple[Setting, dict[str, Any]]:
    """``setting`` with its denoiser budget cut so that a run ``elapsed`` seconds in (its data
    and metric models done) ends by ``(1 - margin) * time_limit_s``: every phase still to come
    but the denoisers' training projected at ``units``, the rest shared by the denoisers. Unchanged
    without a time limit or a denoiser budget; a limit that leaves no time gives ``min_steps``
    (``feasible``: False) rather than no result."""
    budget = setting.denoiser_budget
    if setting.time_limit_s is None or budget is None:
        return setting, {"fitted": False}
    p = project(setting, units)
    den = sum(v for k, v in p["costs"].items() if k.endswith("/denoiser_step"))
    rest = p["total_s"] - p["phases"]["metric models"] - den
    probe = budget.probe_steps * units["denoiser_step"]
    share = (setting.time_limit_s * (1 - margin) - elapsed - rest) / len(setting.nets) - probe
    seconds = min(budget.seconds, share)
    info = {"fitted": True, "limit_s": setting.time_limit_s, "margin": margin, "elapsed_s": elapsed,
            "projected_rest_s": rest, "denoiser_seconds": seconds, "feasible": seconds > 0}
    if seconds <= 0:
        print(f"  warning: the time limit {setting.time_limit_s:g} s leaves no time to train the denoiser "
              f"(the rest is projected at {rest:.0f} s): training min_steps={budget.min_steps}", flush=True)
        seconds = 1e-9
    new = budget.model_copy(update={"seconds": seconds})
    return setting.model_copy(update={"denoiser_budget": new}), info


def _steps_at(setting: Setting, units: Mapping[str, float]) -> Setting:
    """``setting`` without budgets, training the steps its budgets give at ``units``."""
    def steps(cfg: Any, budget: Any, unit: str) -> Any:
        if budget is None:
            return cfg
        n = max(budget.min_steps, min(cfg.steps, int(budget.seconds / units[unit])))
        return cfg.model_copy(update={"steps": n})

    return setting.model_copy(update={
        "denoiser_train": steps(setting.denoiser_train, setting.denoiser_budget, "denoiser_step"),
        "predictor_train": steps(setting.predictor_train, setting.predictor_budget, "predictor_step"),
        "denoiser_budget": None, "predictor_budget": None})


def _with_data(projection: dict[str, Any], data_s: float) -> dict[str, Any]:
    return {**projection, "phases": {"data": data_s, **projection["phases"]},
            "total_s": projection["total_s"] + data_s}


def plan(setting: Setting, record: Mapping[str, Any], handwriting: np.ndarray, rows: int = 16,
         data_s: float = 0.0) -> dict[str, Any]:
    """The timing of ``setting`` as far as this CPU allows: its workload (at the step counts the
    budgets give on the reference device); the FLOPs of each unit
    with its first net (and with the recorded run's); unit seconds measured on this CPU (``rows``
    rows, scaled) and on the recorded run's device (:func:`reference_units`); the run projected
    on that device (the denoiser cut to the time limit by :func:`fit_time_limit`, ``data_s``
    seconds of loading before it), and on this CPU at the same step counts."""
    net = next(iter(setting.nets.values()))
    flops, ref_flops = unit_flops(setting, net), mnist_reference_flops(record)
    here = measure_units(setting, net, handwriting, "cpu", rows=rows)
    there = reference_units(record, flops, ref_flops, here)
    before = project(setting, there)["phases"]["metric models"] + data_s
    fitted, limit = fit_time_limit(setting, there, elapsed=before)
    at_steps = _steps_at(fitted, there)
    on_device = project(fitted, there)
    return {"workload": workload(at_steps), "flops": flops, "reference_flops": ref_flops,
            "units": {"cpu": here, "reference": there}, "time_limit": limit, "data_s": data_s,
            "steps": {"denoiser": at_steps.denoiser_train.steps, "predictor": at_steps.predictor_train.steps},
            "projection": {"reference": _with_data(on_device, data_s), "cpu": _with_data(project(at_steps, here), data_s)},
            "reference_device": record["env"].get("device_name"), "reference_command": record.get("command")}


__all__ = ["UNITS", "workload", "unit_flops", "measure_units", "cpu_units", "reference_units",
           "mnist_reference_flops", "project", "fit_time_limit", "plan"]
