"""Runs: a fitted spec saved in a directory, and the CLI's queries on it.

A run directory holds ``spec.json`` (the validated :class:`~causaldiff.spec.GraphSpec`) and
``scm/`` (the saved SCM). Nodes bound to the dataset's ``truth`` are code and are rebound from
the spec when the run is loaded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .build import Rows, build_mechanism, build_scm, load_rows
from .distributed import fit_per_node, is_main
from .errors import DataError, GraphError, SerializationError, SpecError
from .evaluation import fitted, plotting
from .evaluation.axioms import diffusion_nodes, with_inference
from .evaluation.plotting import save_grid as save_grid
from .evaluation.report import now, write_json, write_text
from .progress import progress
from .registry import MECHANISMS
from .rng import RNG_SCHEME
from .scm import SCM, load
from .spec import TRUTH, GraphSpec, load_spec, parse_spec, train_fields
from .storage import read_bytes
from .training import TrainConfig
from .validation import check_output_path


def smoke_note(spec: GraphSpec) -> str:
    """Printed and recorded by every command on a run fitted with ``--quick`` / ``--setting quick``."""
    real = (f"fit with --setting {' or '.join(spec.settings)} (declared by the spec)" if spec.settings
            else "fit without --quick")
    return (f"SMOKE TEST: this run was fitted with --quick (tiny networks, tens of training steps); its metrics "
            f"check the pipeline, not the model; {real} for a model of {spec.name}")


#: what each metric printed by ``causaldiff evaluate`` and ``sweep`` means (printed under them)
METRIC_LEGEND = {
    "cf_mse": "mean squared error of the counterfactual descendants against the exact ones, over 5 values "
              "of the intervened node (lower is better; 'nothing changes' scores ~1)",
    "effectiveness": "share of counterfactual images an independent classifier (trained on factual images) "
                     "assigns the intervened class",
    "factual_accuracy": "that classifier's accuracy on the real test images (below 0.9: effectiveness untrusted)",
    "minimality_l1": "mean |counterfactual - factual| per pixel (small: only what the intervention implies changed)",
    "reversibility_l1": "mean |x - x''| per pixel after intervening and intervening back (0: reversible)",
    "composition_l1_1": "mean |x - x'| per pixel after 1 (or 10) null interventions (0: the model returns the factual)",
    "true_cf_mse": "mean squared pixel error against the exact counterfactual image (lower is better)",
    "unchanged_factual_mse": "the same error of the factual image left unchanged (true_cf_mse far below it: the "
                             "model moved the image the right way)",
    "true_cf_psnr": "peak signal-to-noise ratio against the exact counterfactual (dB, higher is better)",
}


def print_legend(keys: Any) -> None:
    """The meaning of each of ``keys`` that :data:`METRIC_LEGEND` explains."""
    rows = [(k, text) for k, text in METRIC_LEGEND.items() if k in set(keys)]
    if rows:
        width = max(len(k) for k, _ in rows)
        print("\n".join(["legend:"] + [f"  {k.ljust(width)}  {text}" for k, text in rows]))


def _read_json(path: Path) -> Any:
    """A JSON file of a run; any problem is a :class:`SerializationError` naming the file."""
    try:
        return json.loads(read_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise SerializationError(f"{path}: not a JSON file written by `causaldiff fit` ({e})") from None


def _fit_record(run: Path) -> dict[str, Any]:
    fit = run / "fit.json"
    record = _read_json(fit) if fit.is_file() else {}
    if not isinstance(record, dict):
        raise SerializationError(f"{fit}: expected a JSON object, got {type(record).__name__}")
    return record


def _quick_classifier(run: Path) -> Any:
    """A short effectiveness-classifier training for runs fitted with ``--quick`` (else None)."""
    from .metrics import ClassifierConfig

    return ClassifierConfig(steps=100, batch_size=32) if _fit_record(run).get("quick", False) else None


def with_setting(spec: GraphSpec, setting: str) -> GraphSpec:
    """``spec`` in a named setting: one the spec declares (``[settings.NAME]``, overlaid on its data
    set and nodes: :meth:`GraphSpec.in_setting`), else ``quick`` (:meth:`GraphSpec.quick`), which every
    spec has."""
    if setting in spec.settings:  # (each setting was validated with the spec)
        return spec.in_setting(setting)
    if setting == "quick":
        return spec.quick()
    declared = ", ".join(["quick", *spec.settings])
    raise GraphError(f"--setting {setting}: not declared by this spec (declared: {declared}); use --quick or "
                     f"--steps N, or declare [settings.{setting}] in the spec")


def _with_steps(options: dict[str, Any], config: Any, steps: int) -> dict[str, Any]:
    """``options`` with ``steps`` training steps for every training of the mechanism: a ``steps``
    field, and the ``steps`` of each :class:`TrainConfig` field."""
    out = dict(options)
    if "steps" in type(config).model_fields:
        out["steps"] = steps
    for field, train in train_fields(config).items():
        out[field] = {**train.model_dump(mode="json"), "steps": steps}
    return out


def with_overrides(spec: GraphSpec, data: str | Path | None = None, steps: int | None = None) -> GraphSpec:
    """``spec`` reading its data set's files from ``data`` and training every network ``steps`` steps."""
    raw = spec.model_dump(mode="json")
    if data is not None:
        if "root" not in type(spec.dataset.config()).model_fields:
            raise DataError(f"--data: the {spec.dataset.kind!r} data set is generated, it reads no files")
        if not Path(data).is_dir():
            raise DataError(f"--data {data}: no such folder")
        raw["dataset"]["options"]["root"] = str(Path(data).resolve())
    if steps is not None:
        if steps < 1:
            raise GraphError(f"--steps must be positive, got {steps}")
        for node, ns in raw["nodes"].items():
            if ns["mechanism"] != TRUTH:
                cls = MECHANISMS.get(ns["mechanism"])
                ns["options"] = _with_steps(ns["options"], cls.Config.model_validate(ns["options"]), steps)
    return parse_spec(raw, spec.name)


