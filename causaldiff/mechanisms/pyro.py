"""Pyro mechanisms: a raw distribution on a root, or a callable ``(**parents) -> Distribution``.

The exogenous noise of a node depends on the family of the distribution it yields:

* location-scale families (Normal, Laplace, Logistic, StudentT with fixed df, Cauchy, Gumbel,
  MultivariateNormal): ``x = loc + scale * u`` with ``u`` from the standard member; exact.
* ``TransformedDistribution`` (flows, conditional flows once conditioned, LogNormal, ...):
  ``x = T(base(u))``; exact when every transform is bijective (``u = base^{-1}(T^{-1}(x))``).
* other continuous univariate families with ``cdf`` and ``icdf``: ``u ~ U(0, 1)``,
  ``x = icdf(u)``; exact.
* Categorical and Bernoulli: the Gumbel-max SCM (Oberst & Sontag 2019),
  ``x = argmax_k(logits_k + g_k)``; abduction samples ``g`` from its posterior given ``x``
  (top-down truncated Gumbels), so it is stochastic.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pyro.distributions as dist
import torch
import torch.distributions as tdist
from torch import Tensor

from ..errors import AbductionError, GraphError
from ..registry import MECHANISMS
from .base import Abduction, Conditional, Mechanism, Parents

_LOC_SCALE = (tdist.Normal, tdist.Laplace, dist.Logistic, tdist.StudentT, tdist.Cauchy, tdist.Gumbel)


# --------------------------------------------------------------------------------- noise codecs
class _Codec:
    """How one distribution maps noise to values and back."""

    capability = Abduction.EXACT
    reason = ""

    def sample(self) -> Tensor:
        raise NotImplementedError

    def forward(self, u: Tensor) -> Tensor:
        raise NotImplementedError

    def abduct(self, x: Tensor) -> Tensor:
        raise NotImplementedError


class _LocScale(_Codec):
    def __init__(self, d: tdist.Distribution):
        self.d, self.loc, self.scale = d, d.loc, d.scale

    def sample(self) -> Tensor:
        d = self.d
        zero = torch.zeros((), dtype=self.loc.dtype, device=self.loc.device)
        one = torch.ones_like(zero)
        standard = tdist.StudentT(d.df, zero, one) if isinstance(d, tdist.StudentT) else type(d)(zero, one)
        return standard.expand(d.batch_shape).sample()

    def forward(self, u: Tensor) -> Tensor:
        return self.loc + self.scale * u

    def abduct(self, x: Tensor) -> Tensor:
        return (x - self.loc) / self.scale


class _MultivariateNormal(_Codec):
    def __init__(self, d: tdist.MultivariateNormal):
        self.loc, self.tril = d.loc, d.scale_tril
        self.shape = d.batch_shape + d.event_shape

    def sample(self) -> Tensor:
        return torch.randn(self.shape, dtype=self.loc.dtype, device=self.loc.device)

    def forward(self, u: Tensor) -> Tensor:
        return self.loc + (self.tril @ u.unsqueeze(-1)).squeeze(-1)

    def abduct(self, x: Tensor) -> Tensor:
        diff = (x - self.loc).unsqueeze(-1)
        tril = self.tril.expand(diff.shape[:-2] + self.tril.shape[-2:])
        return torch.linalg.solve_triangular(tril, diff, upper=False).squeeze(-1)


class _Transformed(_Codec):
    def __init__(self, d: tdist.TransformedDistribution):
        self.base = codec_for(d.base_dist)
        self.transforms = list(d.transforms)
        bad = [t for t in self.transforms if not t.bijective]
        if self.base.capability is Abduction.IMPOSSIBLE:
            self.capability, self.reason = Abduction.IMPOSSIBLE, self.base.reason
        elif bad:
            self.capability = Abduction.IMPOSSIBLE
            self.reason = f"transform {type(bad[0]).__name__} is not bijective"
        else:
            self.capability = self.base.capability

    def sample(self) -> Tensor:
        return self.base.sample()

    def forward(self, u: Tensor) -> Tensor:
        x = self.base.forward(u)
        for t in self.transforms:
            x = t(x)
        return x

    def abduct(self, x: Tensor) -> Tensor:
        for t in reversed(self.transforms):
            x = t.inv(x)
        return self.base.abduct(x)


class _CdfIcdf(_Codec):
    def __init__(self, d: tdist.Distribution):
        self.d = d
        ref = d.mean
        self.shape, self.dtype, self.device = d.batch_shape, ref.dtype, ref.device

    def sample(self) -> Tensor:
        return torch.rand(self.shape, dtype=self.dtype, device=self.device)

    def forward(self, u: Tensor) -> Tensor:
        return self.d.icdf(u)

    def abduct(self, x: Tensor) -> Tensor:
        return self.d.cdf(x)


class _GumbelMax(_Codec):
    """Gumbel-max SCM: ``x = argmax(logits + g)``, ``g ~ Gumbel(0, 1)`` i.i.d. per category."""

    capability = Abduction.STOCHASTIC

    def __init__(self, d: tdist.Distribution):
        if isinstance(d, tdist.Bernoulli):
            self.binary = True
            self.logits = torch.stack([torch.zeros_like(d.logits), d.logits], dim=-1)
        else:
            self.binary = False
            self.logits = d.logits
        self.logits = self.logits - self.logits.logsumexp(-1, keepdim=True)

    def sample(self) -> Tensor:
        u = torch.rand_like(self.logits).clamp_min(torch.finfo(self.logits.dtype).tiny)
        return -torch.log(-torch.log(u))

    def forward(self, g: Tensor) -> Tensor:
        k = torch.argmax(self.logits + g, dim=-1)
        return k.to(self.logits.dtype) if self.binary else k

    def abduct(self, x: Tensor) -> Tensor:
        """Posterior sample of ``g`` given ``argmax(logits + g) == x`` (top-down algorithm)."""
        k = x.long().unsqueeze(-1)
        logits = self.logits.expand(k.shape[:-1] + self.logits.shape[-1:])
        if not torch.isfinite(logits.gather(-1, k)).all():
            raise AbductionError("the observed category has probability zero under its mechanism")
        gumbel = self.sample().expand_as(logits)
        # The maximum of (logits + g) is Gumbel(logsumexp(logits)) = Gumbel(0) here, attained at x.
        top = gumbel.gather(-1, k)
        # Every other coordinate is a Gumbel(logits_j) truncated below the maximum.
        others = logits + gumbel
        truncated = -torch.log(torch.exp(-top) + torch.exp(-others))
        values = truncated.scatter(-1, k, top)
        # Impossible categories (logit -inf) never win whatever their noise: keep the prior draw.
        return torch.where(torch.isfinite(logits), values - logits, gumbel)


class _Impossible(_Codec):
    capability = Abduction.IMPOSSIBLE

    def __init__(self, d: tdist.Distribution, reason: str):
        self.d, self.reason = d, reason

    def sample(self) -> Tensor:
        return self.d.sample()

    def forward(self, u: Tensor) -> Tensor:
        return u  # the noise *is* the value: sampling works, abduction does not

    def abduct(self, x: Tensor) -> Tensor:
        raise AbductionError(self.reason)


def _overrides(d: tdist.Distribution, method: str) -> bool:
    return getattr(type(d), method) is not getattr(tdist.Distribution, method)


def codec_for(d: tdist.Distribution) -> _Codec:
    """The noise codec of a (batched) distribution."""
    if isinstance(d, tdist.Independent):
        return codec_for(d.base_dist)
    if isinstance(d, _LOC_SCALE):
        return _LocScale(d)
    if isinstance(d, tdist.MultivariateNormal):
        return _MultivariateNormal(d)
    if isinstance(d, tdist.TransformedDistribution):
        codec = _Transformed(d)
        # e.g. HalfNormal = |Normal|: not invertible through its transforms, but through its own cdf/icdf
        own = all(getattr(type(d), m) is not getattr(tdist.TransformedDistribution, m) for m in ("cdf", "icdf"))
        if codec.capability is Abduction.IMPOSSIBLE and own and d.event_shape == () and not d.support.is_discrete:
            return _CdfIcdf(d)
        return codec
    if isinstance(d, (tdist.Categorical, tdist.Bernoulli)) and not isinstance(
            d, tdist.OneHotCategorical):
        return _GumbelMax(d)
    if d.event_shape == () and _overrides(d, "cdf") and _overrides(d, "icdf") and not d.support.is_discrete:
        return _CdfIcdf(d)
    return _Impossible(d, f"{type(d).__name__} is neither location-scale, transformed, "
                          "invertible through cdf/icdf, nor Categorical/Bernoulli")


# --------------------------------------------------------------------------------- moving dists
def _move(d: tdist.Distribution, device: torch.device) -> tdist.Distribution:
    """Rebuild a raw distribution with its parameters on ``device``."""
    if isinstance(d, tdist.Independent):
        return tdist.Independent(_move(d.base_dist, device), d.reinterpreted_batch_ndims)
    if isinstance(d, tdist.TransformedDistribution):
        for t in d.transforms:
            if isinstance(t, torch.nn.Module):
                t.to(device)
        return dist.TransformedDistribution(_move(d.base_dist, device), d.transforms)
    return type(d)(**{k: v.to(device) for k, v in _params(d).items()})


def _float_dtype(d: tdist.Distribution) -> torch.dtype | None:
    """The floating dtype of a distribution's values (that of its parameters), if it has one."""
    while isinstance(d, (tdist.Independent, tdist.TransformedDistribution)):
        d = d.base_dist
    return next((v.dtype for v in _params(d).values() if v.is_floating_point()), None)


