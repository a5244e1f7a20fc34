"""A learnable categorical node with parents: ``x ~ Categorical(softmax(f(pa)))``, ``f`` a small MLP
(``hidden=()``: multinomial logistic regression) over the :class:`~.codecs.ParentCodec` encoding,
fitted by cross-entropy. Noise: the Gumbel-max SCM (Oberst & Sontag 2019), ``x = argmax(f(pa) + g)``;
abduction draws ``g`` from its posterior given the observed class.
"""

from __future__ import annotations

from typing import Any

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from ..errors import DataError, NotFittedError, SerializationError
from ..limits import MAX_CLASSES, MAX_DEPTH, Batch, Steps, Width
from ..registry import MECHANISMS
from ..training import TrainConfig, fit_model
from ..validation import check_labels
from .base import Mechanism, Parents
from .categorical import CategoricalNode
from .codecs import ParentCodec
from .moves import Move
from .neural import mlp
from .saved import check_state, group_tensors


class ClassifierConfig(BaseModel):
    """Hyperparameters of :class:`ClassifierMechanism`."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    #: classes (``None``: ``max(2, max + 1)`` of the data)
    num_classes: int | None = Field(None, ge=2, le=MAX_CLASSES)
    #: hidden widths of the MLP; ``()``: logistic regression
    hidden: tuple[Width, ...] = Field((32,), max_length=MAX_DEPTH)
    steps: Steps = 1000
    batch_size: Batch = 256
    lr: float = Field(1e-2, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    seed: int = 0


@MECHANISMS.register("classifier")
class ClassifierMechanism(CategoricalNode, Mechanism):
    """A classifier of the node's class given its parents, with Gumbel-max noise (module docstring)."""

    learnable = True
    Config = ClassifierConfig

    @classmethod
    def quick(cls, config: ClassifierConfig) -> ClassifierConfig:
        """100 training steps."""
        return ClassifierConfig.model_validate({**config.model_dump(), "steps": 100})

    def __init__(self, config: ClassifierConfig | None = None, **overrides: Any):
        super().__init__()
        base = config or ClassifierConfig()
        self.config = ClassifierConfig.model_validate({**base.model_dump(), **overrides}) if overrides else base
        self.net: nn.Module | None = None
        self.parent_codec: ParentCodec | None = None
        self.num_classes: int | None = None

    # --------------------------------------------------------------------------- fitting
    def fit(self, x: Tensor, parents: Parents, *, parent_order: tuple[str, ...], desc: str = "") -> None:
        cfg, n, what = self.config, x.shape[0], f"node {self.node!r}"
        k = max(2, check_labels(what, x, n))
        if cfg.num_classes is not None:
            if k > cfg.num_classes:
                raise DataError(f"{what}: value {k - 1} >= num_classes {cfg.num_classes}")
            k = cfg.num_classes
        dtype = torch.get_default_dtype()
        codec = ParentCodec.fit(parents, parent_order, n, node=self.node, standardize=True,
                                device=x.device, dtype=dtype)
        features = codec.encode(parents, n, dtype=dtype, device=x.device, node=self.node)[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            net = mlp(codec.width, k, cfg.hidden).to(device=x.device, dtype=dtype)
        target = x.long()

        def loss(model: nn.Module, idx: Tensor, _: torch.Generator) -> Tensor:
            return F.cross_entropy(model(features[idx]), target[idx])

        train = TrainConfig(steps=cfg.steps, batch_size=min(cfg.batch_size, n), lr=cfg.lr,
                            weight_decay=cfg.weight_decay, lr_schedule="cosine", grad_clip=None,
                            ema_decay=None, seed=cfg.seed, bf16=False)
        fit_model(net, loss, n, train, generator=torch.Generator(device=x.device).manual_seed(cfg.seed),
                  desc=desc or "fit classifier")
        self.net, self.parent_codec, self.num_classes = net.eval(), codec, k
        self.fitted_parents = tuple(parent_order)

    # --------------------------------------------------------------------------- the contract
    def logits(self, parents: Parents, n: int) -> Tensor:
        """``f(pa)``: unnormalised log-probabilities ``(n, num_classes)``."""
        if self.net is None or self.parent_codec is None:
            raise NotFittedError(f"node {self.node!r}: ClassifierMechanism is not fitted; call scm.fit(data)")
        ref = next(self.net.parameters())
        features = self.parent_codec.encode(parents, n, dtype=ref.dtype, device=ref.device, node=self.node)[0]
        return self.net(features)

    def categorical(self, parents: Parents, n: int) -> dist.Categorical:
        return dist.Categorical(logits=self.logits(parents, n))

    def stage_to(self, move: Move) -> None:
        move.module(self.net)
        if self.parent_codec is not None:
            stats = move.tensors(self.parent_codec.stats)
            move.set(self.parent_codec, stats=stats)

    # --------------------------------------------------------------------------- save / load
    def get_config(self) -> dict[str, Any]:
        if self.net is None or self.parent_codec is None:
            raise NotFittedError(f"node {self.node!r}: fit before saving")
        return {"config": self.config.model_dump(mode="json"), "num_classes": self.num_classes,
                "parent_codec": self.parent_codec.get_config(), "parents": list(self.fitted_parents)}

    def state_tensors(self) -> dict[str, Tensor]:
        if self.net is None or self.parent_codec is None:
            return {}
        return {**{f"net.{k}": v for k, v in self.net.state_dict().items()},
                **{f"codec.{k}": v for k, v in self.parent_codec.state_tensors().items()}}

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, Tensor]) -> "ClassifierMechanism":
        """The mechanism saved as ``(get_config(), state_tensors())``, checked before it is built."""
        try:
            m = cls(ClassifierConfig.model_validate(config["config"]))
            k, order = int(config["num_classes"]), tuple(config["parents"])
            codec_config = config["parent_codec"]
        except (KeyError, TypeError, ValueError) as e:
            raise SerializationError(f"not a saved ClassifierMechanism: {e}") from e
        if not 2 <= k <= MAX_CLASSES:
            raise SerializationError(f"field num_classes is {k}; expected 2 .. {MAX_CLASSES}")
        groups = group_tensors(tensors, ("net", "codec"), "ClassifierMechanism")
        codec = ParentCodec.from_saved(codec_config, groups["codec"])
        if codec.order != order:
            raise SerializationError(f"field parent_codec orders parents {list(codec.order)}, not {list(order)}")
        check_state(lambda: mlp(codec.width, k, m.config.hidden), groups["net"], "saved network")
        dtype = next(iter(groups["net"].values())).dtype
        m.net = mlp(codec.width, k, m.config.hidden).to(dtype).eval()
        m.net.load_state_dict(groups["net"])
        m.parent_codec, m.num_classes, m.fitted_parents = codec, k, order
        return m

    def __repr__(self) -> str:
        state = f"{self.num_classes} classes" if self.net is not None else "unfitted"
        return f"ClassifierMechanism(hidden={self.config.hidden}, {state})"


__all__ = ["ClassifierConfig", "ClassifierMechanism"]
