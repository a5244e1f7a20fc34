"""Every script under examples/ runs (in small settings) and finishes without error."""

from __future__ import annotations

import importlib.util
import runpy
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SMALL = {"CAUSALDIFF_EXAMPLE_STEPS": "200", "CAUSALDIFF_EXAMPLE_SMALL": "1", "CAUSALDIFF_PROGRESS": "0"}
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py"))


def test_examples_are_found():
    assert {"custom_scm.py", "fit_learnable.py", "property_test.py"} <= set(SCRIPTS)


#: examples that need an optional extra: script -> the module that extra installs
EXTRAS = {"pretrained_diffusers.py": "diffusers"}


def _needs_mnist(script: str) -> bool:
    return "mnist" in script


def _mnist_found() -> bool:
    from causaldiff.datasets.mnist import locate

    return locate("train") is not None and locate("test") is not None


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs(script, tmp_path, monkeypatch, capsys):
    extra = EXTRAS.get(script)
    if extra and importlib.util.find_spec(extra) is None:
        pytest.skip(f"needs the optional extra causaldiff[{extra}]")
    if _needs_mnist(script) and not _mnist_found():
        pytest.skip("MNIST files not found: set CAUSALDIFF_MNIST_DIR to the folder of the IDX files")
    for k, v in SMALL.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [script])
    dtype = torch.get_default_dtype()
    try:
        runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    finally:
        torch.set_default_dtype(dtype)
    assert capsys.readouterr().out.strip(), f"{script} printed nothing"