def fit_run(spec_path: str | Path, out: Path, quick: bool = False, device: torch.device | str | None = None,
            setting: str | None = None, data: str | Path | None = None, steps: int | None = None,
            per_node: bool = False) -> SCM:
    """Fit a spec's SCM (in ``setting``, ``quick`` meaning ``setting="quick"``; see
    :func:`with_setting`, :func:`with_overrides`) to its data set's training rows on ``device``
    (default: the CPU) and save the run (spec, weights, timing) to ``out``; the saved weights are
    device-free. Under torchrun every network trains data-parallel over the ranks, or with
    ``per_node`` each node on one rank (:func:`causaldiff.distributed.fit_per_node`); rank 0 writes."""
    if quick and setting not in (None, "quick"):
        raise GraphError(f"--quick is --setting quick; it cannot be combined with --setting {setting}")
    check_output_path(out, "--out", directory=True)
    setting = "quick" if quick else setting
    spec = load_spec(spec_path)
    if setting is not None:
        spec = with_setting(spec, setting)
    spec = with_overrides(spec, data=data, steps=steps)
    rows = load_rows(spec.dataset, "train")
    scm = build_scm(spec, rows.dataset, run=out)
    if device is not None:
        scm = scm.to(device)  # fit moves the rows to the SCM's device
    t0 = time.perf_counter()
    scm = fit_per_node(scm, rows.values) if per_node else scm.fit(rows.values)
    seconds = time.perf_counter() - t0
    if not is_main():
        return scm
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "spec.json", spec.model_dump_json(indent=2))
    scm.save(out / "scm")
    write_json(out / "fit.json", {"seconds": seconds, "n_train": len(rows.draw), "date": now(),
                                  "torch": torch.__version__, "rng_scheme": RNG_SCHEME, "quick": setting == "quick",
                                  "setting": setting,
                                  "steps": steps, "device": str(scm.device), "processes": _world_size(),
                                  "per_node": per_node})
    print(f"fitted {spec.name} on {spec.dataset.n_train} rows in {seconds:.1f} s on {scm.device} -> {out}")
    if setting == "quick":
        print(smoke_note(spec))
    return scm


