"""The embedded demos run by ``causaldiff demo`` (no downloads, CPU-sized)."""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .diffusion.ddim import DDIMConfig
from .diffusion.nets import UNetConfig
from .diffusion.schedule import ScheduleConfig
from .evaluation.report import Timer, now, write_json
from .mechanisms.diffusion import DiffusionMechanism
from .mechanisms.neural import AdditiveNoiseMechanism
from .progress import progress, progress_enabled, set_progress
from .scm import SCM
from .training import TrainConfig


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def tabular_demo(out: Path, seed: int = 0, quick: bool = False) -> dict:
    """Fit additive-noise MLPs to the DCM chain SCM and score counterfactuals against the truth.

    Truth is known because the data come from ``causaldiff.datasets.tabular`` with their noise.
    """
    from . import metrics as M
    from .datasets.tabular import get_tabular_scm

    truth = get_tabular_scm("chain-nonlinear")
    gen = torch.Generator().manual_seed(seed)
    n_train, n_cf = (500, 50) if quick else (5000, 200)
    train = truth.sample(n_train, gen).values
    g = truth.graph()
    steps = 150 if quick else 1500
    scm = SCM(g, {v: AdditiveNoiseMechanism(steps=steps, seed=seed) for v in truth.nodes})
    print(f"causaldiff demo (tabular): fit an additive-noise MLP per node ({steps} steps) to {n_train} rows of the "
          f"DCM chain x1 -> x2 -> x3, then score the counterfactuals of {n_cf} rows at 5 values of x1 against the "
          f"true ones (about a minute on 2 idle cores); results in {out}", flush=True)
    t0 = time.perf_counter()
    scm.fit(train)
    fit_s = time.perf_counter() - t0
    noise = truth.sample_noise(n_cf, gen)
    factual = truth.simulate(noise)
    grid = truth.quantile_grid("x1", 5, generator=gen)
    rows = [("do(x1 = v)", "cf MSE x2", "cf MSE x3", "factual MSE x3")]
    results = []
    for v in progress(grid.tolist(), desc="counterfactuals"):
        true_cf = truth.simulate(noise, do={"x1": v})
        cf = scm.counterfactual(factual, do={"x1": v})
        mse = {k: float(M.mse(cf[k], true_cf[k]).mean()) for k in ("x2", "x3")}
        base = float(M.mse(factual["x3"], true_cf["x3"]).mean())
        results.append({"value": v, "mse": mse, "unchanged_mse_x3": base})
        rows.append((f"{v:+.3f}", f"{mse['x2']:.4f}", f"{mse['x3']:.4f}", f"{base:.4f}"))
    summary = {
        "demo": "tabular", "scm": truth.scm_name, "n_train": n_train, "n_counterfactual": n_cf,
        "fit_seconds": fit_s, "results": results,
        "mean_cf_mse": sum(r["mse"]["x3"] + r["mse"]["x2"] for r in results) / (2 * len(results)),
        "device": str(scm.device), "torch": torch.__version__, "python": platform.python_version(), "date": now(),
    }
    write_json(out / "metrics.json", summary)
    print(f"\nDCM chain (x1 -> x2 -> x3), additive-noise MLPs fitted in {fit_s:.1f} s on {n_train} rows")
    print(_table(rows))
    print("\n" + TABULAR_LEGEND)
    print(f"\nwrote {out / 'metrics.json'}")
    return summary


def image_mechanism(quick: bool = False, seed: int = 0, steps: int | None = None,
                    checkpoint_dir: Path | None = None, **inference: Any) -> DiffusionMechanism:
    """The demo's image node: a conditional UNet diffusion model sized for a 2-core CPU.

    Three UNet levels (16x16, 8x8, 4x4), 3000 steps of 64 images (``steps`` replaces it: the time
    probe), K = 20, a checkpoint every 100 steps in ``checkpoint_dir`` (resumed when present);
    ``inference``: ``abduction_fraction`` and ``anchor_scale`` (None: the defaults below).
    Abduction inverts the first 60% of the trajectory (Diff-SCM's later revision uses 75%): on the
    shapes SCM this keeps position and size closer to the factual image than a full inversion
    (do(shape) error against the truth 0.48 vs 0.57 of the unchanged image's for a two-level UNet,
    same effectiveness)."""
    steps = steps if steps is not None else 20 if quick else 3000
    settings = {"abduction_fraction": 0.6, **{k: v for k, v in inference.items() if v is not None}}
    return DiffusionMechanism(
        net=UNetConfig(base_channels=16, channel_mult=(1, 2, 2), num_groups=8, mid_attention=False),
        schedule=ScheduleConfig(kind="cosine"), **settings,
        train=TrainConfig(steps=steps, batch_size=64, lr=2e-3, warmup_steps=min(100, steps // 30), ema_decay=0.995,
                          seed=seed, checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir),
                          checkpoint_every=None if checkpoint_dir is None else 5 if quick else 100),
        sampler=DDIMConfig(num_inference_steps=4 if quick else 20))