def _params(d: tdist.Distribution) -> dict[str, Tensor]:
    """The constructor parameters of a simple distribution (logits preferred over probs)."""
    names = [k for k in d.arg_constraints if k in d.__dict__]
    if "logits" in names and "probs" in names:
        names.remove("probs")
    return {k: d.__dict__[k] for k in names}


def _event_shape(d: tdist.Distribution) -> tuple[int, ...]:
    return tuple((d.batch_shape + d.event_shape)[1:])


def _value_dtype(d: tdist.Distribution) -> torch.dtype | None:
    return torch.long if isinstance(d, tdist.Categorical) else _float_dtype(d)


# --------------------------------------------------------------------------------- the mechanism
@MECHANISMS.register("pyro")
class PyroMechanism(Mechanism):
    """A node bound to a Pyro distribution (root) or a callable of its parents returning one.

    ``node`` and ``parents`` are given by the SCM when it binds the mechanism, which validates
    that a callable's parameter names equal the node's parents.
    """


    def __init__(self, spec: tdist.Distribution | Callable[..., tdist.Distribution]):
        super().__init__()
        if not isinstance(spec, tdist.Distribution) and not callable(spec):
            raise GraphError(f"a Pyro mechanism needs a Distribution or a callable, got {type(spec).__name__}")
        self.spec = spec
        self.node = "?"

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
        """A raw distribution binds a root; a callable's parameter names must be the parents."""
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
        d = self.spec(**parents)
        if not isinstance(d, tdist.Distribution):
            raise GraphError(f"node {self.node!r}: its callable returned {type(d).__name__}, "
                             "not a Distribution")
        if len(d.batch_shape) == 0 or d.batch_shape[0] != n:
            d = d.expand(torch.Size([n]) + d.batch_shape)
        return d

    # --------------------------------------------------------------------------- the contract
    def given(self, parents: Parents, n: int) -> Conditional:
        """The distribution and its codec built once; a subclass that overrides a method of the
        contract gets the plain delegating :class:`Conditional`, so its override is what runs."""
        cls = type(self)
        if all(getattr(cls, m) is getattr(PyroMechanism, m) for m in _CONTRACT):
            return _PyroConditional(self, parents, n)
        return Conditional(self, parents, n)

    def abduction(self, parents: Parents | None = None) -> Abduction:
        return self._codec(parents or {}).capability

    def why_not_abductable(self, parents: Parents | None = None) -> str:
        return self._codec(parents or {}).reason

    def _codec(self, parents: Parents, n: int | None = None) -> _Codec:
        if n is None:
            n = next(iter(parents.values())).shape[0] if parents else 1
        return codec_for(self.distribution(parents, n))

    def sample_noise(self, n: int, parents: Parents) -> Tensor:
        return self._codec(parents, n).sample()

    def forward(self, noise: Tensor, parents: Parents) -> Tensor:
        return self._codec(parents, noise.shape[0]).forward(noise)

    def abduct(self, x: Tensor, parents: Parents) -> Tensor:
        codec = self._codec(parents, x.shape[0])
        if codec.capability is Abduction.IMPOSSIBLE:
            raise AbductionError(f"node {self.node!r}: {codec.reason}")
        return codec.abduct(x)

    def event_shape(self, parents: Parents, n: int) -> tuple[int, ...]:
        return _event_shape(self.distribution(parents, n))

    def support(self, parents: Parents, n: int) -> Any:
        return self.distribution(parents, n).support

    def value_dtype(self, parents: Parents, n: int) -> torch.dtype | None:
        return _value_dtype(self.distribution(parents, n))

    def pyro_distribution(self, parents: Parents, n: int) -> tdist.Distribution:
        d = self.distribution(parents, n)
        extra = len(d.batch_shape) - 1
        return d.to_event(extra) if extra > 0 else d

    def to(self, device: torch.device | str) -> "PyroMechanism":
        if self.is_raw:
            self.spec = _move(self.spec, torch.device(device))
        return self

    # --------------------------------------------------------------------------- save / load
    def get_config(self) -> dict[str, Any]:
        d = self.spec
        if not self.is_raw or not isinstance(d, tdist.Distribution) or type(d).__name__ not in (
                dist.__all__) or isinstance(d, (tdist.TransformedDistribution, tdist.Independent)):
            raise NotImplementedError(
                f"node {self.node!r}: a Pyro callable or composite distribution is code and is not "
                "saved; pass it again to cd.load(path, mechanisms={...})")
        return {"family": type(d).__name__, "params": sorted(_params(d))}

    def state_tensors(self) -> dict[str, Tensor]:
        if not self.is_raw or isinstance(self.spec, (tdist.TransformedDistribution, tdist.Independent)):
            return {}
        return {k: v.detach() for k, v in _params(self.spec).items()}

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, Tensor]) -> "PyroMechanism":
        family = config.get("family")
        if family not in dist.__all__ or not isinstance(getattr(dist, family), type) or not issubclass(
                getattr(dist, family), tdist.Distribution):
            raise ValueError(f"unknown Pyro distribution family {family!r}")
        return cls(getattr(dist, family)(**{k: tensors[k] for k in config["params"]}))

    def __repr__(self) -> str:
        if self.is_raw:
            return f"PyroMechanism({self.spec})"
        return f"PyroMechanism({getattr(self.spec, '__name__', 'callable')}({', '.join(self.parameter_names() or [])}))"


