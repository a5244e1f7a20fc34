"""Registries: one per kind of extension (mechanisms, data sets with ground truth).

A registered class declares its ``name`` (set by :meth:`Registry.register`), its pydantic
``Config`` (frozen, ``extra="forbid"``: the options a spec may give) and a classmethod
``quick(config) -> config`` (the tiny setting used by tests and ``--quick``). Specs are validated
against the registries when they are loaded, so adding a mechanism kind or a data set touches one
file: the one that defines and registers it.

>>> from causaldiff.registry import MECHANISMS
>>> "diffusion" in MECHANISMS
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from .errors import RegistryError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Name -> class for one kind of extension.

    ``register(name)`` is a class decorator; it checks the contract every registered class must
    meet (a frozen ``Config`` with ``extra="forbid"`` and a ``quick`` classmethod) and refuses a
    name already taken by another class.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        if not isinstance(name, str) or not name.isidentifier():
            raise RegistryError(f"{self.kind} name must be an identifier, got {name!r}")

        def decorator(cls: T) -> T:
            self._check_contract(name, cls)
            old = self._classes.get(name)
            if old is not None and old is not cls and old.__qualname__ != cls.__qualname__:
                raise RegistryError(f"{self.kind} name {name!r} is already registered to "
                                    f"{old.__module__}.{old.__qualname__}")
            cls.name = name
            self._classes[name] = cls
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

    def get(self, name: str) -> T:
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            raise RegistryError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._classes))

    def __contains__(self, name: Any) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._classes)

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self.names())})"


#: Mechanism kinds a node can be bound to (by spec name and in saved SCMs).
MECHANISMS: Registry = Registry("mechanism")
#: Data sets a spec can draw its rows from (with ground truth where they know it).
DATASETS: Registry = Registry("dataset")

__all__ = ["Registry", "MECHANISMS", "DATASETS"]
