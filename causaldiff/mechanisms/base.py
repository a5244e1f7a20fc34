"""The mechanism contract every node binding implements.

A mechanism of node ``x`` with parents ``pa`` is the structural equation ``x = f(u, pa)`` with
exogenous noise ``u``. The engine asks each node for one :class:`Conditional` per parent set
(:meth:`Mechanism.given`) and talks only to it. Batch-first: ``parents`` maps each parent to a
tensor ``(n, *parent_event_shape)``; a node's value is ``(n, *event_shape)`` (``(n,)`` for scalars).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor
from torch.distributions import constraints

from ..errors import AbductionError, DataError, GraphError
from .moves import Move

Parents = Mapping[str, Tensor]


class _NoOptions(BaseModel):
    """The ``Config`` of a mechanism that takes no options."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Abduction(str, enum.Enum):
    """How well a mechanism recovers its exogenous noise from an observation."""

    EXACT = "exact"  # u = f^{-1}(x; pa) exactly (invertible mechanisms)
    APPROXIMATE = "approximate"  # deterministic but approximate (DDIM inversion)
    STOCHASTIC = "stochastic"  # a sample from p(u | x, pa) (Gumbel-max for discrete nodes)
    IMPOSSIBLE = "impossible"  # no abduction: counterfactuals through this node are refused


