"""The package's layering: no import cycle, data sets below the top-level package, no function over
60 lines (benchmarks included), the package apart from the benchmarks, examples and benchmarks on
public names only, the version from the package metadata."""

from __future__ import annotations

import ast
import importlib
from importlib.metadata import version
from pathlib import Path

import networkx as nx
import pytest

import causaldiff as cd

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "causaldiff"
#: packages whose ``__all__`` is the public surface examples and benchmarks may use
PUBLIC = ("causaldiff", "causaldiff.datasets", "causaldiff.evaluation", "causaldiff.metrics",
          "causaldiff.testing", "causaldiff.training", "causaldiff.diffusion", "causaldiff.registry",
          "causaldiff.progress", "causaldiff.distributed", "causaldiff.limits", "causaldiff.evaluation.report",
          "causaldiff.evaluation.axioms", "causaldiff.evaluation.plotting")
MAX_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, annotations: bool = False) -> set[str]:
    """Every causaldiff module ``name`` imports (anywhere in the file, function bodies included;
    with ``annotations``, also those under ``if TYPE_CHECKING``, which never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    typing_only = set() if annotations else {
        id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
        and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING" for n in ast.walk(block)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "causaldiff"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "causaldiff":
                continue
            for alias in node.names:  # `from . import x` imports the submodule x when there is one
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in MODULES else base)
    return {m if m in MODULES else m.rpartition(".")[0] for m in out} - {name}


@pytest.mark.parametrize("annotations", [False, True], ids=["run", "with annotations"])
def test_the_package_has_no_import_cycle(annotations):
    """Not even through imports for annotations only (two modules typed by each other's classes)."""
    g = nx.DiGraph()
    for name, path in MODULES.items():
        g.add_edges_from((name, dep) for dep in _imports(name, path, annotations))
    cycles = list(nx.simple_cycles(g))
    assert not cycles, f"import cycles: {sorted(cycles, key=len)[:5]}"


def test_data_sets_do_not_import_the_top_level_package():
    offenders = {name: sorted(d for d in _imports(name, path) if d == "causaldiff")
                 for name, path in MODULES.items() if name.startswith("causaldiff.datasets")}
    assert not any(offenders.values()), offenders


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path.relative_to(ROOT)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_LINES]


def test_no_function_in_the_package_or_the_benchmarks_is_over_60_lines():
    long = [f for p in [*MODULES.values(), *sorted((ROOT / "benchmarks").rglob("*.py"))] for f in _long_functions(p)]
    assert not long, long


def test_the_package_does_not_import_the_benchmarks():
    """The library stands alone: ``benchmarks/`` is built over it, never the other way round."""
    bad = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            bad += [f"{name}: {n}" for n in names if n.split(".")[0] == "benchmarks"]
    assert not bad, bad


def _non_public_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bad += [a.name for a in node.names if a.name.startswith("causaldiff") and a.name not in PUBLIC]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("causaldiff"):
            if node.module not in PUBLIC:
                bad.append(node.module)
                continue
            exported = set(getattr(importlib.import_module(node.module), "__all__", ()))
            bad += [f"{node.module}.{a.name}" for a in node.names
                    if a.name not in exported and f"{node.module}.{a.name}" not in PUBLIC]
    return [f"{path.relative_to(ROOT)}: {b}" for b in bad]


def _scripts(folder: str) -> list[Path]:
    """The scripts of ``folder``: every example; the benchmarks' entry points (a ``__main__`` block)."""
    files = sorted((ROOT / folder).rglob("*.py"))
    return files if folder == "examples" else [p for p in files if not p.name.startswith("test_")
                                                and 'if __name__ == "__main__":' in p.read_text()]


@pytest.mark.parametrize("folder", ["examples", "benchmarks"])
def test_example_and_benchmark_scripts_use_public_names_only(folder):
    scripts = _scripts(folder)
    assert scripts
    bad = [b for p in scripts for b in _non_public_imports(p)]
    assert not bad, bad


def test_the_public_packages_export_what_they_name():
    for name in PUBLIC:
        module = importlib.import_module(name)
        missing = [n for n in getattr(module, "__all__", ()) if not hasattr(module, n)]
        assert not missing, (name, missing)


def test_the_version_comes_from_the_package_metadata():
    assert cd.__version__ == version("causaldiff")
