"""The engine speed benchmark: its hand-written counterfactual is right, and ``--quick`` runs."""

from __future__ import annotations

import json
import math

import torch


from benchmarks.engine_speed import __main__ as bench
P = bench.chain_parameters(0)


def _simulate(u: dict[str, torch.Tensor], x1: torch.Tensor) -> dict[str, torch.Tensor]:
    """The chain pushed forward from ``x1`` with standard noise ``u`` (x_{i+1} = m_i(x_i) + s_i u)."""
    out = {"x1": x1}
    for i, (parent, node) in enumerate(zip(bench.NODES, bench.NODES[1:])):
        out[node] = bench.mean(P, i, out[parent]) + P["s"][i] * u[node]
    return out


def test_by_hand_is_the_true_counterfactual_and_a_null_intervention_returns_the_rows():
    g = torch.Generator().manual_seed(1)
    u = {v: torch.randn(50, generator=g, dtype=torch.float64) for v in bench.NODES}
    factual = _simulate(u, u["x1"])
    v = torch.tensor(-0.8, dtype=torch.float64)
    cf, truth = bench.by_hand(P, factual, v), _simulate(u, v.expand(50))
    null = bench.by_hand(P, factual, factual["x1"])
    for node in bench.NODES:
        torch.testing.assert_close(cf[node], truth[node], rtol=0, atol=1e-12)
        torch.testing.assert_close(null[node], factual[node], rtol=0, atol=1e-12)
    assert not torch.allclose(cf["x10"], factual["x10"])


def test_quick_run_checks_and_writes_its_results(tmp_path):
    res = bench.main(["--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "engine_speed_quick.json").read_text())
    md = (tmp_path / "engine_speed_quick.md").read_text()
    assert [r["n"] for r in saved["sizes"]] == [1, 10, 100] and saved["sizes"] == res["sizes"]
    assert saved["env"]["torch"] == torch.__version__ and saved["settings"]["threads"] == 1
    for r in saved["sizes"]:
        assert r["max_abs_diff_a_b"] <= 1e-12
        for clock in ("wall", "cpu"):
            t = r[clock]
            assert all(s > 0 and math.isfinite(s) for s in t["median_s"].values())
            assert t["ratio_a_b"] == t["median_s"]["a"] / t["median_s"]["b"]
        if saved["dowhy"] is not None:  # DoWhy with the true mechanisms gives the same answer
            assert r["max_abs_diff_c_b"] <= 1e-9 and r["cpu"]["ratio_c_a"] > 0
    assert "| 100 | 3 |" in md and "(a)/(b)" in md


def test_interleaved_times_calls_each_way_in_turn():
    order: list[str] = []
    wall, cpu = bench.interleaved_times({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 3)
    assert order == ["a", "b"] * 3
    assert {k: len(v) for k, v in wall.items()} == {"a": 3, "b": 3} == {k: len(v) for k, v in cpu.items()}
    assert all(t >= 0 for v in (*wall.values(), *cpu.values()) for t in v)
