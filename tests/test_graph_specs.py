"""Every ``graphs/*.toml`` validates and builds an SCM; the image specs run end to end through
the CLI in their ``--quick`` setting (fit, evaluate, counterfactual, sweep)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import networkx as nx
import pytest

from causaldiff.build import build_dataset, build_scm
from causaldiff.cli import main
from causaldiff.datasets.mnist import candidate_dirs
from causaldiff.mechanisms.diffusion import DiffusionMechanism
from causaldiff.spec import load_spec

# graphs/morphomnist*.toml draw from the benchmark's data set (benchmarks/morphomnist/): an install
# resolves it through its entry point (tests/test_registry_plugins.py), this import registers it
# whatever the installed metadata (an editable install made before the entry point existed)
import benchmarks.morphomnist.dataset  # noqa: E402,F401

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"
SPECS = sorted(GRAPHS.glob("*.toml"))
PNG = b"\x89PNG\r\n\x1a\n"


def _mnist_available() -> bool:
    return any((d / "t10k-images-idx3-ubyte.gz").is_file() or (d / "t10k-images-idx3-ubyte").is_file()
               for d in candidate_dirs())


def test_the_image_specs_exist():
    assert {"mnist.toml", "shapes.toml"} <= {p.name for p in SPECS}


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_spec_validates_and_builds(path):
    spec = load_spec(path)
    scm = build_scm(spec, build_dataset(spec.dataset))
    assert set(scm.nodes) == set(spec.nodes)
    assert nx.utils.edges_equal(scm.graph.edges, spec.graph().edges)
    for node, ns in spec.nodes.items():
        assert scm.parents(node) == tuple(sorted(ns.parents))
        if ns.mechanism == "diffusion":  # options reach the mechanism's validated config
            m = scm.mechanisms[node]
            assert isinstance(m, DiffusionMechanism)
            for key, value in ns.options.items():
                got = getattr(m.config, key)
                got = got.model_dump() if hasattr(got, "model_dump") else got
                if isinstance(value, dict):
                    assert {k: got[k] for k in value} == {k: (tuple(v) if isinstance(v, list) else v)
                                                           for k, v in value.items()}, (node, key)
                else:
                    assert got == value, (node, key)


def test_mnist_spec_is_diff_scm():
    spec = load_spec(GRAPHS / "mnist.toml")
    assert spec.dataset.kind == "mnist" and set(spec.graph().edges) == {("digit", "image")}
    cfg = build_scm(spec).mechanisms["image"].config
    assert cfg.guidance == "anticausal" and not cfg.guide_abduction
    assert cfg.net.kind == "unet" and cfg.net.base_channels == 64 and cfg.net.channel_mult == (1, 2, 4)
    assert cfg.schedule.kind == "cosine" and cfg.schedule.num_train_timesteps == 1000
    assert cfg.sampler.num_inference_steps == 100 and cfg.abduction_steps == 75


def test_quick_shrinks_image_networks():
    quick = load_spec(GRAPHS / "mnist.toml").quick()
    opts = quick.nodes["image"].options
    assert opts["net"]["base_channels"] <= 16 and opts["predictor"]["base_channels"] <= 16
    assert opts["train"]["steps"] == 30 and opts["train"]["batch_size"] <= 32
    assert quick.dataset.n_train <= 300


def _cli_round_trip(spec: Path, run: Path, do: str, capsys) -> dict:
    assert main(["fit", str(spec), "--out", str(run), "--quick"]) == 0
    assert json.loads((run / "fit.json").read_text())["quick"] is True
    capsys.readouterr()
    assert main(["evaluate", str(run), "--n", "6"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["smoke_test"] is True and "SMOKE TEST" in printed  # a --quick fit says what it is
    untrusted = metrics["factual_accuracy"] < 0.9  # the classifier misreads real images: flagged
    assert metrics["untrusted"] == (["effectiveness"] if untrusted else [])
    assert ("cannot be trusted" in printed) == untrusted == any("cannot be trusted" in w for w in metrics["warnings"])
    for key in ("effectiveness", "minimality_l1", "reversibility_l1", "composition_l1_1",
                "composition_l1_10"):
        assert math.isfinite(metrics[key]) and metrics[key] >= 0, key
    assert 0 <= metrics["effectiveness"] <= 1 and metrics["n"] == 6
    out = run / "cf.png"
    assert main(["counterfactual", str(run), "--do", do, "--n", "4", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG
    assert main(["sweep", str(run), "--scales", "0,1", "--n", "4"]) == 0
    sweep = json.loads((run / "sweep.json").read_text())
    assert [r["scale"] for r in sweep["results"]] == [0.0, 1.0]
    assert sweep["smoke_test"] is True and "SMOKE TEST" in capsys.readouterr().out
    assert sweep["untrusted"] == (["effectiveness"] if sweep["results"][0]["factual_accuracy"] < 0.9 else [])
    assert (run / "sweep.png").read_bytes()[:8] == PNG
    capsys.readouterr()
    return metrics


def test_shapes_spec_through_the_cli(tmp_path, capsys):
    metrics = _cli_round_trip(GRAPHS / "shapes.toml", tmp_path / "shapes", "shape=2", capsys)
    # the dataset renders the true counterfactual, so the error against it is reported
    assert math.isfinite(metrics["true_cf_mse"]) and metrics["unchanged_factual_mse"] > 0


@pytest.mark.skipif(not _mnist_available(), reason="MNIST files not found: set CAUSALDIFF_MNIST_DIR to their folder")
def test_mnist_spec_through_the_cli(tmp_path, capsys):
    metrics = _cli_round_trip(GRAPHS / "mnist.toml", tmp_path / "mnist", "digit=5", capsys)
    assert metrics["intervened"] == "digit"
    assert metrics["factual_accuracy"] > 0.3  # a 100-step classifier already beats chance (0.1)


def test_data_option_reaches_the_mnist_loader_before_any_training(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["fit", str(GRAPHS / "mnist.toml"), "--setting", "cpu", "--data", str(tmp_path), "--out",
                 str(run)]) == 2
    err = capsys.readouterr().err
    assert "MNIST train files not found" in err and str(tmp_path) in err and not run.exists()
    assert main(["fit", str(GRAPHS / "mnist.toml"), "--data", str(tmp_path / "nowhere"), "--out", str(run)]) == 2
    assert "no such folder" in capsys.readouterr().err and not run.exists()
