"""Codecs: how values cross between the world and a mechanism, in one place.

* Noise codecs (:func:`codec_for`) map a batched distribution's noise to values and back:
  ``x = loc + scale * u``; ``x = T(base(u))``; ``x = icdf(u)``, ``u ~ U(0, 1)``; Gumbel-max for
  Categorical / Bernoulli (Oberst & Sontag 2019). :class:`DistributionConditional` serves a node's
  query from one distribution and its codec, built once per parent set.
* :class:`ParentCodec`: a learnable mechanism's parents as network input, in the order recorded at
  fit; integer parents one-hot with ``max(2, max + 1)`` classes, continuous ones flattened (and
  standardised when asked).
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Literal

import pyro.distributions as dist
import torch
import torch.distributions as tdist
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor

from ..errors import AbductionError, DataError, SerializationError
from ..validation import check_labels
from ..rng import opaque_draw
from .base import Abduction, Conditional, Mechanism, Parents
from .saved import check_statistics

#: location-scale families: ``x = loc + scale * u`` with ``u`` from the family's standard member (support: the reals)
LOC_SCALE = (tdist.Normal, tdist.Laplace, dist.Logistic, tdist.StudentT, tdist.Cauchy, tdist.Gumbel)


# --------------------------------------------------------------------------------- noise codecs
Generator = torch.Generator | None


def uniform(shape: Any, gen: Generator, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``U(0, 1)`` draws from ``gen``, kept off 0 (an inverse CDF maps 0 to minus infinity)."""
    return torch.rand(shape, generator=gen, dtype=dtype, device=device).clamp_min(torch.finfo(dtype).tiny)


def draw(d: tdist.Distribution, gen: Generator) -> Tensor:
    """A draw of ``d`` from ``gen``: normals by ``randn``, transformed distributions through their
    transforms, other continuous univariate families by their inverse CDF (exact); only a family
    with none of these (say StudentT) is drawn by its own ``sample`` (:func:`~causaldiff.rng.opaque_draw`)."""
    if isinstance(d, tdist.Independent):
        return draw(d.base_dist, gen)
    shape = d.batch_shape + d.event_shape
    if type(d) in (tdist.Normal, dist.Normal):
        return d.loc + d.scale * torch.randn(shape, generator=gen, dtype=d.loc.dtype, device=d.loc.device)
    if isinstance(d, tdist.TransformedDistribution):
        x = draw(d.base_dist, gen)
        for t in d.transforms:
            x = t(x)
        return x
    if d.event_shape == () and _overrides(d, "icdf") and not d.support.is_discrete:
        ref = d.mean
        return d.icdf(uniform(shape, gen, ref.dtype, ref.device))
    if gen is None:
        return d.sample()
    return opaque_draw(gen, d.sample)


class _Codec:
    """How one distribution maps noise to values and back (noise drawn from a generator)."""

    capability = Abduction.EXACT
    reason = ""

    def sample(self, gen: Generator = None) -> Tensor:
        raise NotImplementedError

    def forward(self, u: Tensor) -> Tensor:
        raise NotImplementedError

    def abduct(self, x: Tensor) -> Tensor:
        raise NotImplementedError


class _LocScale(_Codec):
    def __init__(self, d: tdist.Distribution):
        self.family, self.df = type(d), getattr(d, "df", None)
        self.loc, self.scale = d.loc, d.scale

    def sample(self, gen: Generator = None) -> Tensor:
        """A draw of the standard member of the family (built only when noise is sampled)."""
        zero = torch.zeros((), dtype=self.loc.dtype, device=self.loc.device)
        one = torch.ones_like(zero)
        standard = tdist.StudentT(self.df, zero, one) if issubclass(self.family, tdist.StudentT) else self.family(zero, one)
        return draw(standard.expand(self.loc.shape), gen)

    def forward(self, u: Tensor) -> Tensor:
        return self.loc + self.scale * u

    def abduct(self, x: Tensor) -> Tensor:
        return (x - self.loc) / self.scale


