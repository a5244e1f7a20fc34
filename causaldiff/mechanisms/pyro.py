"""Pyro mechanisms: a raw distribution on a root, or a callable ``(**parents) -> Distribution``.

The noise follows the family: location-scale (Normal, Laplace, Logistic, StudentT, Cauchy, Gumbel,
MultivariateNormal) ``x = loc + scale * u``; ``TransformedDistribution`` ``x = T(base(u))``, exact when
every transform is bijective; other continuous univariate families ``x = icdf(u)``, ``u ~ U(0, 1)``;
Categorical and Bernoulli the Gumbel-max SCM (Oberst & Sontag 2019), ``x = argmax_k(logits_k +
g_k)``, abducted by a posterior draw of ``g`` (stochastic).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import pyro.distributions as dist
import torch
import torch.distributions as tdist
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from ..errors import DivergenceError, GraphError, SerializationError
from ..registry import MECHANISMS
from .base import Abduction, Conditional, ConditionalMethods, Mechanism, Parents, check_event_shape
from .codecs import LOC_SCALE, DistributionConditional, distribution_params
from .moves import Move

_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class PyroConfig(BaseModel):
    """A raw Pyro distribution by family name and parameters (what a spec or a save can give)."""

    model_config = _FROZEN
    family: str = "Normal"
    params: dict[str, float | list[float]] = {"loc": 0.0, "scale": 1.0}

    @model_validator(mode="after")
    def _builds(self) -> "PyroConfig":
        self.build()
        return self

    def build(self) -> tdist.Distribution:
        """The distribution ``family(**params)`` (lists become tensors)."""
        cls = _family(self.family)
        params = {k: torch.tensor(v) if isinstance(v, list) else v for k, v in self.params.items()}
        try:
            return cls(**params)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{self.family}({', '.join(self.params)}): {e}") from None


def _family(name: Any) -> type[tdist.Distribution]:
    """The Pyro distribution class called ``name``; a ValueError for anything else."""
    cls = getattr(dist, name, None) if isinstance(name, str) and name in dist.__all__ else None
    if not (isinstance(cls, type) and issubclass(cls, tdist.Distribution)):
        raise ValueError(f"unknown Pyro distribution family {name!r}")
    return cls


class NormalConfig(BaseModel):
    """Options of the ``normal`` mechanism: a fixed ``Normal(loc, scale)`` root."""

    model_config = _FROZEN
    loc: float = 0.0
    scale: float = Field(1.0, gt=0.0)


def named_callable(fn: Callable[[dict[str, Tensor]], Any], names: Any,
                   name: str | None = None) -> Callable[..., Any]:
    """``fn(parents_dict)`` as a callable whose keyword signature names the parents ``names`` (how an
    SCM binds a callable to a node's parents), called ``name`` (default: ``fn``'s)."""
    def bound(**kwargs: Tensor) -> Any:
        return fn(kwargs)
    bound.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in names])
    bound.__name__ = name or getattr(fn, "__name__", "mechanism")
    return bound


# --------------------------------------------------------------------------------- moving dists
def _move(d: tdist.Distribution, move: Move) -> tdist.Distribution:
    """A raw distribution rebuilt with its parameters on ``move.device`` (transforms that are
    modules staged in ``move``)."""
    if isinstance(d, tdist.Independent):
        return tdist.Independent(_move(d.base_dist, move), d.reinterpreted_batch_ndims)
    if isinstance(d, tdist.TransformedDistribution):
        for t in d.transforms:
            if isinstance(t, torch.nn.Module):
                move.module(t)
        return dist.TransformedDistribution(_move(d.base_dist, move), d.transforms)
    return type(d)(**move.tensors(distribution_params(d)))


#: counterfactual steps of up to this many rows call a callable once on the factual and the new
#: parents stacked: there the set-up per call dominates; above it stacking would only copy them
STACK_MAX_ROWS = 4096


class _CallableConditional(DistributionConditional):
    """A callable's node given its parents; the callable runs when the distribution is first
    needed. A counterfactual step of a node not yet checked runs it once on the factual and the new
    parents stacked (``2n`` rows) and, for a location-scale family, transports the rows in one step:
    ``loc' + scale' (x - loc) / scale``, the arithmetic of abduction then prediction."""

    def __init__(self, mechanism: "PyroMechanism", parents: Parents, n: int) -> None:
        Conditional.__init__(self, mechanism, parents, n)

    @functools.cached_property
    def distribution(self) -> tdist.Distribution:  # type: ignore[override]
        return self.mechanism.distribution(self.parents, self.n)

    def precheck(self, x: Tensor, what: str, *, defer: bool) -> bool:
        return False if defer and self.n <= STACK_MAX_ROWS else super().precheck(x, what, defer=defer)

    def counterfactual(self, x: Tensor, parents: Parents, generator: torch.Generator | None = None) -> Tensor:
        if "distribution" in self.__dict__ or self.n > STACK_MAX_ROWS:
            return super().counterfactual(x, parents, generator)
        d = self.mechanism.distribution({p: torch.cat([v, parents[p]]) for p, v in self.parents.items()}, 2 * self.n)
        if not isinstance(d, LOC_SCALE):
            return super().counterfactual(x, parents, generator)
        check_event_shape(self.mechanism.node, x, d.batch_shape[1:] + d.event_shape, "the factual rows")
        (loc, loc_cf), (scale, scale_cf) = d.loc.chunk(2), d.scale.chunk(2)
        return loc_cf + scale_cf * ((x - loc) / scale)  # the reals: rows were checked finite


# --------------------------------------------------------------------------------- the mechanism
#: the methods a subclass may override to change what the engine computes
_CONTRACT = ("distribution", "abduction", "why_not_abductable", "sample_noise", "forward", "abduct",
             "event_shape", "support", "value_dtype")


@functools.cache
def _keeps_contract(cls: type) -> bool:
    """Whether ``cls`` overrides none of :data:`_CONTRACT` (then one distribution serves a query)."""
    return all(getattr(cls, m) is getattr(PyroMechanism, m) for m in _CONTRACT)


class _RootConditional(DistributionConditional):
    """A root bound to a raw distribution: its shape and support are the distribution's own, known
    without expanding it to ``n`` rows (expanded only when noise is drawn or abducted)."""

    def __init__(self, mechanism: "PyroMechanism", n: int) -> None:
        Conditional.__init__(self, mechanism, {}, n)

    @functools.cached_property
    def distribution(self) -> tdist.Distribution:  # type: ignore[override]
        return self.mechanism.distribution({}, self.n)

    def event_shape(self) -> tuple[int, ...]:
        d = self.mechanism.spec
        return tuple(d.batch_shape + d.event_shape)

    def support(self) -> Any:
        return self.mechanism.spec.support


@MECHANISMS.register("pyro")
class PyroMechanism(ConditionalMethods, Mechanism):
    """A node bound to a Pyro distribution (root) or a callable of its parents (by name) returning one."""

    Config = PyroConfig

    @classmethod
    def from_config(cls, config: PyroConfig) -> "PyroMechanism":
        return cls(config.build())

    def __init__(self, spec: tdist.Distribution | Callable[..., tdist.Distribution]):
        super().__init__()
        if not isinstance(spec, tdist.Distribution) and not callable(spec):
            raise GraphError(f"a Pyro mechanism needs a Distribution or a callable, got {type(spec).__name__}")
        self.spec = spec

    # --------------------------------------------------------------------------- binding
    @property
    def is_raw(self) -> bool:
        return isinstance(self.spec, tdist.Distribution)

    def parameter_names(self) -> list[str] | None:
        """Names of a callable's parameters (``None`` for a raw distribution)."""
        if self.is_raw:
            return None
        sig = inspect.signature(self.spec)
        kinds = {p.kind for p in sig.parameters.values()}
        if inspect.Parameter.VAR_KEYWORD in kinds or inspect.Parameter.VAR_POSITIONAL in kinds:
            raise GraphError(f"node {self.node!r}: its callable must name its parents explicitly "
                             "(no *args / **kwargs)")
        return list(sig.parameters)

    def check_binding(self, node: str, parents: tuple[str, ...]) -> None:
        super().check_binding(node, parents)
        names = self.parameter_names()
        if names is None and parents:
            raise GraphError(f"node {node!r} has parents {list(parents)} but is bound to a raw "
                             "distribution; bind a callable taking those parents by name")
        if names is not None and set(names) != set(parents):
            raise GraphError(f"node {node!r}: its callable takes {sorted(names)} but the node's "
                             f"parents are {list(parents)}")

    def distribution(self, parents: Parents, n: int) -> tdist.Distribution:
        """The distribution of this node given its parents, with batch shape ``(n, ...)``."""
        if self.is_raw:
            d = self.spec
            return d.expand(torch.Size([n]) + d.batch_shape)
        try:
            d = self.spec(**parents)
        except ValueError as e:  # torch's argument validation: a parameter NaN or off its constraint
            if not str(e).startswith("Expected parameter"):
                raise
            bad = next((p for p, v in parents.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
            if bad is not None:  # rows are checked finite before queries: the parent's mechanism made them
                raise DivergenceError(f"node {bad!r}: its mechanism produced NaN or Inf, which its child {self.node!r} "
                                      "cannot take") from None
            raise DivergenceError(f"node {self.node!r}: its callable gave invalid parameters ({str(e).splitlines()[0]})") from None
        if not isinstance(d, tdist.Distribution):
            raise GraphError(f"node {self.node!r}: its callable returned {type(d).__name__}, "
                             "not a Distribution")
        if len(d.batch_shape) == 0 or d.batch_shape[0] != n:
            d = d.expand(torch.Size([n]) + d.batch_shape)
        return d

    # --------------------------------------------------------------------------- the contract
    def given(self, parents: Parents, n: int) -> Conditional:
        """The node's distribution and noise codec given ``parents``, built once for ``n`` rows. A
        subclass that overrides a method of the contract gets the delegating
        :class:`~causaldiff.mechanisms.base.Conditional` instead, so its override is what runs."""
        if not _keeps_contract(type(self)):
            return Conditional(self, parents, n)
        if self.is_raw:
            return _RootConditional(self, n)
        return _CallableConditional(self, parents, n)

    def _conditional(self, parents: Parents | None, n: int | None = None) -> DistributionConditional:
        parents = parents or {}
        if n is None:
            n = next(iter(parents.values())).shape[0] if parents else 1
        return DistributionConditional(self, parents, n, self.distribution(parents, n))

    def abduction(self, parents: Parents | None = None) -> Abduction:
        return self._conditional(parents).abduction

    def why_not_abductable(self, parents: Parents | None = None) -> str:
        return self._conditional(parents).why_not_abductable()

    def event_shape(self, parents: Parents, n: int) -> tuple[int, ...]:
        return self._conditional(parents, n).event_shape()

    def support(self, parents: Parents, n: int) -> Any:
        if self.is_raw:  # a root's support does not depend on the batch
            return self.spec.support
        return self._conditional(parents, n).support()

    def value_dtype(self, parents: Parents, n: int) -> torch.dtype | None:
        return self._conditional(parents, n).value_dtype()

    def pyro_distribution(self, parents: Parents, n: int) -> tdist.Distribution:
        d = self.distribution(parents, n)
        extra = len(d.batch_shape) - 1
        return d.to_event(extra) if extra > 0 else d

    @property
    def device(self) -> torch.device | None:
        if not self.is_raw:
            return None
        return next((v.device for v in distribution_params(self.spec).values()), None)

    def stage_to(self, move: Move) -> None:
        if self.is_raw:
            move.set(self, spec=_move(self.spec, move))

    # --------------------------------------------------------------------------- save / load
    def get_config(self) -> dict[str, Any]:
        d = self.spec
        if not self.is_raw or not isinstance(d, tdist.Distribution) or type(d).__name__ not in (
                dist.__all__) or isinstance(d, (tdist.TransformedDistribution, tdist.Independent)):
            raise NotImplementedError(
                f"node {self.node!r}: a Pyro callable or composite distribution is code and is not "
                "saved; pass it again to cd.load(path, mechanisms={...})")
        return {"family": type(d).__name__, "params": sorted(distribution_params(d))}

    def state_tensors(self) -> dict[str, Tensor]:
        if not self.is_raw or isinstance(self.spec, (tdist.TransformedDistribution, tdist.Independent)):
            return {}
        return {k: v.detach() for k, v in distribution_params(self.spec).items()}

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, Tensor]) -> "PyroMechanism":
        family = config.get("family")
        family_cls = _family(family)
        params = config.get("params")
        if not isinstance(params, list) or sorted(params) != sorted(tensors):
            raise SerializationError(f"{family}: field params {params!r} differs from the saved tensors {sorted(tensors)}")
        bad = [k for k, v in tensors.items() if not v.is_floating_point()]
        if bad:
            raise SerializationError(f"{family}: parameter(s) {bad} are not floating tensors")
        family_cls(**tensors, validate_args=True)  # raises ValueError naming a parameter off its constraint
        return cls(family_cls(**tensors))

    def __repr__(self) -> str:
        if self.is_raw:
            return f"PyroMechanism({self.spec})"
        return f"PyroMechanism({getattr(self.spec, '__name__', 'callable')}({', '.join(self.parameter_names() or [])}))"


@MECHANISMS.register("normal")
class NormalMechanism(PyroMechanism):
    """A fixed ``Normal(loc, scale)`` root (the spec name ``normal``)."""

    Config = NormalConfig

    @classmethod
    def from_config(cls, config: NormalConfig) -> "NormalMechanism":
        return cls(config)

    def __init__(self, config: NormalConfig | None = None) -> None:
        self.config = config or NormalConfig()
        super().__init__(dist.Normal(self.config.loc, self.config.scale))

    def check_binding(self, node: str, parents: tuple[str, ...]) -> None:
        if parents:
            raise GraphError(f"node {node!r}: a 'normal' mechanism is a root with options loc and scale, "
                             f"but the node has parents {list(parents)}")
        super().check_binding(node, parents)

    def get_config(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, Tensor]) -> "NormalMechanism":
        m = cls(NormalConfig.model_validate(config))
        device = next(iter(tensors.values())).device if tensors else None
        return m.to(device) if device is not None else m

    def __repr__(self) -> str:
        return f"NormalMechanism(loc={self.config.loc}, scale={self.config.scale})"
