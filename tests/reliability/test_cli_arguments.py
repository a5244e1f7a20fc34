"""Reliability catalogue, CLI (issue 14, point 9): every argument validated before any work; one
line on stderr naming the flag, exit status 2, never a traceback, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bad_inputs import refuse, state, assert_same

from causaldiff.cli import main

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"
ANM = str(GRAPHS / "tabular_chain_nonlinear_anm.toml")


@pytest.fixture
def work(tmp_path):
    (tmp_path / "afile").write_text("keep me\n")
    (tmp_path / "adir").mkdir()
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "spec.json").write_bytes(b"\x00{not json")
    (tmp_path / "badspec").mkdir()
    (tmp_path / "badspec" / "spec.json").write_text('{"name": "a", "dataset": {"kind": "nope"}, "nodes": {}}')
    (tmp_path / "latin.toml").write_bytes(b'name = "\xff"\n')
    return tmp_path


CASES = [  # (argv with {w} the work folder, text the one line must hold)
    (["sweep", "{w}/adir", "--scales", "nan"], "--scales expects finite non-negative numbers"),
    (["sweep", "{w}/adir", "--scales", "0,inf"], "--scales expects finite"),
    (["sweep", "{w}/adir", "--scales", "-1"], "--scales expects finite non-negative"),
    (["sweep", "{w}/adir", "--scales", "a,b"], "--scales expects comma-separated numbers"),
    (["sweep", "{w}/adir", "--scales", ","], "--scales expects"),
    (["sweep", "{w}/adir", "--n", "0"], "--n must be positive"),
    (["sweep", "{w}/adir"], "is not a run directory"),
    (["fit", ANM, "--out", "{w}/run", "--device", "cpu:99"], "--device cpu:99: there is one CPU device"),
    (["fit", ANM, "--out", "{w}/run", "--device", "meta"], "--device: 'meta' is not supported"),
    (["fit", ANM, "--out", "{w}/run", "--device", "mps"], "--device: 'mps' is not supported"),
    (["fit", ANM, "--out", "{w}/run", "--device", "bogus"], "--device: 'bogus' is not a device"),
    (["fit", ANM, "--out", "{w}/run", "--device", "cuda:99"], "--device cuda:99"),
    (["fit", ANM, "--out", "{w}/afile"], "--out {w}/afile: is an existing file"),
    (["fit", ANM, "--out", "{w}/afile/run"], "--out {w}/afile/run: {w}/afile is a file, not a folder"),
    (["fit", ANM, "--out", "{w}/run", "--steps", "-1"], "--steps must be positive"),
    (["fit", ANM, "--out", "{w}/run", "--data", "{w}/nowhere"], "--data {w}/nowhere: no such folder"),
    (["fit", "{w}/missing.toml", "--out", "{w}/run"], "no spec file at {w}/missing.toml"),
    (["fit", "{w}/latin.toml", "--out", "{w}/run"], "latin.toml: not a UTF-8 text file"),
    (["fit", "{w}/adir", "--out", "{w}/run"], "(it is a directory)"),
    (["counterfactual", "{w}/adir", "--do", "x1=1", "--do", "x1=2"], "--do x1: given twice"),
    (["counterfactual", "{w}/adir", "--do", "x1=nan"], "--do x1: 'nan' is not a finite number"),
    (["counterfactual", "{w}/adir", "--do", "x1=inf"], "is not a finite number"),
    (["counterfactual", "{w}/adir", "--do", "x1=abc"], "--do x1: 'abc' is not a number"),
    (["counterfactual", "{w}/adir", "--do", "x1"], "--do expects NODE=VALUE"),
    (["counterfactual", "{w}/adir"], "give at least one --do"),
    (["counterfactual", "{w}/adir", "--do", "x1=1", "--n", "0"], "--n must be positive"),
    (["counterfactual", "{w}/adir", "--do", "x1=1", "--batch-size", "0"], "--batch-size must be positive"),
    (["counterfactual", "{w}/adir", "--do", "x1=1", "--out", "{w}/adir"], "--out {w}/adir: is an existing directory"),
    (["counterfactual", "{w}/nowhere", "--do", "x1=1"], "is not a run directory"),
    (["counterfactual", "{w}/garbage", "--do", "x1=1"], "spec.json: not a JSON file written by `causaldiff fit`"),
    (["counterfactual", "{w}/badspec", "--do", "x1=1"], "spec.json: invalid spec: dataset: unknown dataset 'nope'"),
    (["evaluate", "{w}/adir", "--n", "-5"], "--n must be positive, got -5"),
    (["evaluate", "{w}/adir", "--n", "0"], "--n must be positive"),
    (["evaluate", "{w}/garbage"], "not a JSON file"),
    (["graph", ANM, "--out", "{w}/adir"], "--out {w}/adir: is an existing directory"),
    (["graph", "{w}/missing.toml", "--out", "{w}/g.png"], "no spec file"),
    (["demo", "--kind", "tabular", "--out", "{w}/afile"], "--out {w}/afile: is an existing file"),
]


@pytest.mark.parametrize("argv,text", CASES, ids=[" ".join(a[:1] + a[2:])[:60] for a, _ in CASES])
def test_bad_arguments_are_one_line_and_exit_2_before_any_work(work, capsys, argv, text):
    if "--device" in argv and argv[argv.index("--device") + 1] == "cuda:99" and not torch.cuda.is_available():
        text = "--device cuda:99: CUDA is not available"
    argv = [a.replace("{w}", str(work)) for a in argv]
    before = state(None, None, work)
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"causaldiff {argv[0]}: error: "), lines
    assert text.replace("{w}", str(work)) in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert_same(before, state(None, None, work))  # nothing written, no run folder made


def test_fit_refuses_an_existing_file_as_out_before_fitting(work):
    """In a fresh process: the refusal comes in well under the time the fit takes, and the file is kept."""
    cmd = [sys.executable, "-m", "causaldiff.cli", "fit", ANM, "--out", str(work / "afile")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"causaldiff fit: error: --out {work / 'afile'}: is an existing file; "
                                                "give a folder path"]
    assert (work / "afile").read_text() == "keep me\n"


def test_a_garbage_run_gives_one_line_in_a_fresh_process(work):
    cmd = [sys.executable, "-m", "causaldiff.cli", "evaluate", str(work / "garbage")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_library_refuses_an_existing_file_too(work):
    from causaldiff.errors import DataError
    from causaldiff.runs import fit_run

    refuse(DataError, r"--out .*afile: is an existing file", lambda: fit_run(ANM, work / "afile"), folder=work)


def test_an_existing_output_file_may_be_replaced_but_not_one_under_a_file(work):
    from causaldiff.errors import DataError
    from causaldiff.validation import check_output_path

    assert check_output_path(work / "afile", "--out") == work / "afile"  # its folder is writable
    assert check_output_path(work / "adir", "--out", directory=True) == work / "adir"
    refuse(DataError, r"--out .*afile/x.json: .*afile is a file, not a folder",
           lambda: check_output_path(work / "afile" / "x.json", "--out"), folder=work)
