"""The command line: every command in small settings; bad arguments exit 2 with one line."""

from __future__ import annotations

import json

import pytest
import torch

from causaldiff.cli import ENV_HINT, build_parser, main


def test_demo_tabular_quick(tmp_path, capsys):
    assert main(["demo", "--kind", "tabular", "--quick", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    out = capsys.readouterr().out
    assert "do(x1 = v)" in out
    # the fitted model beats "nothing changes" by a wide margin on every intervention value
    for r in metrics["results"]:
        assert r["mse"]["x3"] < 0.25 * r["unchanged_mse_x3"]


def test_unknown_command_exits_2(capsys):
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err


def test_bad_option_value_exits_2(capsys):
    assert main(["demo", "--seed", "abc"]) == 2
    assert "invalid int value" in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


GRAPHS = __import__("pathlib").Path(__file__).resolve().parents[1] / "graphs"


def test_graph_draws_png(tmp_path, capsys):
    out = tmp_path / "dag.png"
    assert main(["graph", str(GRAPHS / "tabular_chain_nonlinear_anm.toml"), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_evaluate_counterfactual_tabular(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["fit", str(GRAPHS / "tabular_chain_nonlinear_anm.toml"), "--out", str(run), "--quick",
                 "--device", "cpu"]) == 0
    assert "SMOKE TEST" in capsys.readouterr().out  # a --quick fit says its metrics are a smoke test
    assert (run / "scm" / "weights.safetensors").is_file() and (run / "spec.json").is_file()
    assert json.loads((run / "fit.json").read_text())["device"] == "cpu"
    # saved files readable by the group and others
    assert {p.name: p.stat().st_mode & 0o777 for p in (run / "scm").iterdir()} == {
        "weights.safetensors": 0o644, "scm.json": 0o644}
    assert (run / "scm").stat().st_mode & 0o777 == 0o755
    assert main(["evaluate", str(run), "--n", "50"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: SMOKE TEST" in out and "MNIST" not in out and "fit without --quick" in out
    assert "legend:\n  cf_mse  mean squared error" in out and f"wrote {run / 'metrics.json'}" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["smoke_test"] is True and metrics["warnings"]
    assert set(metrics) >= {"do(x1)", "do(x2)"}
    assert metrics["do(x1)"]["cf_mse"] < 0.2  # vs ~1 for "nothing changes"
    assert main(["counterfactual", str(run), "--do", "x1=1.0", "--n", "4"]) == 0
    assert f"wrote {run / 'counterfactual.json'} (do(x1=1.0) on 4 test rows)" in capsys.readouterr().out
    cf = json.loads((run / "counterfactual.json").read_text())
    assert cf["do"] == {"x1": 1.0} and cf["counterfactual"]["x1"] == [1.0] * 4
    assert len(cf["factual"]["x1"]) == 4 and cf["factual"]["x1"] != cf["counterfactual"]["x1"]


def test_bad_arguments_one_line_exit_2(tmp_path, capsys):
    assert main(["graph", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no spec file" in err[0]
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[dataset]\nkind = "tabular"\nname = "chain-nonlinear"\n'
                   '[nodes.a]\nmechanism = "additive_noise"\nparents = ["zz"]\n')
    assert main(["graph", str(bad)]) == 2
    assert "unknown parent" in capsys.readouterr().err
    assert main(["counterfactual", str(tmp_path), "--do", "x1"]) == 2
    assert "NODE=VALUE" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path), "--scales", "a,b"]) == 2
    assert "comma-separated" in capsys.readouterr().err


@pytest.mark.parametrize("device, message", [
    ("gpu0", "is not a device"), ("meta", "is not supported"),
    pytest.param("cuda", "CUDA is not available", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_fit_refuses_a_bad_device_before_any_work(tmp_path, capsys, device, message):
    run = tmp_path / "run"
    assert main(["fit", str(GRAPHS / "tabular_chain_nonlinear_anm.toml"), "--out", str(run), "--quick",
                 "--device", device]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not run.exists()


def test_every_option_has_help():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in subparsers.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help and action.help.strip(), f"causaldiff {name} {action.dest}: no help"


def test_mnist_folder_hint_names_the_loader_variable():
    from causaldiff.datasets.mnist import ENV_VAR

    assert ENV_HINT == ENV_VAR


def test_fit_steps_setting_and_data_of_a_tabular_spec(tmp_path, capsys):
    """--steps N reaches every trained mechanism; --setting cpu/gpu and --data are refused for a
    generated data set, before any work."""
    run = tmp_path / "run"
    assert main(["fit", str(GRAPHS / "tabular_chain_nonlinear_anm.toml"), "--out", str(run), "--quick",
                 "--steps", "7"]) == 0
    spec = json.loads((run / "spec.json").read_text())
    trained = [ns for ns in spec["nodes"].values() if ns["mechanism"] == "additive_noise"]
    assert trained and all(ns["options"]["steps"] == 7 for ns in trained)
    assert json.loads((run / "fit.json").read_text())["steps"] == 7
    capsys.readouterr()
    other = tmp_path / "other"
    for args, message in ((["--setting", "cpu"], "not declared by this spec"),
                          (["--data", str(tmp_path)], "is generated"), (["--steps", "0"], "must be positive"),
                          (["--quick", "--setting", "gpu"], "cannot be combined")):
        assert main(["fit", str(GRAPHS / "tabular_chain_nonlinear_anm.toml"), "--out", str(other), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (args, err)
        assert not other.exists()


def test_untrusted_classifier_metrics_are_flagged():
    from causaldiff.evaluation.fitted import flag_untrusted

    bad = flag_untrusted({"effectiveness": 0.8, "factual_accuracy": 0.34, "minimality_l1": 0.1})
    assert bad["untrusted"] == ["effectiveness"] and "0.34" in bad["warning"]
    good = flag_untrusted({"effectiveness": 0.8, "factual_accuracy": 0.95})
    assert good["untrusted"] == [] and "warning" not in good
    assert flag_untrusted({"effectiveness": 0.8, "factual_accuracy": 0.9})["untrusted"] == []


def test_spec_refuses_unknown_fields(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nexec = "import os"\n[dataset]\nkind = "tabular"\nname = "chain-nonlinear"\n'
                   '[nodes.a]\nmechanism = "additive_noise"\n')
    assert main(["graph", str(bad)]) == 2
    assert "exec" in capsys.readouterr().err


def test_demos_write_to_their_own_folders_with_every_query_and_a_legend(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--kind", "tabular", "--quick"]) == 0
    assert "factual MSE x3   the same error" in capsys.readouterr().out  # the table's legend
    assert main(["demo", "--quick"]) == 0
    out = capsys.readouterr().out
    demo = tmp_path / "outputs" / "demo"
    assert json.loads((demo / "tabular" / "metrics.json").read_text())["demo"] == "tabular"  # not overwritten
    metrics = json.loads((demo / "image" / "metrics.json").read_text())
    assert metrics["demo"] == "image"
    queries = {"do(shape = another)", "do(size = 0.6)", "do(shape = another, intensity = 0.4)",
               "do(shape = itself) [null]"}
    assert set(metrics["queries"]) == queries
    # the picture: the factual row, then each query's counterfactuals and the true ones
    assert metrics["figure_rows"] == ["factual"] + [r for q in metrics["queries"]
                                                    for r in (q.replace("do(", "cf do("), "true cf")]
    assert (demo / "image" / "counterfactuals.png").read_bytes()[:4] == b"\x89PNG"
    for column in ("effectiveness", "(on true cf)", "cf MSE vs truth", "unchanged MSE", "PSNR (dB)", "orientation",
                   "(unrotated)"):
        assert sum(line.startswith(column) for line in out.splitlines()) == 1, column  # explained once
    assert "do(size) and the null query" in out


def test_demo_image_quick(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["demo"] == "image"
    assert set(metrics["queries"]) == {"do(shape = another)", "do(size = 0.6)",
                                       "do(shape = another, intensity = 0.4)", "do(shape = itself) [null]"}
    for q in metrics["queries"].values():
        assert 0.0 <= q["effectiveness_shape"] <= 1.0 and q["true_cf_mse"] >= 0.0
        assert 0.0 <= q["effectiveness_shape_true_cf"] <= 1.0
    assert (tmp_path / "counterfactuals.png").read_bytes()[:4] == b"\x89PNG"
    assert "effectiveness" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_image_meets_its_acceptance(tmp_path):
    """The full `causaldiff demo` (about 4 minutes on 2 cores): effectiveness >= 0.9 on the shape and
    do(shape) error against the true counterfactual at most half the unchanged image's."""
    assert main(["demo", "--out", str(tmp_path)]) == 0
    acc = json.loads((tmp_path / "metrics.json").read_text())["acceptance"]
    assert acc["effectiveness_shape"] >= 0.9
    assert acc["cf_error_ratio_vs_unchanged"] <= 0.5


@pytest.mark.slow
def test_fit_evaluate_sweep_images(tmp_path, capsys):
    """An image run (the shapes spec, --quick, ~30 s): evaluate scores against the true
    counterfactuals; the sweep writes one row per scale and its plot."""
    run = tmp_path / "run"
    assert main(["fit", str(GRAPHS / "shapes.toml"), "--out", str(run), "--quick"]) == 0
    assert main(["evaluate", str(run), "--n", "8"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert m["n"] == 8 and m["intervened"] == "shape" and 0 <= m["effectiveness"] <= 1
    for key in ("minimality_l1", "reversibility_l1", "composition_l1_1", "composition_l1_10", "true_cf_mse",
                "unchanged_factual_mse"):
        assert m[key] >= 0, key
    out = capsys.readouterr().out
    assert "MNIST" not in out and "legend:" in out and "effectiveness" in out
    assert main(["counterfactual", str(run), "--do", "shape=2", "--n", "4"]) == 0
    assert "do(shape=2 (cross)) on 4 test rows" in capsys.readouterr().out
    # a conditional image node: the sweep varies its anchor_scale w (the guidance scale cannot act on it)
    assert main(["sweep", str(run), "--scales", "1,0,3", "--n", "8"]) == 0
    sweep = json.loads((run / "sweep.json").read_text())
    rows = sweep["results"]
    assert sweep["setting"] == "anchor_scale" and [r["scale"] for r in rows] == [1.0, 0.0, 3.0]
    assert rows[0]["minimality_l1"] == pytest.approx(m["minimality_l1"])  # w = 1: the counterfactuals of evaluate
    # w = 0 generates under the factual parents only: the counterfactual is the null intervention's
    assert rows[1]["minimality_l1"] == pytest.approx(rows[1]["composition_l1_1"], rel=1e-5)
    assert rows[2]["minimality_l1"] != pytest.approx(rows[0]["minimality_l1"], rel=1e-3)  # w acts
    assert (run / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["sweep", str(run), "--scales", "1,200", "--n", "8"]) == 2
    assert "not a valid anchor_scale of node 'image'" in capsys.readouterr().err


def test_threads_option_sets_torch_threads_and_refuses_zero(tmp_path, capsys):
    before = torch.get_num_threads()
    spec = str(GRAPHS / "tabular_chain_nonlinear_anm.toml")
    try:
        assert main(["graph", spec, "--out", str(tmp_path / "g.png"), "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert main(["graph", spec, "--out", str(tmp_path / "h.png"), "--threads", "0"]) == 2
    assert "--threads must be positive, got 0" in capsys.readouterr().err and not (tmp_path / "h.png").exists()
