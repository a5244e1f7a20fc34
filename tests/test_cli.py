"""The command line: every command in small settings; bad arguments exit 2 with one line."""

from __future__ import annotations

import json

from causaldiff.cli import main


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
