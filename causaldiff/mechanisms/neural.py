"""Learnable additive-noise mechanisms: ``x = f(pa) + sigma * u``, ``u ~ N(0, I)``.

``f`` is an MLP (or any ``torch.nn.Module`` mapping the encoded parents to the node's flattened
value), fitted by mean squared error on standardised inputs and outputs; ``sigma`` is the
per-dimension residual standard deviation on held-out rows. Abduction is exact:
``u = (x - f(pa)) / sigma``.
"""

from __future__ import annotations

import copy
import math
from typing import Annotated, Any

import pyro.distributions as dist
import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from torch import Tensor, nn

from ..limits import MAX_DEPTH, Batch, Steps, Width, check_hidden_parameters
from ..errors import NotFittedError, SerializationError
from ..registry import MECHANISMS
from ..training import TrainConfig, fit_model, seeded_module
from .base import Abduction, Mechanism, Parents
from .codecs import ParentCodec
from .moves import Move
from .saved import check_state, check_statistics, group_tensors


class AdditiveNoiseConfig(BaseModel):
    """Hyperparameters of :class:`AdditiveNoiseMechanism`."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    hidden: Annotated[tuple[Width, ...], AfterValidator(check_hidden_parameters)] = Field((64, 64), max_length=MAX_DEPTH)
    steps: Steps = 2000
    batch_size: Batch = 256
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    eval_every: Steps = 100
    seed: int = 0


def mlp(d_in: int, d_out: int, hidden: tuple[int, ...], act: type[nn.Module] = nn.SiLU) -> nn.Sequential:
    """A plain MLP ``d_in -> hidden... -> d_out``."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(d_in, h), act()]
        d_in = h
    layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