def _shapes_data(quick: bool, seed: int) -> tuple[Any, Any, Any, torch.Generator]:
    """The shapes SCM (16x16) and its training and test draws."""
    from .datasets.shapes import ShapesConfig, ShapesSCM

    truth = ShapesSCM(ShapesConfig(resolution=16))
    gen = torch.Generator().manual_seed(seed)
    n_train, n_test = (256, 12) if quick else (4000, 96)
    return truth, truth.sample(n_train, gen), truth.sample(n_test, gen), gen


def _classifier_config(quick: bool) -> Any:
    from .metrics import ClassifierConfig

    return ClassifierConfig(steps=30 if quick else 400, batch_size=64, hidden=16, lr=3e-3)


def _probe(truth: Any, train: Any, test: Any, quick: bool, seed: int) -> dict[str, float]:
    """Seconds per training step, per query call and row, and per classifier step on this machine:
    fits of the same networks for 1 and 1 + k steps after a warm-up fit (the difference leaves set-up
    costs out), bars off."""
    from . import metrics as M

    def fit(steps: int) -> tuple[SCM, float]:
        scm = SCM(truth.scm_graph(image_mechanism(quick, seed, steps=steps)))
        t0 = time.perf_counter()
        scm.fit(train.values)
        return scm, time.perf_counter() - t0

    k, bars = (2 if quick else 10), progress_enabled()
    set_progress(False)
    try:
        fit(1)  # the process's one-time costs (tens of seconds on a loaded machine), paid once
        (_, short), (scm, long) = fit(1), fit(1 + k)
        seconds = []
        for n in (4, 12):  # a query's cost: per call and per row
            rows = {key: v[:n] for key, v in test.values.items()}
            t0 = time.perf_counter()
            scm.counterfactual(rows, do={"shape": (rows["shape"] + 1) % 3}, seed=seed)
            seconds.append(time.perf_counter() - t0)
        t1 = time.perf_counter()
        M.train_classifier(train.values["image"][:256], train.values["shape"][:256], num_classes=3,
                           config=_classifier_config(quick).model_copy(update={"steps": k}), seed=seed)
        classifier = (time.perf_counter() - t1) / k
    finally:
        set_progress(bars)
    per_row = max(seconds[1] - seconds[0], 0.0) / 8
    return {"train_step": max(long - short, 0.0) / k, "query_call": max(seconds[0] - 4 * per_row, 0.0),
            "counterfactual_row": per_row, "classifier_step": classifier}


def _announce(out: Path, quick: bool, n_train: int, n_test: int, mech: DiffusionMechanism, done: int) -> None:
    """What the image demo will do, then how long it should take (from :func:`_probe`)."""
    steps, every = mech.config.train.steps, mech.config.train.checkpoint_every
    resume = f"resuming at step {done} of {steps}" if done else f"{steps} steps"
    print(f"causaldiff demo (image){' --quick: a smoke test, figures meaningless' if quick else ''}\n"
          f"  1. train a conditional diffusion UNet on {n_train} images of the shapes SCM (shape -> size -> "
          f"intensity -> 16x16 image): {resume}, a checkpoint every {every} steps in "
          f"{mech.config.train.checkpoint_dir} (Ctrl-C stops, the same command continues)\n"
          f"  2. train an independent shape classifier on the same images (to score effectiveness)\n"
          f"  3. answer {len(_QUERIES)} counterfactual queries on {n_test} test images, scored against the exact "
          f"counterfactuals the renderer knows; results in {out}")
    print("  training done: counterfactuals only" if done == steps else
          f"  estimating the time ({torch.get_num_threads()} torch thread(s), a few steps of each network) ...",
          flush=True)


def _estimate(probe: dict[str, float], quick: bool, n_test: int, steps_left: int) -> None:
    train_s = probe["train_step"] * steps_left + probe["classifier_step"] * _classifier_config(quick).steps
    query_s = (probe["query_call"] + probe["counterfactual_row"] * n_test) * len(_QUERIES)
    print(f"  estimated: training ~{_duration(train_s)}, queries ~{_duration(query_s)} "
          "(longer if other jobs take the cores)", flush=True)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _done_steps(directory: Path) -> int:
    """The optimiser steps a checkpoint in ``directory`` holds (0: none)."""
    from .training.checkpoint import load_checkpoint

    state = load_checkpoint(directory)
    return int(state["step"]) if isinstance(state, dict) and "step" in state else 0