def _world_size() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def load_run(run: Path) -> tuple[GraphSpec, SCM, Rows]:
    """The spec, the fitted SCM, and the test rows of a run directory."""
    if not (run / "spec.json").is_file():
        raise SerializationError(f"{run} is not a run directory (no spec.json); create one with `causaldiff fit`")
    try:
        spec = parse_spec(_read_json(run / "spec.json"), str(run / "spec.json"))
    except GraphError as e:  # the message names the file and the field
        raise SerializationError(str(e)) from None
    rows = load_rows(spec.dataset, "test")
    truth_nodes = [n for n, ns in spec.nodes.items() if ns.mechanism == TRUTH]
    rebind = {n: build_mechanism(spec, n, rows.dataset, run=run) for n in truth_nodes}
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


def describe_do(do: dict[str, Any], dataset: Any) -> str:
    """``do`` as ``shape=2 (cross), size=0.6``: each categorical code with what the data set says it is."""
    labels = getattr(dataset, "value_labels", {})

    def name(k: str, v: Any) -> str:
        known = labels.get(k, ())
        return f" ({known[v]})" if isinstance(v, int) and 0 <= v < len(known) else ""
    return ", ".join(f"{k}={v}{name(k, v)}" for k, v in do.items())


def counterfactual_run(run: Path, do: dict[str, Any], n: int = 16, out: str | None = None,
                       batch_size: int | None = None) -> dict[str, Tensor]:
    """Counterfactuals of the first ``n`` test rows under ``do``: a grid of the factual, the
    counterfactual (and the true) images for an image node, else a JSON of the factual and the
    counterfactual rows."""
    spec, scm, rows = load_run(run)
    unknown = [k for k in do if k not in scm.nodes]
    if unknown:
        raise DataError(f"--do names unknown node(s) {unknown}; nodes are {list(scm.nodes)}")
    factual = _subset(rows.values, n)
    cf = scm.counterfactual(factual, do=do, seed=0, batch_size=batch_size)
    img = image_node(scm)
    if not is_main():  # the other ranks of a torchrun computed their shards; rank 0 writes
        return cf
    desc = describe_do(do, rows.dataset)
    if img is not None:
        path = Path(out or run / f"counterfactual_{'_'.join(f'{k}{v}' for k, v in do.items())}.png")
        grids, labels = [factual[img], cf[img]], ["factual", f"do({desc})"]
        if rows.truth is not None:
            grids.append(rows.truth.counterfactual(rows.draw[:factual[img].shape[0]], do)[img])
            labels.append("true cf")
        save_grid(grids, labels, path, title=f"{spec.name}: counterfactuals do({desc})")
    else:
        path = Path(out or run / "counterfactual.json")
        write_json(path, {"do": do, "factual": {k: v.tolist() for k, v in factual.items()},
                          "counterfactual": {k: v.tolist() for k, v in cf.items()}})
    print(cf)
    print(f"wrote {path} (do({desc}) on {next(iter(factual.values())).shape[0]} test rows)")
    return cf


def evaluate_tabular(scm: SCM, rows: Rows, n: int, values: int = 5) -> dict[str, Any]:
    """Counterfactual MSE against the truth, per intervened node, over a quantile grid."""
    return fitted.tabular_counterfactual_mse(scm, rows.truth, rows.draw[:n], values)


def evaluate_images(scm: SCM, rows: Rows, train: Rows, n: int, node: str = "image",
                    label: str | None = None, cycles: tuple[int, ...] = (1, 10),
                    classifier: Any = None) -> dict[str, Any]:
    """Effectiveness, composition, reversibility, minimality (and error vs truth when known)
    of ``do(label = another class)`` counterfactuals on ``n`` test rows."""
    return fitted.image_run_metrics(scm, rows.values, train.values, n, node=node, label=label, cycles=cycles,
                                    classifier=classifier, truth=rows.truth, draw=rows.draw)


def _effectiveness_setup(run: Path, spec: GraphSpec, scm: SCM, rows: Rows, img: str) -> tuple[Rows, str, Any]:
    """Training rows (at most 5000), the image's categorical parent, and an independent classifier
    of that parent trained on them (shorter for ``--quick`` runs)."""
    train = load_rows(spec.dataset, "train", n=min(spec.dataset.n_train, 5000))
    label = fitted.image_label(scm, img, rows.values)
    return train, label, fitted.effectiveness_classifier(train.values, img, label, config=_quick_classifier(run))


