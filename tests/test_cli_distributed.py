"""``torchrun --nproc-per-node 2 -m causaldiff ...`` (2 gloo processes on the CPU): rank 0 alone
prints and writes; a per-node fit saves the weights one process fits; a sharded counterfactual
writes what one process writes; an error is reported once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from causaldiff.cli import main
from causaldiff.testing import run_torchrun

ROOT = Path(__file__).resolve().parents[1]
SPEC = str(ROOT / "graphs" / "tabular_chain_nonlinear_anm.toml")
ENV = {"PYTHONPATH": str(ROOT), "CAUSALDIFF_PROGRESS": "0", "CAUSALDIFF_DIST_TIMEOUT": "60",
       "OMP_NUM_THREADS": "1"}


def torchrun(*args: str):
    return run_torchrun(["-m", "causaldiff", *args], 2, timeout=300, env=ENV, cwd=ROOT)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    alone, per_node, ddp = tmp / "alone", tmp / "per_node", tmp / "ddp"
    assert main(["fit", SPEC, "--out", str(alone), "--quick"]) == 0
    fits = {"per_node": torchrun("fit", SPEC, "--out", str(per_node), "--quick", "--per-node"),
            "ddp": torchrun("fit", SPEC, "--out", str(ddp), "--quick")}
    return alone, per_node, ddp, fits


def test_fit_under_torchrun_prints_and_writes_once(runs):
    alone, per_node, ddp, fits = runs
    for name, run in (("per_node", per_node), ("ddp", ddp)):
        res = fits[name]
        assert res.returncode == 0, res.stderr[-3000:]
        assert res.stdout.count("fitted chain-nonlinear-anm") == 1 and res.stdout.count("SMOKE TEST") == 1
        record = json.loads((run / "fit.json").read_text())
        assert record["processes"] == 2 and record["per_node"] == (name == "per_node")
    # each node trained whole on one rank: the weights one process fits, bit for bit
    assert (per_node / "scm" / "weights.safetensors").read_bytes() == (alone / "scm" / "weights.safetensors").read_bytes()


def _counterfactuals(run: Path, tmp: Path, *extra: str) -> tuple[dict, dict]:
    """The counterfactual JSON of one process and of 2 torchrun ranks."""
    args = ["counterfactual", str(run), "--do", "x2=0.5", *extra]
    assert main([*args, "--n", "7", "--out", str(tmp / "one.json")]) == 0
    res = torchrun(*args, "--rows", "7", "--out", str(tmp / "two.json"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("wrote") == 1
    return (json.loads((tmp / "one.json").read_text())["counterfactual"],
            json.loads((tmp / "two.json").read_text())["counterfactual"])


def test_a_sharded_counterfactual_with_batch_size_writes_what_one_process_writes(runs, tmp_path):
    one, two = _counterfactuals(runs[2], tmp_path, "--batch-size", "2")  # the DDP-fitted run
    assert one == two  # bit for bit: each chunk of 2 rows computed as one process computes it


def test_a_sharded_counterfactual_of_networks_agrees_to_float_rounding(runs, tmp_path):
    one, two = _counterfactuals(runs[0], tmp_path)
    assert one.keys() == two.keys()
    for k in one:
        assert one[k] == pytest.approx(two[k], rel=1e-5, abs=1e-6)


def test_an_error_under_torchrun_is_reported_once(runs):
    alone = runs[0]
    res = torchrun("counterfactual", str(alone), "--do", "nope=1", "--rows", "7")
    assert res.returncode != 0
    assert res.stderr.count("causaldiff counterfactual: error: --do names unknown node(s) ['nope']") == 1
