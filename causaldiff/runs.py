"""Runs: a fitted spec saved in a directory, and the CLI's queries on it.

A run directory holds ``spec.json`` (the validated :class:`~causaldiff.spec.GraphSpec`) and
``scm/`` (the saved SCM). Nodes bound to the dataset's ``truth`` are code and are rebound from
the spec when the run is loaded.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .build import Rows, build_mechanism, build_scm, load_rows
from .errors import DataError, GraphError
from .evaluation.report import now, write_json, write_text
from .progress import progress
from .scm import SCM
from .serialization import load
from .spec import TRUTH, GraphSpec, load_spec, parse_spec


def draw_graph(spec: GraphSpec, out: Path) -> None:
    """Draw the DAG with node mechanisms as labels (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    g = spec.graph()
    for n in nx.topological_sort(g):  # layer = longest path from a root
        g.nodes[n]["layer"] = max((g.nodes[p]["layer"] + 1 for p in g.predecessors(n)), default=0)
    pos = nx.multipartite_layout(g, subset_key="layer", align="horizontal", scale=2.0)
    pos = {k: (x, -y) for k, (x, y) in pos.items()}
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(g)), 3.5))
    nx.draw_networkx(g, pos, ax=ax, node_color="#dbe9f6", node_size=2600, edgecolors="#2b5d8a",
                     arrowsize=18, font_size=10, labels={n: f"{n}\n[{spec.nodes[n].mechanism}]" for n in g})
    ax.set_title(f"{spec.name}: {spec.description}"[:90], fontsize=10)
    ax.axis("off")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _quick_classifier(run: Path) -> Any:
    """A short effectiveness-classifier training for runs fitted with ``--quick`` (else None)."""
    from .metrics import ClassifierConfig

    fit = run / "fit.json"
    quick = fit.is_file() and json.loads(fit.read_text()).get("quick", False)
    return ClassifierConfig(iterations=100, batch_size=32) if quick else None


def fit_run(spec_path: str | Path, out: Path, quick: bool = False,
            device: torch.device | str | None = None) -> SCM:
    """Fit a spec's SCM to its data set's training rows on ``device`` (default: the CPU) and save
    the run (spec, weights, timing) to ``out``; the saved weights are device-free."""
    spec = load_spec(spec_path)
    if quick:
        spec = spec.quick()
    rows = load_rows(spec.dataset, "train")
    scm = build_scm(spec, rows.dataset)
    if device is not None:
        scm = scm.to(device)  # fit moves the rows to the SCM's device
    t0 = time.perf_counter()
    scm.fit(rows.values)
    seconds = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "spec.json", spec.model_dump_json(indent=2))
    scm.save(out / "scm")
    write_json(out / "fit.json", {"seconds": seconds, "n_train": len(rows.draw), "date": now(),
                                  "torch": torch.__version__, "quick": quick, "device": str(scm.device)})
    print(f"fitted {spec.name} on {spec.dataset.n_train} rows in {seconds:.1f} s on {scm.device} -> {out}")
    return scm