class Mechanism(ABC):
    """Base class of every mechanism: implements :meth:`sample_noise`, :meth:`forward` and, when it
    can, :meth:`abduct`. A registered subclass (``@MECHANISMS.register("name")``) declares a frozen
    pydantic ``Config``, builds from one with :meth:`from_config` and gives its tiny setting with
    :meth:`quick`."""

    #: registry key for specs and save/load (set by ``MECHANISMS.register``); None: not saved
    name: ClassVar[str | None] = None
    #: whether :meth:`fit` learns parameters from data.
    learnable: ClassVar[bool] = False
    #: the options a spec may give (frozen, ``extra="forbid"``)
    Config: ClassVar[type[BaseModel]] = _NoOptions

    def __init__(self) -> None:
        #: parents (in the SCM's order) recorded by :meth:`fit`; ``None`` until fitted.
        self.fitted_parents: tuple[str, ...] | None = None
        #: the node this mechanism is bound to (set by :meth:`check_binding`)
        self.node: str = "?"

    # ----------------------------------------------------------------------------- registry
    @classmethod
    def from_config(cls, config: BaseModel) -> "Mechanism":
        """An unfitted mechanism from a validated ``Config`` (what a spec's options become)."""
        return cls(config)  # type: ignore[call-arg]

    @classmethod
    def quick(cls, config: BaseModel) -> BaseModel:
        """The seconds-long version of ``config`` (tests, ``--quick``); default: unchanged."""
        return config

    # ----------------------------------------------------------------------------- binding
    def check_binding(self, node: str, parents: tuple[str, ...]) -> None:
        """Called when an SCM binds this mechanism to ``node`` with ``parents`` (sorted); a
        :class:`~causaldiff.GraphError` naming the node if it cannot work (here: a fitted mechanism
        whose recorded parents differ)."""
        self.node = node
        if self.learnable and self.fitted_parents is not None and tuple(self.fitted_parents) != parents:
            raise GraphError(f"node {node!r} was fitted with parents {list(self.fitted_parents)} but the "
                             f"graph now gives it {list(parents)}; refit it")

    # ----------------------------------------------------------------------------- the contract
    def abduction(self, parents: Parents | None = None) -> Abduction:
        """The abduction capability, possibly depending on the parents' values."""
        return Abduction.IMPOSSIBLE

    def why_not_abductable(self, parents: Parents | None = None) -> str:
        """A human explanation used when :meth:`abduction` is IMPOSSIBLE."""
        return f"{type(self).__name__} declares no abduction"

    @abstractmethod
    def sample_noise(self, n: int, parents: Parents, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` rows of exogenous noise from ``generator`` (the engine passes one per block of
        rows, :mod:`causaldiff.rng`; ``None``: torch's global RNG)."""

    @abstractmethod
    def forward(self, noise: Tensor, parents: Parents) -> Tensor:
        """The structural equation ``x = f(u, pa)``."""

    def abduct(self, x: Tensor, parents: Parents, generator: torch.Generator | None = None) -> Tensor:
        """Recover ``u`` with ``f(u, pa) == x`` (a stochastic abduction draws from ``generator``)."""
        raise NotImplementedError(self.why_not_abductable(parents))

    def fit(self, x: Tensor, parents: Parents, *, parent_order: tuple[str, ...],
            desc: str = "") -> None:
        """Learn parameters from observed rows (no-op for fixed mechanisms)."""
        self.fitted_parents = tuple(parent_order)

    def given(self, parents: Parents, n: int) -> "Conditional":
        """This mechanism conditioned on ``parents`` for ``n`` rows: the one object the engine asks
        about a node (a subclass of :class:`Conditional` for costly set-up or a step of its own)."""
        return Conditional(self, parents, n)

    # ----------------------------------------------------------------------------- introspection
    @property
    def is_fitted(self) -> bool:
        return not self.learnable or self.fitted_parents is not None

    @property
    def device(self) -> torch.device | None:
        """Where this mechanism's tensors live (``None``: it holds none)."""
        ref = next(iter(self.state_tensors().values()), None)
        return ref.device if ref is not None else None

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
        """A Pyro distribution of ``x | pa`` with batch ``(n, ...)`` for :meth:`SCM.model`, or ``None``
        (no tractable density: the model samples ``u`` and applies ``forward``)."""
        return None

    def to(self, device: torch.device | str) -> "Mechanism":
        """Move parameters to ``device`` (in place, all or nothing) and return ``self``."""
        move = Move(torch.device(device))
        self.stage_to(move)
        move.commit()
        return self

    def stage_to(self, move: Move) -> None:
        """Stage moving this mechanism's tensors to ``move.device`` (:class:`~.moves.Move`: copies now,
        assignments at commit); by default a subclass's own :meth:`to` at commit (not all-or-nothing)."""
        if type(self).to is not Mechanism.to:
            move.call(lambda: self.to(move.device))

    # ----------------------------------------------------------------------------- save / load
    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable hyperparameters and fitted metadata (no code)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")

    def state_tensors(self) -> dict[str, Tensor]:
        """Learned tensors to save (flat names)."""
        return {}

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, Tensor]) -> "Mechanism":
        raise NotImplementedError(f"{cls.__name__} cannot be loaded")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ConditionalMethods:
    """Mechanism methods answered by the :class:`Conditional` of ``_conditional(parents, n)`` (a
    distribution and its codec). Mix in before :class:`Mechanism`."""

    def _conditional(self, parents: Parents | None, n: int | None = None) -> "Conditional":
        raise NotImplementedError

    def sample_noise(self, n: int, parents: Parents, generator: torch.Generator | None = None) -> Tensor:
        return self._conditional(parents, n).sample_noise(generator)

    def forward(self, noise: Tensor, parents: Parents) -> Tensor:
        return self._conditional(parents, noise.shape[0]).forward(noise)

    def abduct(self, x: Tensor, parents: Parents, generator: torch.Generator | None = None) -> Tensor:
        return self._conditional(parents, x.shape[0]).abduct(x, generator)


def check_event_shape(node: str, x: Tensor, shape: Any, what: str) -> None:
    """Rows ``x`` of ``node`` must have the per-row ``shape`` its mechanism gives."""
    if x.shape[1:] != tuple(shape):
        raise DataError(f"node {node!r} in {what}: rows have shape {tuple(x.shape[1:])}, the mechanism "
                        f"gives {tuple(shape)}")


class Conditional:
    """A mechanism given its parents' values for ``n`` rows: all the engine asks of a node.

    ``sample_noise``, ``forward``, ``abduct``: the structural equation and its inverse;
    ``abduction``, ``event_shape``, ``support``, ``value_dtype`` describe the node;
    :meth:`counterfactual` is its abduction and prediction (Pearl's steps 1 and 3). This default
    delegates to the mechanism; a diffusion node (generating from the factual inversion toward the
    new parents) or a costly set-up per parent set returns a subclass.
    """

    def __init__(self, mechanism: Mechanism, parents: Parents, n: int) -> None:
        self.mechanism, self.parents, self.n = mechanism, parents, n

    @property
    def abduction(self) -> Abduction:
        return self.mechanism.abduction(self.parents)

    def why_not_abductable(self) -> str:
        return self.mechanism.why_not_abductable(self.parents)

    def sample_noise(self, generator: torch.Generator | None = None) -> Tensor:
        return self.mechanism.sample_noise(self.n, self.parents, generator)

    def forward(self, noise: Tensor) -> Tensor:
        return self.mechanism.forward(noise, self.parents)

    def abduct(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The noise behind rows ``x``; refused, naming the node, when the node cannot be abducted."""
        if self.abduction is Abduction.IMPOSSIBLE:
            raise AbductionError(f"node {self.mechanism.node!r} cannot be abducted: {self.why_not_abductable()}")
        return self.mechanism.abduct(x, self.parents, generator)

    def event_shape(self) -> tuple[int, ...] | None:
        return self.mechanism.event_shape(self.parents, self.n)

    def support(self) -> Any:
        return self.mechanism.support(self.parents, self.n)

    def value_dtype(self) -> torch.dtype | None:
        return self.mechanism.value_dtype(self.parents, self.n)

    def tolerance_floor(self, x: Tensor) -> float:
        """The error below which no query can give back rows ``x`` of the node (a latent node's
        autoencoder reconstruction error); the law checker adds it to the node's tolerance."""
        return 0.0

    def check(self, x: Tensor, what: str) -> None:
        """Rows ``x`` of the node have its shape and lie in its support (refused naming the node)."""
        node, shape = self.mechanism.node, self.event_shape()
        if shape is not None:
            check_event_shape(node, x, shape, what)
        support = self.support()
        if constrains(support) and not bool(support.check(x).all()):
            raise DataError(f"node {node!r} in {what}: values outside the mechanism's support {support}")

    def precheck(self, x: Tensor, what: str, *, defer: bool) -> bool:
        """Before a counterfactual's work: :meth:`check` the rows ``x`` of this abducted node, refuse
        it if it cannot be abducted, True; or, when ``defer`` and the set-up is cheap (a Pyro
        callable's), leave both to the counterfactual step and return False."""
        self.check(x, what)
        if self.abduction is Abduction.IMPOSSIBLE:
            raise AbductionError(f"node {self.mechanism.node!r} cannot be abducted: {self.why_not_abductable()}")
        return True

    def counterfactual(self, x: Tensor, parents: Parents, generator: torch.Generator | None = None) -> Tensor:
        """The natural values of the factual rows ``x`` had the parents been ``parents``:
        ``forward(abduct(x))`` across the two parent sets, after :meth:`check` of ``x``."""
        self.check(x, "the factual rows")
        u = self.abduct(x, generator)
        return self.mechanism.given(parents, self.n).forward(u)


def constrains(support: Any) -> bool:
    """Whether a support constrains finite rows at all (rows are checked finite before queries)."""
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is not None and support is not constraints.real


__all__ = ["Abduction", "check_event_shape", "constrains", "Conditional", "ConditionalMethods", "Mechanism", "Parents"]
