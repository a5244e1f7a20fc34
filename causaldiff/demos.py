"""The embedded demos run by ``causaldiff demo`` (no downloads, CPU-sized)."""

from __future__ import annotations

import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from .diffusion.ddim import DDIMConfig
from .diffusion.nets import UNetConfig
from .diffusion.schedule import ScheduleConfig
from .diffusion.train import TrainConfig
from .mechanisms.diffusion import DiffusionMechanism
from .mechanisms.neural import AdditiveNoiseMechanism
from .progress import progress
from .scm import SCM


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def tabular_demo(out: Path, seed: int = 0, quick: bool = False) -> dict:
    """Fit additive-noise MLPs to the DCM chain SCM and score counterfactuals against the truth.

    Truth is known because the data come from ``causaldiff.datasets.tabular`` with their noise.
    """
    from .datasets.tabular import get_tabular_scm

    truth = get_tabular_scm("chain-nonlinear")
    gen = torch.Generator().manual_seed(seed)
    n_train, n_cf = (500, 50) if quick else (5000, 200)
    train = truth.sample(n_train, gen)
    g = truth.as_networkx()
    steps = 150 if quick else 1500
    scm = SCM(g, {v: AdditiveNoiseMechanism(steps=steps, seed=seed) for v in truth.nodes})
    t0 = time.perf_counter()
    scm.fit(train)
    fit_s = time.perf_counter() - t0
    noise = truth.sample_noise(n_cf, gen)
    factual = truth.simulate(noise)
    grid = truth.quantile_grid("x1", 5, generator=gen)
    rows = [("do(x1 = v)", "cf MSE x2", "cf MSE x3", "factual MSE x3 (no model)")]
    results = []
    for v in progress(grid.tolist(), desc="counterfactuals"):
        true_cf = truth.simulate(noise, do={"x1": v})
        cf = scm.counterfactual(factual, do={"x1": v})
        mse = {k: float((cf[k] - true_cf[k]).pow(2).mean()) for k in ("x2", "x3")}
        base = float((factual["x3"] - true_cf["x3"]).pow(2).mean())
        results.append({"value": v, "mse": mse, "unchanged_mse_x3": base})
        rows.append((f"{v:+.3f}", f"{mse['x2']:.4f}", f"{mse['x3']:.4f}", f"{base:.4f}"))
    summary = {
        "demo": "tabular", "scm": truth.name, "n_train": n_train, "n_counterfactual": n_cf,
        "fit_seconds": fit_s, "results": results,
        "mean_cf_mse": sum(r["mse"]["x3"] + r["mse"]["x2"] for r in results) / (2 * len(results)),
        "device": str(scm.device), "torch": torch.__version__, "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    print(f"\nDCM chain (x1 -> x2 -> x3), additive-noise MLPs fitted in {fit_s:.1f} s on {n_train} rows")
    print(_table(rows))
    print(f"\nwrote {out / 'metrics.json'}")
    return summary


def image_mechanism(quick: bool = False, seed: int = 0) -> DiffusionMechanism:
    """The demo's image node: a conditional UNet diffusion model sized for a 2-core CPU.

    Three UNet levels (16x16, 8x8, 4x4), 3000 steps of 64 images, K = 20. Abduction inverts the
    first 60% of the trajectory (Diff-SCM's later revision uses 75%): on the shapes SCM this keeps
    position and size closer to the factual image than a full inversion (do(shape) error against
    the truth 0.48 vs 0.57 of the unchanged image's for a two-level UNet, same effectiveness)."""
    return DiffusionMechanism(
        net=UNetConfig(base_channels=16, channel_mult=(1, 2, 2), num_groups=8, mid_attention=False),
        schedule=ScheduleConfig(kind="cosine"), abduction_fraction=0.6,
        train=TrainConfig(steps=20 if quick else 3000, batch_size=64, lr=2e-3, warmup_steps=0 if quick else 100,
                          ema_decay=0.995, seed=seed),
        sampler=DDIMConfig(num_inference_steps=4 if quick else 20))


def image_demo(out: Path, seed: int = 0, quick: bool = False) -> dict:
    """Train a conditional diffusion image node of the shapes SCM from scratch and score its
    counterfactuals against the exact ones (the project renders the images, so it knows them)."""
    from . import metrics as M
    from .datasets.images import ShapesConfig, ShapesSCM
    from .runs import save_grid

    t_start = time.perf_counter()
    truth = ShapesSCM(ShapesConfig(resolution=16))
    gen = torch.Generator().manual_seed(seed)
    n_train, n_test = (256, 12) if quick else (4000, 96)
    train, test = truth.sample(n_train, gen), truth.sample(n_test, gen)
    scm = SCM(truth.graph(image_mechanism(quick, seed)))
    t0 = time.perf_counter()
    scm.fit(train.values())
    fit_s = time.perf_counter() - t0
    classifier = M.train_classifier(train.image, train.parents["shape"], num_classes=3,
                                    config=M.ClassifierConfig(iterations=30 if quick else 400, batch_size=64,
                                                              hidden=16, lr=3e-3), seed=seed + 1)
    factual = test.values()
    other = (factual["shape"] + 1 + torch.randint(2, (n_test,), generator=gen)) % 3
    queries = {
        "do(shape = another)": {"shape": other},
        "do(size = 0.6)": {"size": 0.6},
        "do(shape = another, intensity = 0.4)": {"shape": other, "intensity": 0.4},
        "do(shape = itself) [null]": {"shape": factual["shape"]},
    }
    rows = [("query", "effectiveness", "(on true cf)", "cf MSE vs truth", "unchanged MSE vs truth", "PSNR (dB)")]
    results: dict[str, dict] = {}
    grids, labels = [factual["image"]], ["factual"]
    for name, do in progress(list(queries.items()), desc="counterfactual queries"):
        t0 = time.perf_counter()
        cf = scm.counterfactual(factual, do=do, seed=seed)
        secs = time.perf_counter() - t0
        true = truth.true_counterfactual(test, do)
        shape_target = true.parents["shape"]
        r = {"effectiveness_shape": float(M.effectiveness(classifier, cf["image"], shape_target)),
             # the same classifier on the exact counterfactuals: the ceiling of the figure above
             "effectiveness_shape_true_cf": float(M.effectiveness(classifier, true.image, shape_target)),
             "true_cf_mse": float(M.mse(cf["image"], true.image).mean()),
             "unchanged_mse": float(M.mse(factual["image"], true.image).mean()),
             "psnr_db": float(M.psnr(cf["image"], true.image).clamp(max=100).mean()),
             "minimality_l1": float(M.minimality(factual["image"], cf["image"]).mean()),
             "seconds": secs}
        results[name] = r
        rows.append((name, f"{r['effectiveness_shape']:.3f}", f"{r['effectiveness_shape_true_cf']:.3f}",
                     f"{r['true_cf_mse']:.4f}",
                     f"{r['unchanged_mse']:.4f}", f"{r['psnr_db']:.1f}"))
        if "null" not in name:
            grids += [cf["image"], true.image]
            labels += [name.replace("do(", "cf do("), "true cf"]
    main = results["do(shape = another)"]
    summary = {
        "demo": "image", "scm": "shapes 1x16x16: shape -> size -> intensity -> image", "n_train": n_train,
        "n_test": n_test, "fit_seconds": fit_s, "queries": results,
        "acceptance": {"effectiveness_shape": main["effectiveness_shape"],
                       "cf_error_ratio_vs_unchanged": main["true_cf_mse"] / max(main["unchanged_mse"], 1e-12)},
        "classifier_accuracy_on_factual": float(M.effectiveness(classifier, factual["image"], factual["shape"])),
        "image_mechanism": scm.mechanisms["image"].config.model_dump(mode="json"),
        "total_seconds": time.perf_counter() - t_start,
        "device": str(scm.device), "torch": torch.__version__, "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out.mkdir(parents=True, exist_ok=True)
    k = min(n_test, 12)
    save_grid([g[:k] for g in grids], labels, out / "counterfactuals.png",
              title="shapes SCM: factual, causaldiff counterfactuals and the true ones")
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    print(f"\nshapes image SCM: conditional diffusion image node trained from scratch in {fit_s:.0f} s "
          f"on {n_train} images (independent shape classifier: "
          f"{summary['classifier_accuracy_on_factual']:.2f} on factual images)")
    print(_table(rows))
    print(f"\nwrote {out / 'counterfactuals.png'} and {out / 'metrics.json'} "
          f"({summary['total_seconds']:.0f} s in all)")
    return summary


def run_demo(kind: str, out: Path, seed: int = 0, quick: bool = False) -> dict:
    if kind == "tabular":
        return tabular_demo(out, seed=seed, quick=quick)
    if kind == "image":
        return image_demo(out, seed=seed, quick=quick)
    raise ValueError(f"unknown demo {kind!r}")