def load_run(run: Path) -> tuple[GraphSpec, SCM, Rows]:
    """The spec, the fitted SCM, and the test rows of a run directory."""
    if not (run / "spec.json").is_file():
        raise FileNotFoundError(f"{run} is not a run directory (no spec.json); create one with `causaldiff fit`")
    try:
        raw = json.loads((run / "spec.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GraphError(f"{run / 'spec.json'}: not a JSON spec written by `causaldiff fit`: {e}") from None
    spec = parse_spec(raw, str(run / "spec.json"))
    rows = load_rows(spec.dataset, "test")
    truth_nodes = [n for n, ns in spec.nodes.items() if ns.mechanism == TRUTH]
    rebind = {n: build_mechanism(spec, n, rows.dataset) for n in truth_nodes}
    return spec, load(run / "scm", mechanisms=rebind), rows


def image_node(scm: SCM) -> str | None:
    """The first node whose values are images (rank-3 per row), if any."""
    for node in scm.nodes:
        try:
            shape = scm.mechanisms[node].event_shape({}, 1)
        except Exception:  # a Pyro callable needs its parents to tell its shape: not an image node
            shape = None
        if shape is not None and len(shape) == 3:
            return node
    return None


def _subset(values: dict[str, Tensor], n: int) -> dict[str, Tensor]:
    m = next(iter(values.values())).shape[0]
    return {k: v[:min(n, m)] for k, v in values.items()}


def save_grid(rows: list[Tensor], labels: list[str], out: Path, title: str = "") -> None:
    """A PNG grid: one row of images per entry of ``rows`` (each ``(n, C, H, W)`` in [-1, 1])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    fig, axes = plt.subplots(len(rows), 1, figsize=(max(4, 0.6 * rows[0].shape[0]), 0.9 * len(rows) + 0.5),
                             squeeze=False)
    for ax, imgs, label in zip(axes[:, 0], rows, labels):
        grid = make_grid(imgs.detach().float().cpu().clamp(-1, 1), nrow=imgs.shape[0], padding=1,
                         normalize=True, value_range=(-1, 1))
        ax.imshow(grid.permute(1, 2, 0).numpy())
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def counterfactual_run(run: Path, do: dict[str, Any], n: int = 16, out: str | None = None) -> dict[str, Tensor]:
    spec, scm, rows = load_run(run)
    unknown = [k for k in do if k not in scm.nodes]
    if unknown:
        raise DataError(f"--do names unknown node(s) {unknown}; nodes are {list(scm.nodes)}")
    factual = _subset(rows.values, n)
    cf = scm.counterfactual(factual, do=do, seed=0)
    img = image_node(scm)
    desc = ", ".join(f"{k}={v}" for k, v in do.items())
    if img is not None:
        path = Path(out or run / f"counterfactual_{'_'.join(f'{k}{v}' for k, v in do.items())}.png")
        grids, labels = [factual[img], cf[img]], ["factual", f"do({desc})"]
        if rows.truth is not None:
            grids.append(rows.truth.counterfactual(rows.draw[:factual[img].shape[0]], do)[img])
            labels.append("true cf")
        save_grid(grids, labels, path, title=f"{spec.name}: counterfactuals do({desc})")
        print(f"wrote {path}")
    else:
        path = Path(out or run / "counterfactual.json")
        write_json(path, {k: v.tolist() for k, v in cf.items()})
        print(f"wrote {path}")
    print(cf)
    return cf


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def evaluate_tabular(scm: SCM, rows: Rows, n: int, values: int = 5) -> dict[str, Any]:
    """Counterfactual MSE against the truth, per intervened node, over a quantile grid."""
    from .metrics import counterfactual_error

    truth = rows.truth
    noise = {k: v[:n] for k, v in rows.extra.items()}
    factual = truth.simulate(noise)
    out: dict[str, Any] = {}
    for node in truth.intervention_nodes:
        grid = truth.quantile_grid(node, values, generator=torch.Generator().manual_seed(0))
        desc = truth.descendants(node)
        errs = []
        for v in grid:
            cf = scm.counterfactual(factual, do={node: v.item()})
            true = truth.simulate(noise, do={node: v.item()})
            errs.append(float(counterfactual_error(cf, true, desc).mean()))
        out[f"do({node})"] = {"cf_mse": sum(errs) / len(errs), "descendants": list(desc)}
    return out


def evaluate_images(scm: SCM, rows: Rows, train: Rows, n: int, node: str = "image",
                    label: str | None = None, cycles: tuple[int, ...] = (1, 10),
                    classifier: Any = None) -> dict[str, Any]:
    """Effectiveness, composition, reversibility, minimality (and error vs truth when known)
    of ``do(label = another class)`` counterfactuals on ``n`` test rows."""
    from . import metrics as M

    label = label or next(p for p in scm.parents(node) if not rows.values[p].is_floating_point())
    factual = _subset(rows.values, n)
    k = int(max(int(train.values[label].max()), int(factual[label].max()))) + 1
    target = (factual[label] + 1 + torch.randint(k - 1, factual[label].shape, generator=torch.Generator().manual_seed(0))) % k
    if classifier is None:
        classifier = M.train_classifier(train.values[node], train.values[label], num_classes=k)
    t0 = time.perf_counter()
    cf = scm.counterfactual(factual, do={label: target}, seed=0)
    cf_seconds = time.perf_counter() - t0

    def cf_fn(rows_: dict[str, Tensor], do: dict[str, Any]) -> dict[str, Tensor]:
        return scm.counterfactual(rows_, do=do, seed=0)

    result: dict[str, Any] = {
        "n": factual[node].shape[0], "intervened": label,
        "effectiveness": float(M.effectiveness(classifier, cf[node], target)),
        "factual_accuracy": float(M.effectiveness(classifier, factual[node], factual[label])),
        "minimality_l1": float(M.minimality(factual[node], cf[node]).mean()),
        "reversibility_l1": float(M.reversibility(cf_fn, factual, {label: target}, image_node=node).mean()),
        "seconds_per_counterfactual": cf_seconds / factual[node].shape[0],
    }
    comp = M.composition(cf_fn, factual, nodes=[label], cycles=cycles, image_node=node)
    result.update({f"composition_l1_{c}": float(v.mean()) for c, v in comp.items()})
    if rows.truth is not None and hasattr(rows.truth, "true_counterfactual"):
        true = rows.truth.true_counterfactual(rows.extra[:factual[node].shape[0]], {label: target}).image
        result["true_cf_mse"] = float(M.mse(cf[node], true).mean())
        result["true_cf_psnr"] = float(M.psnr(cf[node], true).clamp(max=100).mean())
        result["unchanged_factual_mse"] = float(M.mse(factual[node], true).mean())
    return result


def _diffusion_nodes(scm: SCM) -> list[str]:
    return [n for n, m in scm.mechanisms.items() if getattr(m, "name", None) == "diffusion"]


def _effectiveness_setup(run: Path, spec: GraphSpec, scm: SCM, rows: Rows, img: str) -> tuple[Rows, str, Any]:
    """Training rows (at most 5000), the image's categorical parent, and an independent classifier
    of that parent trained on them (shorter for ``--quick`` runs)."""
    from . import metrics as M

    train = load_rows(spec.dataset.model_copy(update={"n_train": min(spec.dataset.n_train, 5000)}), "train")
    label = next(p for p in scm.parents(img) if not rows.values[p].is_floating_point())
    k = int(train.values[label].max()) + 1
    classifier = M.train_classifier(train.values[img], train.values[label], num_classes=k,
                                    config=_quick_classifier(run))
    return train, label, classifier


def evaluate_run(run: Path, n: int = 200) -> dict[str, Any]:
    spec, scm, rows = load_run(run)
    img = image_node(scm)
    if img is None:
        metrics = evaluate_tabular(scm, rows, n)
    else:
        train, label, classifier = _effectiveness_setup(run, spec, scm, rows, img)
        metrics = evaluate_images(scm, rows, train, n, node=img, label=label, classifier=classifier)
    metrics.update({"run": str(run), "date": _now(), "device": str(scm.device)})
    (run / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    return metrics


def sweep_run(run: Path, scales: list[float], n: int = 100) -> dict[str, Any]:
    """Image metrics against the guidance scale of every diffusion node, plotted like Diff-SCM's figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec, scm, rows = load_run(run)
    img = image_node(scm)
    nodes = _diffusion_nodes(scm)
    if img is None or not nodes:
        raise GraphError("sweep needs an image node bound to a diffusion mechanism")
    train, label, classifier = _effectiveness_setup(run, spec, scm, rows, img)
    results = []
    for s in progress(scales, desc="scales"):
        for node in nodes:
            m = scm.mechanisms[node]
            m.config = m.config.model_copy(update={"guidance_scale": s})
        r = evaluate_images(scm, rows, train, n, node=img, label=label, cycles=(1,), classifier=classifier)
        r["scale"] = s
        results.append(r)
    keys = [k_ for k_ in ("effectiveness", "minimality_l1", "composition_l1_1", "true_cf_mse") if k_ in results[0]]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3))
    for ax, key in zip(axes, keys):
        ax.plot(scales, [r[key] for r in results], "o-")
        ax.set_xlabel("guidance scale s")
        ax.set_title(key, fontsize=9)
    fig.tight_layout()
    fig.savefig(run / "sweep.png", dpi=120)
    plt.close(fig)
    (run / "sweep.json").write_text(json.dumps({"results": results, "date": _now()}, indent=2))
    for r in results:
        print(f"s={r['scale']:<5} " + "  ".join(f"{k_}={r[k_]:.4f}" for k_ in keys))
    print(f"wrote {run / 'sweep.png'}")
    return {"results": results}