#: the demo's names of the metrics of :func:`causaldiff.evaluation.axioms.image_counterfactual_metrics`
_IMAGE_KEYS = {"effectiveness_shape": "effectiveness",
               # the same classifier on the exact counterfactuals: the ceiling of the figure above
               "effectiveness_shape_true_cf": "effectiveness_true_cf", "true_cf_mse": "true_cf_mse",
               "unchanged_mse": "unchanged_factual_mse", "psnr_db": "true_cf_psnr", "minimality_l1": "minimality_l1"}
#: the demo's queries: name -> the intervention, given the factual rows and each row's other shape
_QUERIES = {
    "do(shape = another)": lambda f, other: {"shape": other},
    "do(size = 0.6)": lambda f, other: {"size": 0.6},
    "do(shape = another, intensity = 0.4)": lambda f, other: {"shape": other, "intensity": 0.4},
    "do(shape = itself) [null]": lambda f, other: {"shape": f["shape"]},
}


def _orientation(truth: Any, test: Any, do: dict, cf: Tensor, true: dict[str, Tensor]) -> dict[str, float]:
    """The mean angle (degrees) between the shape of each counterfactual and of the exact one, and
    what a model scores that draws every shape unrotated (the rotation lost)."""
    from .datasets.base import Draw
    from .datasets.shapes import orientation_error

    unrotated = truth.counterfactual(Draw(test.values, {**test.exogenous, "rotation": torch.zeros(len(test))}), do)
    return {"orientation_error_deg": float(orientation_error(cf, true["image"], true["shape"]).mean()),
            "orientation_error_unrotated_deg": float(orientation_error(unrotated["image"], true["image"],
                                                                       true["shape"]).mean())}


def _image_queries(scm: SCM, truth: Any, test: Any, classifier: Any, gen: torch.Generator,
                   seed: int) -> tuple[dict[str, dict], list, list[str]]:
    """The queries scored against the exact counterfactuals; the grid rows (the factual images,
    then each query's counterfactuals and the true ones) and their labels."""
    from .evaluation.axioms import image_counterfactual_metrics, other_class

    factual = test.values
    other = other_class(factual["shape"], 3, gen)
    results: dict[str, dict] = {}
    grids, labels = [factual["image"]], ["factual"]
    for name, query in progress(list(_QUERIES.items()), desc="counterfactual queries"):
        do = query(factual, other)
        timer = Timer(scm.device)
        with timer("counterfactual"):
            cf = scm.counterfactual(factual, do=do, seed=seed)
        true = truth.counterfactual(test, do)
        m = image_counterfactual_metrics(scm, factual, do, image_node="image", label="shape", classifier=classifier,
                                         truth_images=true["image"], cycles=(), reversibility=False,
                                         counterfactual=cf, target=true["shape"])
        results[name] = {**{k: m[v] for k, v in _IMAGE_KEYS.items()}, **_orientation(truth, test, do, cf["image"], true),
                         "seconds": timer.seconds["counterfactual"]}
        grids += [cf["image"], true["image"]]
        labels += [name.replace("do(", "cf do("), "true cf"]
    return results, grids, labels


def _columns(test: Any, k: int) -> list[str]:
    """The figure's column labels: each test row's shape and rotation."""
    from .datasets.shapes import SHAPE_NAMES

    return [f"{SHAPE_NAMES[int(s)]}\n{float(r):+.0f}\N{DEGREE SIGN}"
            for s, r in zip(test.values["shape"][:k], test.exogenous["rotation"][:k].rad2deg())]