@MECHANISMS.register("additive_noise")
class AdditiveNoiseMechanism(Mechanism):
    """An additive Gaussian noise model with a learned mean function (DoWhy-style ANM)."""

    learnable = True
    Config = AdditiveNoiseConfig
    #: version of the saved config (2: the parent codec shared with the diffusion mechanism)
    FORMAT = 2

    @classmethod
    def quick(cls, config: AdditiveNoiseConfig) -> AdditiveNoiseConfig:
        """100 training steps."""
        return AdditiveNoiseConfig.model_validate({**config.model_dump(), "steps": 100})

    def __init__(self, config: AdditiveNoiseConfig | None = None, *, net: nn.Module | None = None,
                 **overrides: Any):
        super().__init__()
        base = config or AdditiveNoiseConfig()
        # validate the overrides themselves: model_copy(update=...) accepts unknown names silently
        self.config = AdditiveNoiseConfig.model_validate({**base.model_dump(), **overrides}) if overrides else base
        self.custom_net = net is not None
        self.net = net
        self.parent_codec: ParentCodec | None = None
        self.shape: tuple[int, ...] | None = None
        self.stats: dict[str, Tensor] = {}

    # --------------------------------------------------------------------------- fitting
    def fit(self, x: Tensor, parents: Parents, *, parent_order: tuple[str, ...], desc: str = "") -> None:
        cfg, n = self.config, x.shape[0]
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        codec = ParentCodec.fit(parents, parent_order, n, node=self.node)
        xin = codec.encode(parents, n, dtype=dtype, device=x.device, node=self.node)[0]
        y = x.reshape(n, -1).to(dtype)
        stats = {"in_mean": xin.mean(0), "in_std": _safe_std(xin), "out_mean": y.mean(0),
                 "out_std": _safe_std(y)}
        zin = (xin - stats["in_mean"]) / stats["in_std"]
        zy = (y - stats["out_mean"]) / stats["out_std"]
        if xin.shape[1] == 0:  # a root: the mean is the sample mean
            net, resid = None, zy
        else:
            if self.custom_net:
                net = self.net
            else:
                net = seeded_module(lambda: mlp(xin.shape[1], y.shape[1], cfg.hidden), cfg.seed, "cpu")
            net = net.to(device=x.device, dtype=dtype)
            resid = self._train(net, zin, zy, gen, desc)
        stats["sigma"] = resid.std(0, unbiased=True).clamp_min(1e-6) if resid.shape[0] > 1 else (
            torch.ones(y.shape[1], dtype=dtype, device=x.device))
        self.net, self.parent_codec, self.stats = net, codec, stats
        self.shape = tuple(x.shape[1:])
        self.fitted_parents = tuple(parent_order)

    def _train(self, net: nn.Module, zin: Tensor, zy: Tensor, gen: torch.Generator, desc: str) -> Tensor:
        """AdamW on MSE with ``CosineAnnealingLR`` through the training loop, keeping the weights best
        on held-out rows; returns the standardised residuals there (all rows if none are held out)."""
        cfg, n = self.config, zin.shape[0]
        perm = torch.randperm(n, generator=gen).to(zin.device)
        n_val = int(n * cfg.val_fraction) if n >= 20 else 0
        val, tr = perm[:n_val], perm[n_val:]
        best: dict[str, Any] = {"loss": math.inf, "state": None}

        def keep_best(step: int, model: nn.Module) -> None:
            if n_val and (step % cfg.eval_every == 0 or step == cfg.steps):
                with torch.no_grad():
                    v = (model(zin[val]) - zy[val]).pow(2).mean().item()
                if v < best["loss"]:
                    best.update(loss=v, state=copy.deepcopy(model.state_dict()))

        def loss(model: nn.Module, idx: Tensor, _: torch.Generator) -> Tensor:
            rows = tr[idx]
            return (model(zin[rows]) - zy[rows]).pow(2).mean()

        train = TrainConfig(steps=cfg.steps, batch_size=min(cfg.batch_size, len(tr)), lr=cfg.lr,
                            weight_decay=cfg.weight_decay, grad_clip=None, ema_decay=None,
                            seed=cfg.seed, bf16=False)
        fit_model(net, loss, len(tr), train, callback=keep_best, generator=gen,
                  scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps),
                  desc=desc or "fit additive noise")
        if best["state"] is not None:
            net.load_state_dict(best["state"])
        rows = val if n_val else tr
        with torch.no_grad():
            return zy[rows] - net(zin[rows])

    # --------------------------------------------------------------------------- the contract
    def _require_fit(self) -> None:
        if self.fitted_parents is None or self.parent_codec is None:
            raise NotFittedError(f"node {self.node!r}: AdditiveNoiseMechanism is not fitted; call scm.fit(data)")

    def _loc_scale(self, parents: Parents, n: int) -> tuple[Tensor, Tensor]:
        self._require_fit()
        s = self.stats
        xin = self.parent_codec.encode(parents, n, dtype=s["out_mean"].dtype, device=s["out_mean"].device,
                                       node=self.node)[0]
        if self.net is None:
            z = torch.zeros(n, s["out_mean"].shape[0], dtype=xin.dtype, device=xin.device)
        else:
            z = self.net((xin - s["in_mean"]) / s["in_std"])
        loc = z * s["out_std"] + s["out_mean"]
        scale = (s["sigma"] * s["out_std"]).expand_as(loc)
        return loc.reshape(n, *self.shape), scale.reshape(n, *self.shape)

    def abduction(self, parents: Parents | None = None) -> Abduction:
        return Abduction.EXACT

    def sample_noise(self, n: int, parents: Parents, generator: torch.Generator | None = None) -> Tensor:
        self._require_fit()
        ref = self.stats["out_mean"]
        return torch.randn((n, *self.shape), generator=generator, dtype=ref.dtype, device=ref.device)

    def forward(self, noise: Tensor, parents: Parents) -> Tensor:
        loc, scale = self._loc_scale(parents, noise.shape[0])
        return loc + scale * noise

    def abduct(self, x: Tensor, parents: Parents, generator: torch.Generator | None = None) -> Tensor:
        loc, scale = self._loc_scale(parents, x.shape[0])
        return (x - loc) / scale

    def event_shape(self, parents: Parents, n: int) -> tuple[int, ...] | None:
        return self.shape

    def value_dtype(self, parents: Parents, n: int) -> torch.dtype | None:
        return self.stats["out_mean"].dtype if self.stats else None

    def pyro_distribution(self, parents: Parents, n: int) -> Any:
        loc, scale = self._loc_scale(parents, n)
        d = dist.Normal(loc, scale)
        return d.to_event(len(self.shape)) if self.shape else d

    def stage_to(self, move: Move) -> None:
        move.module(self.net)
        move.set(self, stats=move.tensors(self.stats))

    # --------------------------------------------------------------------------- save / load
    def get_config(self) -> dict[str, Any]:
        if self.custom_net:
            raise NotImplementedError(
                f"node {self.node!r}: a custom torch module is code and is not saved; "
                "pass the mechanism again to cd.load(path, mechanisms={...})")
        self._require_fit()
        return {"config": self.config.model_dump(mode="json"), "shape": list(self.shape),
                "format": self.FORMAT, "parent_codec": self.parent_codec.get_config(),
                "parents": list(self.fitted_parents),
                "in_dim": int(self.stats["in_mean"].shape[0]),
                "out_dim": int(self.stats["out_mean"].shape[0])}

    def state_tensors(self) -> dict[str, Tensor]:
        out = {f"stats.{k}": v for k, v in self.stats.items()}
        if self.net is not None:
            out.update({f"net.{k}": v for k, v in self.net.state_dict().items()})
        return out

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, Tensor]) -> "AdditiveNoiseMechanism":
        """The mechanism saved as ``(get_config(), state_tensors())``; every statistic and weight is
        checked against the saved dimensions before anything is built."""
        if config.get("format") != cls.FORMAT:
            raise SerializationError(f"saved AdditiveNoiseMechanism has format {config.get('format', 1)}; this "
                                     f"causaldiff reads format {cls.FORMAT}: refit and save it again")
        m = cls(AdditiveNoiseConfig.model_validate(config["config"]))
        shape, d_in, d_out = tuple(int(d) for d in config["shape"]), int(config["in_dim"]), int(config["out_dim"])
        if math.prod(shape) != d_out or min(shape, default=1) < 1:
            raise SerializationError(f"field shape {list(shape)} does not hold out_dim = {d_out} values")
        groups = group_tensors(tensors, ("stats", "net"), "AdditiveNoiseMechanism")
        wide = {"in_mean": (d_in,), "in_std": (d_in,), "out_mean": (d_out,), "out_std": (d_out,), "sigma": (d_out,)}
        check_statistics(groups["stats"], wide, "saved statistics", positive=("in_std", "out_std", "sigma"))
        m.stats, dtype = groups["stats"], groups["stats"]["out_mean"].dtype
        m.parent_codec = ParentCodec.from_saved(config["parent_codec"], {})
        m.fitted_parents = tuple(config["parents"])
        if m.parent_codec.width != d_in or m.parent_codec.order != m.fitted_parents:
            raise SerializationError(f"field parent_codec ({m.parent_codec}) does not give in_dim = {d_in} "
                                     f"columns from parents {list(m.fitted_parents)}")
        if d_in:
            check_state(lambda: mlp(d_in, d_out, m.config.hidden), groups["net"], "saved network")
            m.net = mlp(d_in, d_out, m.config.hidden).to(dtype)
            m.net.load_state_dict(groups["net"])
        elif groups["net"]:
            raise SerializationError("saved network weights for a root node (in_dim = 0)")
        m.shape = shape
        return m

    def __repr__(self) -> str:
        state = "fitted" if self.fitted_parents is not None else "unfitted"
        return f"AdditiveNoiseMechanism(hidden={self.config.hidden}, {state})"


def _safe_std(v: Tensor) -> Tensor:
    if v.shape[0] < 2 or v.numel() == 0:
        return torch.ones(v.shape[1:], dtype=v.dtype, device=v.device)
    return v.std(0).clamp_min(1e-8)
