"""Optional dependencies stay optional: ``import causaldiff`` loads none of them, the testing tools
import without hypothesis, and what needs an extra says which one when it is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    """``code`` run in a fresh interpreter from the checkout (a clean ``sys.modules``)."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_import_causaldiff_loads_no_optional_dependency():
    out = _python("import causaldiff, causaldiff.testing, causaldiff.evaluation, sys; print(sorted({m.split('.')[0] "
                  "for m in sys.modules} & {'skimage', 'scipy', 'matplotlib', 'hypothesis', 'benchmarks'}))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("blocked, imports, call, extra", [
    # the laws import without hypothesis; only building a strategy needs it
    ("hypothesis", "from causaldiff.testing import check_counterfactual_laws, named_callable, scms", "scms()", "dev"),
    ("matplotlib", "import torch; from causaldiff.evaluation import save_grid",
     "save_grid([torch.zeros(2, 1, 4, 4)], ['a'], 'never.png')", "plot"),
])
def test_what_needs_a_missing_extra_names_it(blocked, imports, call, extra):
    out = _python(f"import sys; sys.modules[{blocked!r}] = None\n{imports}\n"
                  f"try:\n    {call}\nexcept ImportError as e:\n    print(e)")
    assert out.returncode == 0, out.stderr
    assert f"pip install 'causaldiff[{extra}]'" in out.stdout


@pytest.mark.parametrize("extra", ["plot", "morphomnist"])
def test_the_extras_are_declared_and_part_of_all(extra):
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert extra in project["optional-dependencies"] and extra in project["optional-dependencies"]["all"][0]
    assert not {"matplotlib", "scipy", "scikit-image"} & {d.split(">")[0].split("=")[0] for d in project["dependencies"]}
