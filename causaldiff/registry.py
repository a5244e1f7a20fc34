"""Registries: one per kind of extension (mechanisms, data sets with ground truth).

A registered class has a ``name`` (set by :meth:`Registry.register`), a frozen pydantic ``Config``
(``extra="forbid"``) and ``quick(config) -> config``; specs are validated against the registries, so
a new kind touches one file. A class outside the package registers when its module is imported, or
through an entry-point ``group`` (``DATASETS``: ``causaldiff.datasets``), loaded on the first lookup
of a name the registry does not hold.

>>> from causaldiff.registry import MECHANISMS
>>> "diffusion" in MECHANISMS
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import importlib
from importlib import metadata
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from .errors import RegistryError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Name -> class for one kind of extension; ``register(name)``, a class decorator, checks the
    contract (a frozen ``Config`` with ``extra="forbid"``, a ``quick`` classmethod) and refuses a
    name another class holds."""

    def __init__(self, kind: str, group: str | None = None, builtins: str | None = None) -> None:
        self.kind = kind
        #: the entry-point group naming the modules that register this kind outside the package
        self.group = group
        #: the package module whose import registers the built-in classes (imported on first lookup)
        self.builtins = builtins
        self._registered: dict[str, T] = {}

    @property
    def _classes(self) -> dict[str, T]:
        """The classes registered, the built-in ones first imported (``import causaldiff`` is lazy)."""
        if self.builtins is not None:
            importlib.import_module(self.builtins)
        return self._registered

    def register(self, name: str) -> Callable[[T], T]:
        if not isinstance(name, str) or not name.isidentifier():
            raise RegistryError(f"{self.kind} name must be an identifier, got {name!r}")

        def decorator(cls: T) -> T:
            self._check_contract(name, cls)
            old = self._registered.get(name)
            if old is not None and old is not cls and old.__qualname__ != cls.__qualname__:
                raise RegistryError(f"{self.kind} name {name!r} is already registered to "
                                    f"{old.__module__}.{old.__qualname__}")
            cls.name = name
            self._registered[name] = cls
            return cls

        return decorator

    def _check_contract(self, name: str, cls: type) -> None:
        config = getattr(cls, "Config", None)
        if not (isinstance(config, type) and issubclass(config, BaseModel)):
            raise RegistryError(f"{self.kind} {name!r}: {cls.__name__}.Config must be a pydantic model")
        settings = config.model_config
        if not settings.get("frozen") or settings.get("extra") != "forbid":
            raise RegistryError(f"{self.kind} {name!r}: {cls.__name__}.Config must be frozen with "
                                "extra='forbid'")
        if not callable(getattr(cls, "quick", None)):
            raise RegistryError(f"{self.kind} {name!r}: {cls.__name__} needs a classmethod quick(config)")

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a toy class clean up with this)."""
        if name not in self._classes:
            raise RegistryError(f"no {self.kind} named {name!r} is registered")
        del self._classes[name]

    def _entry_points(self) -> dict[str, metadata.EntryPoint]:
        """This registry's entry points of the installed distributions, by name."""
        return {} if self.group is None else {ep.name: ep for ep in metadata.entry_points(group=self.group)}

    def _load(self, name: str) -> bool:
        """Import the module an entry point declares for ``name`` (which registers it); False when
        none does. Raises :class:`RegistryError` naming the entry point when it cannot be loaded."""
        ep = self._entry_points().get(name) if isinstance(name, str) and name not in self._classes else None
        if ep is None:
            return False
        try:
            ep.load()
        except Exception as e:  # ImportError, or the module failing on import: one error that says why
            raise RegistryError(f"{self.kind} {name!r} is declared by the entry point {ep.value!r} (group "
                                f"{self.group}) but cannot be imported: {type(e).__name__}: {e}. It is not part "
                                "of the installed package: run from the source checkout that holds it (its root "
                                "on the Python path, e.g. `python -m causaldiff` there)") from e
        if name not in self._classes:
            raise RegistryError(f"{self.kind} {name!r}: importing the entry point {ep.value!r} did not register it")
        return True

    def get(self, name: str) -> T:
        if name in self:
            return self._classes[name]
        declared = sorted(set(self._entry_points()) - set(self._classes))
        more = f"; declared by entry points ({self.group}): {', '.join(declared)}" if declared else ""
        raise RegistryError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}{more}")

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._classes))

    def __contains__(self, name: Any) -> bool:
        """Registered, or declared by an entry point whose module registers it (imported here)."""
        return (isinstance(name, str) and name in self._classes) or self._load(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._classes)

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self.names())})"


#: Mechanism kinds a node can be bound to (by spec name and in saved SCMs).
MECHANISMS: Registry = Registry("mechanism", builtins="causaldiff.mechanisms")
#: Data sets a spec can draw its rows from (with ground truth where they know it).
DATASETS: Registry = Registry("dataset", group="causaldiff.datasets", builtins="causaldiff.datasets")

__all__ = ["Registry", "MECHANISMS", "DATASETS"]
