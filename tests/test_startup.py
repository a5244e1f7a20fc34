"""Start-up: ``import causaldiff`` loads nothing heavy, torch included (every public name is
imported on first use), and ``causaldiff graph`` loads neither the engine nor the metrics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "numpy", "pyro", "networkx", "pydantic", "pandas", "diffusers", "torchvision", "matplotlib", "safetensors", "PIL"}


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_loads_nothing_heavy_not_even_torch():
    loaded = _python(f"import causaldiff, sys; print(sorted({{m.split('.')[0] for m in sys.modules}} & {HEAVY!r}))")
    assert loaded == "[]"


def test_every_public_name_resolves_on_first_use_and_registries_are_filled():
    out = _python("import causaldiff as cd\n"
                  "missing = [n for n in cd.__all__ if getattr(cd, n, None) is None]\n"
                  "from causaldiff.registry import MECHANISMS, DATASETS\n"
                  "print(missing, 'classifier' in MECHANISMS, 'shapes' in DATASETS.names(), cd.SCM is cd.scm.SCM)")
    assert out == "[] True True True"


def test_unknown_attribute_is_an_attribute_error():
    assert _python("import causaldiff as cd\ntry:\n    cd.nothing\nexcept AttributeError as e:\n    print(e)") \
        == "module 'causaldiff' has no attribute 'nothing'"


def test_graph_command_loads_neither_engine_nor_metrics(tmp_path):
    out = _python(f"import sys\nfrom causaldiff.cli import main\n"
                  f"assert main(['graph', 'graphs/shapes.toml', '--out', {str(tmp_path / 'g.png')!r}]) == 0\n"
                  "print(sorted(m for m in ('causaldiff.engine', 'causaldiff.scm', 'causaldiff.metrics', "
                  "'causaldiff.runs') if m in sys.modules))")
    assert out.splitlines()[-1] == "[]"