class _MultivariateNormal(_Codec):
    def __init__(self, d: tdist.MultivariateNormal):
        self.loc, self.tril = d.loc, d.scale_tril
        self.shape = d.batch_shape + d.event_shape

    def sample(self, gen: Generator = None) -> Tensor:
        return torch.randn(self.shape, generator=gen, dtype=self.loc.dtype, device=self.loc.device)

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

    def sample(self, gen: Generator = None) -> Tensor:
        return self.base.sample(gen)

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

    def sample(self, gen: Generator = None) -> Tensor:
        return torch.rand(self.shape, generator=gen, dtype=self.dtype, device=self.device)

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

    def sample(self, gen: Generator = None) -> Tensor:
        return -torch.log(-torch.log(uniform(self.logits.shape, gen, self.logits.dtype, self.logits.device)))

    def forward(self, g: Tensor) -> Tensor:
        k = torch.argmax(self.logits + g, dim=-1)
        return k.to(self.logits.dtype) if self.binary else k

    def abduct(self, x: Tensor, gen: Generator = None) -> Tensor:
        """Posterior sample of ``g`` given ``argmax(logits + g) == x`` (top-down algorithm)."""
        k = x.long().unsqueeze(-1)
        logits = self.logits.expand(k.shape[:-1] + self.logits.shape[-1:])
        if not torch.isfinite(logits.gather(-1, k)).all():
            raise AbductionError("the observed category has probability zero under its mechanism")
        gumbel = self.sample(gen).expand_as(logits)
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

    def sample(self, gen: Generator = None) -> Tensor:
        return draw(self.d, gen)

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
    if isinstance(d, LOC_SCALE):
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


def distribution_params(d: tdist.Distribution) -> dict[str, Tensor]:
    """The constructor parameters of a simple distribution (logits preferred over probs)."""
    names = [k for k in d.arg_constraints if k in d.__dict__]
    if "logits" in names and "probs" in names:
        names.remove("probs")
    return {k: d.__dict__[k] for k in names}


def value_dtype_of(d: tdist.Distribution) -> torch.dtype | None:
    """The dtype of a distribution's values: ``torch.long`` for Categorical, else the floating
    dtype of its parameters (if it has one)."""
    if isinstance(d, tdist.Categorical):
        return torch.long
    while isinstance(d, (tdist.Independent, tdist.TransformedDistribution)):
        d = d.base_dist
    return next((v.dtype for v in distribution_params(d).values() if v.is_floating_point()), None)


class DistributionConditional(Conditional):
    """A node given its parents, served from one distribution (batch ``(n, ...)``) and its noise
    codec, each built once: the callable of a Pyro node runs once per query, not once per call."""

    def __init__(self, mechanism: Mechanism, parents: Parents, n: int, distribution: tdist.Distribution):
        super().__init__(mechanism, parents, n)
        self.distribution = distribution

    @cached_property
    def codec(self) -> _Codec:
        return codec_for(self.distribution)

    @property
    def abduction(self) -> Abduction:
        return self.codec.capability

    def why_not_abductable(self) -> str:
        return self.codec.reason

    def sample_noise(self, generator: Generator = None) -> Tensor:
        return self.codec.sample(generator)

    def forward(self, noise: Tensor) -> Tensor:
        return self.codec.forward(noise)

    def abduct(self, x: Tensor, generator: Generator = None) -> Tensor:
        if self.codec.capability is Abduction.IMPOSSIBLE:
            raise AbductionError(f"node {self.mechanism.node!r} cannot be abducted: {self.codec.reason}")
        if self.codec.capability is Abduction.STOCHASTIC:
            return self.codec.abduct(x, generator)
        return self.codec.abduct(x)

    def event_shape(self) -> tuple[int, ...]:
        d = self.distribution
        return tuple(d.batch_shape[1:] + d.event_shape)

    def support(self) -> Any:
        return self.distribution.support

    def value_dtype(self) -> torch.dtype | None:
        return value_dtype_of(self.distribution)


