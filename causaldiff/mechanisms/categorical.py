"""A learnable categorical root: class frequencies fitted from data, Gumbel-max noise.

Counterfactual abduction is the posterior Gumbel sample of the Gumbel-max SCM
(Oberst & Sontag 2019), as for Pyro ``Categorical`` nodes.
"""

from __future__ import annotations

from typing import Any

import pyro.distributions as dist
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor
from torch.distributions import constraints

from ..errors import DataError, GraphError, NotFittedError, SerializationError
from ..limits import MAX_CLASSES
from ..validation import check_labels
from ..registry import MECHANISMS
from .base import Abduction, ConditionalMethods, Mechanism, Parents
from .codecs import DistributionConditional
from .moves import Move


class CategoricalConfig(BaseModel):
    """Options of :class:`CategoricalMechanism`."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    num_classes: int | None = Field(None, ge=2, le=MAX_CLASSES)
    smoothing: float = Field(1.0, ge=0.0)


class CategoricalNode(ConditionalMethods):
    """What a categorical node answers (Gumbel-max noise, long values in ``0 .. num_classes - 1``),
    from :meth:`categorical` (its fitted ``Categorical`` for ``n`` rows). Mix in before :class:`Mechanism`."""

    num_classes: int | None
    is_fitted: bool

    def categorical(self, parents: Parents, n: int) -> dist.Categorical:
        raise NotImplementedError

    def abduction(self, parents: Parents | None = None) -> Abduction:
        return Abduction.STOCHASTIC

    def given(self, parents: Parents, n: int) -> DistributionConditional:
        """The fitted ``Categorical`` for ``n`` rows and its Gumbel-max codec, built once."""
        return DistributionConditional(self, parents, n, self.categorical(parents, n))

    def _conditional(self, parents: Parents | None, n: int | None = None) -> DistributionConditional:
        return self.given(parents or {}, 1 if n is None else n)

    def event_shape(self, parents: Parents, n: int) -> tuple[int, ...]:
        return ()

    def support(self, parents: Parents, n: int) -> Any:
        return constraints.integer_interval(0, self.num_classes - 1) if self.is_fitted else None

    def value_dtype(self, parents: Parents, n: int) -> torch.dtype:
        return torch.long

    def pyro_distribution(self, parents: Parents, n: int) -> Any:
        return self.categorical(parents, n)


@MECHANISMS.register("categorical")
class CategoricalMechanism(CategoricalNode, Mechanism):
    """``x ~ Categorical(p)`` on a root node, ``p`` = smoothed class frequencies of the data."""

    learnable = True
    Config = CategoricalConfig

    @classmethod
    def from_config(cls, config: CategoricalConfig) -> "CategoricalMechanism":
        return cls(config.num_classes, config.smoothing)

    def __init__(self, num_classes: int | None = None, smoothing: float = 1.0):
        super().__init__()
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.num_classes, self.smoothing = num_classes, float(smoothing)
        self.logits: Tensor | None = None

    def check_binding(self, node: str, parents: tuple[str, ...]) -> None:
        """Refuses a node with parents (bound before any fit), pointing at ``ClassifierMechanism``."""
        if parents:
            raise GraphError(f"node {node!r}: CategoricalMechanism is for root nodes, got parents {list(parents)}; "
                             "bind ClassifierMechanism (registered as 'classifier') to a categorical or binary "
                             "node with parents")
        super().check_binding(node, parents)

    def fit(self, x: Tensor, parents: Parents, *, parent_order: tuple[str, ...], desc: str = "") -> None:
        if parent_order:
            raise DataError(f"node {self.node!r}: CategoricalMechanism is for root nodes, got parents "
                            f"{list(parent_order)}; use ClassifierMechanism")
        if x.is_floating_point() or x.dim() != 1 or (x < 0).any():
            raise DataError(f"node {self.node!r}: categorical values must be non-negative integers of shape (n,)")
        if self.num_classes is None:  # inferred: bounded by the rows before bincount allocates
            check_labels(f"node {self.node!r}", x, x.shape[0])
        k = self.num_classes or int(x.max()) + 1
        if int(x.max()) >= k:
            raise DataError(f"node {self.node!r}: value {int(x.max())} >= num_classes {k}")
        counts = torch.bincount(x.long(), minlength=k).double() + self.smoothing
        self.num_classes = k
        self.logits = (counts / counts.sum()).log().to(torch.get_default_dtype()).to(x.device)
        self.fitted_parents = ()

    def categorical(self, parents: Parents, n: int) -> dist.Categorical:
        if self.logits is None:
            raise NotFittedError(f"node {self.node!r}: CategoricalMechanism is not fitted; call scm.fit(data)")
        return dist.Categorical(logits=self.logits).expand((n,))

    def stage_to(self, move: Move) -> None:
        if self.logits is not None:
            move.set(self, logits=move.tensor(self.logits))

    def get_config(self) -> dict[str, Any]:
        if self.logits is None:
            raise NotFittedError(f"node {self.node!r}: fit before saving")
        return {"num_classes": self.num_classes, "smoothing": self.smoothing}

    def state_tensors(self) -> dict[str, Tensor]:
        return {"logits": self.logits} if self.logits is not None else {}

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, Tensor]) -> "CategoricalMechanism":
        cfg = CategoricalConfig.model_validate({"smoothing": 1.0, **config})
        if cfg.num_classes is None:
            raise SerializationError("field num_classes is missing")
        m = cls(cfg.num_classes, cfg.smoothing)
        logits = tensors.get("logits")
        if logits is None or set(tensors) != {"logits"}:
            raise SerializationError(f"expected one tensor 'logits', got {sorted(tensors)}")
        if not logits.is_floating_point() or tuple(logits.shape) != (m.num_classes,) or bool(logits.isnan().any()):
            raise SerializationError(f"logits are {logits.dtype} {tuple(logits.shape)}; expected floating "
                                     f"({m.num_classes},) without NaN")
        m.logits, m.fitted_parents = logits, ()
        return m

    def __repr__(self) -> str:
        return f"CategoricalMechanism(num_classes={self.num_classes})"