_CONTRACT = ("distribution", "abduction", "why_not_abductable", "sample_noise", "forward", "abduct",
             "event_shape", "support", "value_dtype")


class _PyroConditional(Conditional):
    """A Pyro node given its parents: the distribution and its noise codec are built once."""

    def __init__(self, mechanism: PyroMechanism, parents: Parents, n: int) -> None:
        super().__init__(mechanism, parents, n)
        self._d: tdist.Distribution | None = None
        self._codec: _Codec | None = None

    @property
    def distribution(self) -> tdist.Distribution:
        if self._d is None:
            self._d = self.mechanism.distribution(self.parents, self.n)
        return self._d

    @property
    def codec(self) -> _Codec:
        if self._codec is None:
            self._codec = codec_for(self.distribution)
        return self._codec

    @property
    def abduction(self) -> Abduction:
        return self.codec.capability

    def why_not_abductable(self) -> str:
        return self.codec.reason

    def sample_noise(self) -> Tensor:
        return self.codec.sample()

    def forward(self, noise: Tensor) -> Tensor:
        return self.codec.forward(noise)

    def abduct(self, x: Tensor) -> Tensor:
        if self.codec.capability is Abduction.IMPOSSIBLE:
            raise AbductionError(f"node {self.mechanism.node!r}: {self.codec.reason}")
        return self.codec.abduct(x)

    def event_shape(self) -> tuple[int, ...]:
        return _event_shape(self.distribution)

    def support(self) -> Any:
        return self.distribution.support

    def value_dtype(self) -> torch.dtype | None:
        return _value_dtype(self.distribution)