def _notes(run: Path, spec: GraphSpec, metrics: dict[str, Any]) -> list[str]:
    """The warnings a run's metrics carry: a smoke-test fit, an untrusted classifier."""
    notes = [smoke_note(spec)] if _fit_record(run).get("quick", False) else []
    return notes + ([metrics["warning"]] if metrics.get("warning") else [])


def evaluate_run(run: Path, n: int = 200) -> dict[str, Any]:
    """Metrics of a fitted run on its test rows, written to ``<run>/metrics.json`` (with
    ``smoke_test`` and ``warnings``)."""
    spec, scm, rows = load_run(run)
    img = image_node(scm)
    if img is None:
        metrics = evaluate_tabular(scm, rows, n)
    else:
        train, label, classifier = _effectiveness_setup(run, spec, scm, rows, img)
        metrics = evaluate_images(scm, rows, train, n, node=img, label=label, classifier=classifier)
    notes = _notes(run, spec, metrics)
    metrics.update({"run": str(run), "date": now(), "device": str(scm.device),
                    "smoke_test": _fit_record(run).get("quick", False), "warnings": notes})
    if not is_main():
        return metrics
    write_json(run / "metrics.json", metrics)
    print(json.dumps(metrics, indent=2))
    print_legend({k for v in metrics.values() if isinstance(v, dict) for k in v} | set(metrics))
    for note in notes:
        print(f"WARNING: {note}")
    print(f"wrote {run / 'metrics.json'}")
    return metrics


def sweep_run(run: Path, scales: list[float], n: int = 100) -> dict[str, Any]:
    """Image metrics against the scale of the image's diffusion node, plotted like Diff-SCM's figure:
    ``guidance_scale`` (s) of an anti-causal node, ``anchor_scale`` (w) of a conditional one."""
    spec, scm, rows = load_run(run)
    img = image_node(scm)
    if img is None or img not in diffusion_nodes(scm):
        raise GraphError("sweep needs an image node bound to a diffusion mechanism")
    setting = "guidance_scale" if scm.mechanisms[img].config.guidance == "anticausal" else "anchor_scale"
    for s in scales:  # refused before any work (anchor_scale is at most 100)
        try:
            scm.mechanisms[img].with_inference(**{setting: s})
        except ValueError as e:
            raise GraphError(f"--scales {s:g}: not a valid {setting} of node {img!r}: {e}") from None
    train, label, classifier = _effectiveness_setup(run, spec, scm, rows, img)
    common = dict(node=img, label=label, classifier=classifier, truth=rows.truth, draw=rows.draw)
    if setting == "guidance_scale":  # one abduction, generated from at every scale
        results = fitted.image_run_sweep(scm, rows.values, train.values, n, scales, nodes=[img], **common)
    else:  # anchored guidance needs the factual parents: a whole counterfactual per scale
        results = [{**fitted.image_run_metrics(with_inference(scm, [img], anchor_scale=s), rows.values, train.values,
                                               n, cycles=(1,), **common), "scale": s}
                   for s in progress(scales, desc="anchor scales")]
    keys = [k for k in ("effectiveness", "minimality_l1", "composition_l1_1", "true_cf_mse") if k in results[0]]
    if not is_main():
        return {"results": results}
    plotting.plot_sweep({None: {r["scale"]: r for r in results}}, run / "sweep.png", keys=keys,
                        title=f"{spec.name}: metrics against the {setting} of {img}")
    notes = _notes(run, spec, results[0])  # one classifier and one set of factual images for every scale
    write_json(run / "sweep.json", {"setting": setting, "node": img, "results": results, "date": now(),
                                    "untrusted": results[0]["untrusted"],
                                    "smoke_test": _fit_record(run).get("quick", False), "warnings": notes})
    print(f"{setting} of {img} (" + ("s: the anti-causal gradient's weight" if setting == "guidance_scale" else
                                     "w: eps(pa) + w [eps(pa*) - eps(pa)], 1 = plain conditional generation") + ")")
    for r in results:
        print(f"{r['scale']:<5} " + "  ".join(f"{k}={r[k]:.4f}" + ("(untrusted)" if k in r["untrusted"] else "")
                                        for k in keys))
    print_legend(keys)
    for note in notes:
        print(f"WARNING: {note}")
    print(f"wrote {run / 'sweep.png'} and {run / 'sweep.json'}")
    return {"results": results}
