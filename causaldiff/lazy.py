"""Lazy re-exports (PEP 562): a package's public names imported the first time they are used, so
that importing the package loads none of the modules behind them."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, sources: Mapping[str, Iterable[str]],
                 modules: Iterable[str] = ()) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: ``sources`` maps each relative module
    (``".scm"``) to the names it defines, ``modules`` are submodules exported whole; each is
    imported on first access and then cached in the package's namespace."""
    where = {name: module for module, names in sources.items() for name in names}
    submodules = set(modules)

    def __getattr__(name: str) -> Any:
        if name in where:
            value = getattr(import_module(where[name], package), name)
        elif name in submodules:
            value = import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where) | submodules)

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