def image_demo(out: Path, seed: int = 0, quick: bool = False, **inference: Any) -> dict:
    """Train a conditional diffusion image node of the shapes SCM from scratch and score its
    counterfactuals against the exact ones (the project renders the images, so it knows them).
    Training checkpoints into ``out`` and resumes from there (Ctrl-C keeps the checkpoint), so other
    ``inference`` settings (:func:`image_mechanism`) are tried on the trained node at once."""
    from . import metrics as M
    from .evaluation.plotting import save_grid

    t_start = time.perf_counter()
    truth, train, test, gen = _shapes_data(quick, seed)
    mech = image_mechanism(quick, seed, checkpoint_dir=out / f"checkpoint-seed{seed}{'-quick' if quick else ''}",
                           **inference)
    done = _done_steps(Path(mech.config.train.checkpoint_dir))
    _announce(out, quick, len(train), len(test), mech, done)
    if done < mech.config.train.steps:
        _estimate(_probe(truth, train, test, quick, seed), quick, len(test), mech.config.train.steps - done)
    scm = SCM(truth.scm_graph(mech))
    t0 = time.perf_counter()
    try:
        scm.fit(train.values)
    except KeyboardInterrupt:
        where = Path(mech.config.train.checkpoint_dir)
        print(f"\ninterrupted: the checkpoint at step {_done_steps(where)} of {mech.config.train.steps} is kept in "
              f"{where}; run the same command to continue from it", file=sys.stderr, flush=True)
        raise
    fit_s = time.perf_counter() - t0
    classifier = M.train_classifier(train.values["image"], train.values["shape"], num_classes=3,
                                    config=_classifier_config(quick), seed=seed + 1)
    results, grids, labels = _image_queries(scm, truth, test, classifier, gen, seed)
    main = results["do(shape = another)"]
    summary = {
        "demo": "image", "scm": "shapes 1x16x16: shape -> size -> intensity -> image", "n_train": len(train),
        "n_test": len(test), "fit_seconds": fit_s, "resumed_from_step": done, "queries": results,
        "acceptance": {"effectiveness_shape": main["effectiveness_shape"],
                       "cf_error_ratio_vs_unchanged": main["true_cf_mse"] / max(main["unchanged_mse"], 1e-12),
                       "orientation_error_deg": main["orientation_error_deg"]},
        "classifier_accuracy_on_factual": float(M.effectiveness(classifier, test.values["image"],
                                                                test.values["shape"])),
        "image_mechanism": scm.mechanisms["image"].config.model_dump(mode="json"),
        "figure_rows": labels, "total_seconds": time.perf_counter() - t_start,
        "device": str(scm.device), "torch": torch.__version__, "python": platform.python_version(), "date": now(),
    }
    k = min(len(test), 12)
    save_grid([g[:k] for g in grids], labels, out / "counterfactuals.png", columns=_columns(test, k), cell=1.0,
              title="shapes SCM: factual images (columns: shape, rotation), then for each query causaldiff's "
                    "counterfactuals (cf) and the exact ones (true cf)")
    write_json(out / "metrics.json", summary)
    _print_image(summary)
    print(f"\nwrote {out / 'counterfactuals.png'} and {out / 'metrics.json'} "
          f"({summary['total_seconds']:.0f} s in all)")
    return summary


#: what the columns of the image demo's table mean (printed under it)
IMAGE_LEGEND = """\
effectiveness    share of counterfactual images that an independent shape classifier (trained on
                 factual images only) assigns the shape the query implies: the new shape under
                 do(shape); the factual shape under do(size) and the null query (it must not change)
(on true cf)     the same classifier on the exact counterfactual images: the best the column before
                 can be with this classifier
cf MSE vs truth  mean squared pixel error of the counterfactual against the exact one (lower is better)
unchanged MSE    the same error of the factual image left as it is: what a model that changes nothing
  vs truth       scores (cf MSE far below it: the model moved the image the right way)
PSNR (dB)        peak signal-to-noise ratio of the counterfactual against the exact one (higher is better)
orientation      mean angle (degrees) between the shape drawn in the counterfactual and in the exact
  error          one, which keeps the factual rotation (shapes.orientation_error; 0 is best)
(unrotated)      the same for shapes drawn unrotated: what a model that loses the rotation scores"""

#: what the columns of the tabular demo's table mean (printed under it)
TABULAR_LEGEND = """\
cf MSE x2, x3    mean squared error of the counterfactual x2, x3 against the true ones (same noise)
factual MSE x3   the same error of the factual x3 left as it is: what a model that changes nothing scores"""


def _print_image(summary: dict) -> None:
    rows = [("query", "effectiveness", "(on true cf)", "cf MSE vs truth", "unchanged MSE vs truth", "PSNR (dB)",
             "orientation error", "(unrotated)")]
    rows += [(name, f"{r['effectiveness_shape']:.3f}", f"{r['effectiveness_shape_true_cf']:.3f}",
              f"{r['true_cf_mse']:.4f}", f"{r['unchanged_mse']:.4f}", f"{r['psnr_db']:.1f}",
              f"{r['orientation_error_deg']:.1f}", f"{r['orientation_error_unrotated_deg']:.1f}")
             for name, r in summary["queries"].items()]
    resumed = f" (resumed at step {summary['resumed_from_step']})" if summary["resumed_from_step"] else ""
    print(f"\nshapes image SCM: conditional diffusion image node trained from scratch in {summary['fit_seconds']:.0f} s"
          f"{resumed} on {summary['n_train']} images (independent shape classifier: "
          f"{summary['classifier_accuracy_on_factual']:.2f} on factual images)")
    print(_table(rows))
    print("\n" + IMAGE_LEGEND)


def run_demo(kind: str, out: Path, seed: int = 0, quick: bool = False, **inference: Any) -> dict:
    """Run the ``image`` (with ``inference`` settings of its image node) or ``tabular`` demo,
    writing into ``out`` (the CLI's default: ``outputs/demo/<kind>``, so that neither demo
    overwrites the other's files)."""
    if kind == "tabular":
        return tabular_demo(out, seed=seed, quick=quick)
    if kind == "image":
        return image_demo(out, seed=seed, quick=quick, **inference)
    raise ValueError(f"unknown demo {kind!r}")
