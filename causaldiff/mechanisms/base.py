"""The mechanism contract every node binding implements.

A mechanism ``f`` of node ``x`` with parents ``pa`` is the structural equation ``x = f(u, pa)``
with exogenous noise ``u``. The engine only ever calls the methods below, always batch-first:
``parents`` maps each parent's name to a tensor of shape ``(n, *parent_event_shape)``, and a
node's value has shape ``(n, *event_shape)`` (``(n,)`` for scalar nodes).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

Parents = Mapping[str, Tensor]


class Abduction(str, enum.Enum):
    """How well a mechanism recovers its exogenous noise from an observation."""

    EXACT = "exact"  # u = f^{-1}(x; pa) exactly (invertible mechanisms)
    APPROXIMATE = "approximate"  # deterministic but approximate (DDIM inversion)
    STOCHASTIC = "stochastic"  # a sample from p(u | x, pa) (Gumbel-max for discrete nodes)
    IMPOSSIBLE = "impossible"  # no abduction: counterfactuals through this node are refused


class Mechanism(ABC):
    """Base class of every mechanism.

    Subclasses set :attr:`name` (the registry key used by save/load) and implement
    :meth:`sample_noise`, :meth:`forward` and, when they can, :meth:`abduct`.
    """

    #: registry key for serialisation; ``None`` means the mechanism cannot be saved.
    name: ClassVar[str | None] = None
    #: whether :meth:`fit` learns parameters from data.
    learnable: ClassVar[bool] = False

    def __init__(self) -> None:
        #: parents (in the SCM's order) recorded by :meth:`fit`; ``None`` until fitted.
        self.fitted_parents: tuple[str, ...] | None = None

    # ----------------------------------------------------------------------------- the contract
    def abduction(self, parents: Parents | None = None) -> Abduction:
        """The abduction capability, possibly depending on the parents' values."""
        return Abduction.IMPOSSIBLE

    def why_not_abductable(self) -> str:
        """A human explanation used when :meth:`abduction` is IMPOSSIBLE."""
        return f"{type(self).__name__} declares no abduction"

    @abstractmethod
    def sample_noise(self, n: int, parents: Parents) -> Tensor:
        """Draw ``n`` rows of exogenous noise (global RNG; the engine seeds it)."""

    @abstractmethod
    def forward(self, noise: Tensor, parents: Parents) -> Tensor:
        """The structural equation ``x = f(u, pa)``."""

    def abduct(self, x: Tensor, parents: Parents) -> Tensor:
        """Recover ``u`` with ``f(u, pa) == x``."""
        raise NotImplementedError(self.why_not_abductable())

    def fit(self, x: Tensor, parents: Parents, *, parent_order: tuple[str, ...],
            desc: str = "") -> None:
        """Learn parameters from observed rows (no-op for fixed mechanisms)."""
        self.fitted_parents = tuple(parent_order)

    # ----------------------------------------------------------------------------- introspection
    @property
    def is_fitted(self) -> bool:
        return not self.learnable or self.fitted_parents is not None

    def event_shape(self, parents: Parents, n: int) -> tuple[int, ...] | None:
        """The node's per-row shape if it can be known without sampling, else ``None``."""
        return None

    def support(self, parents: Parents, n: int) -> Any:
        """A ``torch.distributions.constraints`` object the values must satisfy, or ``None``."""
        return None

    def value_dtype(self, parents: Parents, n: int) -> torch.dtype | None:
        """The dtype of the node's values if known (``torch.long`` for categorical nodes)."""
        return None

    def pyro_distribution(self, parents: Parents, n: int) -> Any:
        """A Pyro distribution of ``x | pa`` with batch ``(n, ...)`` for :meth:`SCM.model`, or
        ``None`` if it has no tractable density (the model then samples ``u`` and applies ``forward``)."""
        return None

    def to(self, device: torch.device | str) -> "Mechanism":
        """Move parameters to ``device`` (in place) and return ``self``."""
        return self

    # ----------------------------------------------------------------------------- save / load
    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable hyperparameters (no code); see :mod:`causaldiff.serialization`."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")

    def state_tensors(self) -> dict[str, Tensor]:
        """Learned tensors to save (flat names)."""
        return {}

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, Tensor]) -> "Mechanism":
        raise NotImplementedError(f"{cls.__name__} cannot be loaded")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


MECHANISM_REGISTRY: dict[str, type[Mechanism]] = {}


def register_mechanism(cls: type[Mechanism]) -> type[Mechanism]:
    """Class decorator adding a mechanism type to the save/load registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty `name` to be registered")
    if cls.name in MECHANISM_REGISTRY and MECHANISM_REGISTRY[cls.name] is not cls:
        raise ValueError(f"mechanism name {cls.name!r} is already registered")
    MECHANISM_REGISTRY[cls.name] = cls
    return cls