# --------------------------------------------------------------------------------- parent codec
class ParentSpec(BaseModel):
    """How one parent enters a network (recorded at fit)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    kind: Literal["categorical", "continuous"]
    #: the parent's per-row shape (``()`` for scalars and categorical parents)
    shape: tuple[int, ...]
    #: categorical: ``max(2, max + 1)`` of the values seen at fit
    num_classes: int | None = Field(None, ge=2)

    @property
    def width(self) -> int:
        """Columns it takes in the encoded input: one-hot classes, or the flattened value."""
        return self.num_classes if self.kind == "categorical" else math.prod(self.shape)


class ParentCodec:
    """Parents -> network input in the order recorded at fit: ``encode`` gives the features ``(n,
    width)`` and each parent's target for an anti-causal predictor (class index or encoded value)."""

    def __init__(self, parents: tuple[ParentSpec, ...], *, standardize: bool = False,
                 stats: dict[str, Tensor] | None = None) -> None:
        self.parents, self.standardize = tuple(parents), bool(standardize)
        self.stats = dict(stats or {})
        if self.standardize:
            needed = {f"{p.name}.{s}" for p in self.parents if p.kind == "continuous" for s in ("mean", "std")}
            missing = sorted(needed - set(self.stats))
            if missing:
                raise SerializationError(f"parent codec lacks statistics {missing}")

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parents)

    @property
    def width(self) -> int:
        return sum(p.width for p in self.parents)

    @classmethod
    def fit(cls, parents: Parents, order: tuple[str, ...], n: int, *, node: str = "?",
            standardize: bool = False, device: torch.device | str | None = None,
            dtype: torch.dtype = torch.float32) -> "ParentCodec":
        """Record each parent's kind, shape and classes (and statistics if ``standardize``)."""
        order = tuple(order)
        if set(parents) != set(order):
            raise DataError(f"node {node!r}: parents {sorted(parents)} differ from parent_order {list(order)}")
        specs, stats = [], {}
        for name in order:
            v = parents[name]
            if v.shape[0] != n:
                raise DataError(f"node {node!r}: parent {name!r} has {v.shape[0]} rows, the node {n}")
            if v.is_floating_point():
                if not torch.isfinite(v).all():
                    raise DataError(f"node {node!r}: parent {name!r} contains NaN or Inf")
                specs.append(ParentSpec(name=name, kind="continuous", shape=tuple(v.shape[1:])))
                if standardize:
                    flat = v.to(device=device or v.device, dtype=dtype).reshape(n, -1)
                    stats[f"{name}.mean"], stats[f"{name}.std"] = flat.mean(0), flat.std(0).clamp_min(1e-6)
                continue
            if v.dim() != 1 or bool((v < 0).any()):
                raise DataError(f"node {node!r}: categorical parent {name!r} needs non-negative integers "
                                f"of shape (n,), got {tuple(v.shape)}")
            classes = check_labels(f"node {node!r}: categorical parent {name!r}", v, n)  # before any one-hot
            specs.append(ParentSpec(name=name, kind="categorical", shape=(), num_classes=max(2, classes)))
        return cls(tuple(specs), standardize=standardize, stats=stats)

    def encode(self, parents: Parents, n: int, *, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None, node: str = "?") -> tuple[Tensor, tuple[Tensor, ...]]:
        """``(features (n, width), targets per parent)``; parent values are checked against fit."""
        missing = [p.name for p in self.parents if p.name not in parents]
        if missing:
            raise DataError(f"node {node!r}: missing parent value(s) {missing}")
        cols, targets = [], []
        for p in self.parents:
            v = parents[p.name].to(device) if device is not None else parents[p.name]
            if v.shape[0] != n or tuple(v.shape[1:]) != p.shape:
                raise DataError(f"node {node!r}: parent {p.name!r} has shape {tuple(v.shape)}, "
                                f"expected ({n}, *{p.shape})")
            if p.kind == "categorical":
                col, target = self._one_hot(p, v, dtype, node)
            else:
                col = v.reshape(n, -1).to(dtype)
                if self.standardize:
                    col = (col - self.stats[f"{p.name}.mean"]) / self.stats[f"{p.name}.std"]
                target = col
            cols.append(col)
            targets.append(target)
        if not cols:
            return torch.zeros(n, 0, dtype=dtype, device=device), ()
        return torch.cat(cols, dim=1), tuple(targets)

    @staticmethod
    def _one_hot(p: ParentSpec, v: Tensor, dtype: torch.dtype, node: str) -> tuple[Tensor, Tensor]:
        if v.is_floating_point():
            raise DataError(f"node {node!r}: categorical parent {p.name!r} needs integer values, got {v.dtype}")
        idx = v.long()
        if bool(((idx < 0) | (idx >= p.num_classes)).any()):  # one check per query
            raise DataError(f"node {node!r}: parent {p.name!r} takes categories outside 0..{p.num_classes - 1}, "
                            "the ones seen when the mechanism was fitted")
        return F.one_hot(idx, p.num_classes).to(dtype), idx

    def to(self, device: torch.device | str) -> "ParentCodec":
        self.stats = {k: v.to(device) for k, v in self.stats.items()}
        return self

    # ----------------------------------------------------------------------------- save / load
    def get_config(self) -> dict[str, Any]:
        return {"parents": [p.model_dump(mode="json") for p in self.parents], "standardize": self.standardize}

    def state_tensors(self) -> dict[str, Tensor]:
        return dict(self.stats)

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, Tensor]) -> "ParentCodec":
        try:
            specs = tuple(ParentSpec.model_validate(p) for p in config["parents"])
            standardize = bool(config["standardize"])
        except (KeyError, TypeError, ValidationError) as e:
            raise SerializationError(f"not a saved parent codec: {e}") from e
        shapes = {f"{p.name}.{s}": (p.width,) for p in specs if standardize and p.kind == "continuous"
                  for s in ("mean", "std")}
        check_statistics(tensors, shapes, "saved parent statistics", positive=[k for k in shapes if k.endswith(".std")])
        return cls(specs, standardize=standardize, stats=tensors)

    def __repr__(self) -> str:
        return f"ParentCodec({', '.join(f'{p.name}:{p.kind}' for p in self.parents)})"
