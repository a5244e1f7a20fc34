"""A node bound to a diffusion model: ``x = f(u, pa)`` with ``f`` DDIM generation from ``u = x_T``.

* **Abduction** is deterministic DDIM inversion ``x_0 -> x_T`` (Song et al. 2020), conditioned on
  the factual parents when the denoiser is conditional (DCM, Chao et al.); with
  ``abduction_fraction < 1`` it stops at an intermediate state (Diff-SCM's partial trajectory).
* **Prediction** is DDIM generation from the abducted noise toward the given parents, either with a
  conditional denoiser (``guidance="conditional"``, optional classifier-free guidance) or with an
  unconditional denoiser steered by the gradient of anti-causal predictors
  ``log p_phi(pa | x_t, t)`` (``guidance="anticausal"``, Diff-SCM, Sanchez & Tsaftaris 2022).

Works for scalar ``(n,)``, vector ``(n, d)`` and image ``(n, C, H, W)`` nodes; tabular values and
continuous parents are standardised, categorical (``torch.long``) parents one-hot encoded.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import Tensor, nn

from ..diffusion.ddim import DDIMConfig, DDIMSampler
from ..diffusion.guidance import (AntiCausalGuidance, ClassifierFreeGuidance, ParentHead,
                                  PredictorLikelihood)
from ..diffusion.nets import (DenoiserConfig, ImagePredictorConfig, MLPConfig, MLPPredictorConfig,
                              PredictorConfig, UNetConfig, build_denoiser, build_predictor)
from ..diffusion.schedule import NoiseSchedule, ScheduleConfig
from ..diffusion.train import TrainConfig, cuda_devices, train_denoiser, train_predictor
from ..errors import DataError, NotFittedError, SerializationError
from ..registry import MECHANISMS
from .base import Abduction, Mechanism, Parents

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class ParentEncoding(BaseModel):
    """How one parent enters the networks (recorded at fit)."""

    model_config = _FROZEN
    name: str
    kind: Literal["categorical", "continuous"]
    #: the parent's per-row shape (``()`` for scalars)
    shape: tuple[int, ...]
    num_classes: int | None = None

    @property
    def width(self) -> int:
        return self.num_classes if self.kind == "categorical" else math.prod(self.shape)


class DiffusionConfig(BaseModel):
    """Everything that defines a :class:`DiffusionMechanism` (serialised by :meth:`get_config`)."""

    model_config = _FROZEN

    schedule: ScheduleConfig = ScheduleConfig(kind="linear")
    #: 50 DDIM steps; abduction refines each inversion step 3 times, so that generation under the
    #: factual parents returns the observation (null-intervention counterfactuals are exact)
    sampler: DDIMConfig = DDIMConfig(num_inference_steps=50, spacing="leading",
                                     inversion_fixed_point_iters=3)
    #: denoiser network; None: a UNet for (C, H, W) nodes, the DCM MLP otherwise
    net: DenoiserConfig | None = None
    #: "conditional": eps(x_t, t, parents); "anticausal": unconditional eps + predictor gradients
    guidance: Literal["conditional", "anticausal"] = "conditional"
    #: anticausal: scale s of each parent's guidance term (one number for all, or per parent)
    guidance_scale: float | dict[str, float] = 1.0
    #: anticausal: predictor network; None: an image encoder for (C, H, W) nodes, an MLP otherwise
    predictor: PredictorConfig | None = None
    #: anticausal: guide the inversion toward the factual parents, so abduction inverts the very
    #: map that prediction applies (False: unguided inversion, as in Diff-SCM's Algorithm 1)
    guide_abduction: bool = True
    #: conditional: classifier-free guidance weight w (0: plain conditional denoiser)
    cfg_scale: float = 0.0
    #: conditional: probability of dropping the parents in training (needed for cfg_scale != 0)
    cond_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    #: abduct to state round(fraction * K) instead of x_T (partial trajectory)
    abduction_fraction: float = Field(1.0, gt=0.0, le=1.0)
    #: standardise values per feature; None: yes unless the node is an image
    standardize: bool | None = None
    train: TrainConfig = TrainConfig()
    predictor_train: TrainConfig = TrainConfig()
    # ---- recorded by fit
    event_shape: tuple[int, ...] | None = None
    parents: tuple[ParentEncoding, ...] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "DiffusionConfig":
        if self.cfg_scale != 0.0 and self.cond_dropout == 0.0:
            raise ValueError("cfg_scale != 0 needs a denoiser trained with cond_dropout > 0")
        if self.cfg_scale != 0.0 and self.guidance != "conditional":
            raise ValueError("cfg_scale applies to guidance='conditional' only")
        if (self.event_shape is None) != (self.parents is None):
            raise ValueError("event_shape and parents are recorded together by fit")
        if self.parents is not None and isinstance(self.guidance_scale, dict):
            extra = set(self.guidance_scale) - {p.name for p in self.parents}
            if extra:
                raise ValueError(f"guidance_scale names unknown parents {sorted(extra)}")
        return self

    @property
    def is_image(self) -> bool:
        return self.event_shape is not None and len(self.event_shape) == 3

    @property
    def abduction_steps(self) -> int:
        """The state index abduction stops at (and generation starts from)."""
        return max(1, round(self.abduction_fraction * self.sampler.num_inference_steps))

    def scale_of(self, parent: str) -> float:
        if isinstance(self.guidance_scale, dict):
            return float(self.guidance_scale.get(parent, 1.0))
        return float(self.guidance_scale)


@MECHANISMS.register("diffusion")
class DiffusionMechanism(Mechanism):
    """A learnable node whose structural equation is a (guided) DDIM sampler.

    >>> DiffusionMechanism(guidance="anticausal", guidance_scale=2.0,
    ...                    train=TrainConfig(steps=3000, lr=1e-3))  # doctest: +SKIP
    """

    learnable = True
    Config = DiffusionConfig

    def __init__(self, config: DiffusionConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        if config is not None and overrides:
            config = DiffusionConfig.model_validate({**config.model_dump(), **overrides})
        self.config = config if config is not None else DiffusionConfig(**overrides)
        self.node = "?"
        self.denoiser: nn.Module | None = None
        self.predictor: nn.Module | None = None
        self.stats: dict[str, Tensor] = {}
        self._device: torch.device | None = None
        self._build_sampler()

    def _build_sampler(self) -> None:
        self.schedule = NoiseSchedule(self.config.schedule)
        self.sampler = DDIMSampler(self.schedule, self.config.sampler)

    # ----------------------------------------------------------------------------- shapes & codecs
    @property
    def device(self) -> torch.device:
        return self._device or torch.device("cpu")

    def _net_shape(self) -> tuple[int, ...]:
        shape = self.config.event_shape
        return shape if shape else (1,)

    def _heads(self) -> tuple[ParentHead, ...]:
        return tuple(ParentHead(p.name, p.kind, p.width, self.config.scale_of(p.name))
                     for p in self.config.parents or ())

    def _cond_dim(self) -> int:
        ps = self.config.parents or ()
        if self.config.guidance != "conditional" or not ps:
            return 0
        return sum(p.width for p in ps) + 1  # + the "parents present" flag

    def _require_fit(self) -> None:
        if self.denoiser is None or self.config.event_shape is None:
            raise NotFittedError(f"node {self.node!r}: DiffusionMechanism is not fitted; call scm.fit(data)")

    def _check_x(self, x: Tensor, what: str) -> None:
        shape = self.config.event_shape
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise DataError(f"node {self.node!r}: {what} must be a floating tensor")
        if x.dim() < 1 or (shape is not None and tuple(x.shape[1:]) != tuple(shape)):
            raise DataError(f"node {self.node!r}: {what} has shape {tuple(x.shape)}, expected "
                            f"(n, *{tuple(shape) if shape is not None else '...'})")

    def _to_internal(self, x: Tensor) -> Tensor:
        """Node value -> standardised network input of shape ``(n, *net_shape)``."""
        x = x.to(device=self.device, dtype=torch.float32).reshape(x.shape[0], *self._net_shape())
        if "x_mean" in self.stats:
            x = (x - self.stats["x_mean"]) / self.stats["x_std"]
        return x

    def _from_internal(self, z: Tensor) -> Tensor:
        if "x_mean" in self.stats:
            z = z * self.stats["x_std"] + self.stats["x_mean"]
        return z.reshape(z.shape[0], *self.config.event_shape)

    def _encode_parents(self, parents: Parents, n: int) -> tuple[Tensor | None, tuple[Tensor, ...]]:
        """``(cond vector for a conditional denoiser or None, predictor targets per parent)``."""
        encs = self.config.parents or ()
        missing = [p.name for p in encs if p.name not in parents]
        if missing:
            raise DataError(f"node {self.node!r}: missing parent value(s) {missing}")
        cols, targets = [], []
        for p in encs:
            v = parents[p.name].to(self.device)
            if v.shape[0] != n or tuple(v.shape[1:]) != p.shape:
                raise DataError(f"node {self.node!r}: parent {p.name!r} has shape {tuple(v.shape)}, "
                                f"expected ({n}, *{p.shape})")
            if p.kind == "categorical":
                if v.is_floating_point():
                    raise DataError(f"node {self.node!r}: categorical parent {p.name!r} needs integer "
                                    f"values, got {v.dtype}")
                idx = v.long()
                if bool(((idx < 0) | (idx >= p.num_classes)).any()):  # one check per query
                    raise DataError(f"node {self.node!r}: parent {p.name!r} has values outside "
                                    f"0..{p.num_classes - 1} seen at fit")
                cols.append(F.one_hot(idx, p.num_classes).float())
                targets.append(idx)
            else:
                z = (v.reshape(n, -1).float() - self.stats[f"parent.{p.name}.mean"]) / \
                    self.stats[f"parent.{p.name}.std"]
                cols.append(z)
                targets.append(z)
        cond = None
        if self._cond_dim():
            cols.append(torch.ones(n, 1, device=self.device))
            cond = torch.cat(cols, dim=1)
        return cond, tuple(targets)

    # ----------------------------------------------------------------------------- denoisers
    def _unconditional(self, x: Tensor, t: Tensor, cond: Any) -> Tensor:
        return self.denoiser(x, t, None)

    def _eps(self, parents: Parents, n: int, *, guided: bool):
        """``(eps callable, cond)`` for the DDIM loops, toward ``parents``."""
        cond, targets = self._encode_parents(parents, n)
        c = self.config
        if c.guidance == "conditional":
            if cond is None:
                return self._unconditional, None
            return ClassifierFreeGuidance(self.denoiser, c.cfg_scale), cond
        if not guided or self.predictor is None:
            return self._unconditional, None
        likelihood = PredictorLikelihood(self.predictor, self._heads())
        return AntiCausalGuidance(self.denoiser, likelihood, self.schedule), targets

    # ----------------------------------------------------------------------------- the contract
    def abduction(self, parents: Parents | None = None) -> Abduction:
        return Abduction.APPROXIMATE

    def sample_noise(self, n: int, parents: Parents) -> Tensor:
        """``x_T ~ N(0, I)`` of the node's shape; for a partial trajectory, ``x_T`` is then carried
        down to the abduction state by generation toward ``parents``."""
        self._require_fit()
        u = torch.randn((n, *self._net_shape()), device=self.device)
        k = self.config.abduction_steps
        if k < self.sampler.num_steps:
            eps, cond = self._eps(parents, n, guided=True)
            with torch.no_grad():
                u = self.sampler.generate(eps, u, cond, stop=k).sample
        return u.reshape(n, *self.config.event_shape)

    def forward(self, noise: Tensor, parents: Parents) -> Tensor:
        """DDIM generation from ``noise`` (the abduction state) toward ``parents``."""
        self._require_fit()
        self._check_x(noise, "the noise")
        n = noise.shape[0]
        eps, cond = self._eps(parents, n, guided=True)
        z = noise.to(device=self.device, dtype=torch.float32).reshape(n, *self._net_shape())
        with torch.no_grad():
            out = self.sampler.generate(eps, z, cond, start=self.config.abduction_steps).sample
        return self._from_internal(out)

    def abduct(self, x: Tensor, parents: Parents) -> Tensor:
        """DDIM inversion of ``x`` under its factual ``parents`` (no clipping)."""
        self._require_fit()
        self._check_x(x, "the observed values")
        n = x.shape[0]
        eps, cond = self._eps(parents, n, guided=self.config.guide_abduction)
        with torch.no_grad():
            u = self.sampler.invert(eps, self._to_internal(x), cond,
                                    stop=self.config.abduction_steps).sample
        return u.reshape(n, *self.config.event_shape)

    # ----------------------------------------------------------------------------- fitting
    def fit(self, x: Tensor, parents: Parents, *, parent_order: tuple[str, ...], desc: str = "") -> None:
        """Train the denoiser (and, for anti-causal guidance, the noisy parent predictor)."""
        parent_order = tuple(parent_order)
        if set(parents) != set(parent_order):
            raise DataError(f"node {self.node!r}: parents {sorted(parents)} differ from parent_order "
                            f"{list(parent_order)}")
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1 or x.shape[0] < 2:
            raise DataError(f"node {self.node!r}: needs a floating tensor of at least 2 rows, got "
                            f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
        if not torch.isfinite(x).all():
            raise DataError(f"node {self.node!r}: training values contain NaN or Inf")
        n = x.shape[0]
        device = self._device or x.device
        encs = []
        for name in parent_order:
            v = parents[name]
            if v.shape[0] != n:
                raise DataError(f"node {self.node!r}: parent {name!r} has {v.shape[0]} rows, the node {n}")
            if v.is_floating_point():
                if not torch.isfinite(v).all():
                    raise DataError(f"node {self.node!r}: parent {name!r} contains NaN or Inf")
                encs.append(ParentEncoding(name=name, kind="continuous", shape=tuple(v.shape[1:])))
            else:
                if v.dim() != 1 or bool((v < 0).any()):
                    raise DataError(f"node {self.node!r}: categorical parent {name!r} needs non-negative "
                                    f"integers of shape (n,), got {tuple(v.shape)}")
                encs.append(ParentEncoding(name=name, kind="categorical", shape=(),
                                           num_classes=max(2, int(v.max()) + 1)))
        event = tuple(x.shape[1:])
        c = self.config
        updates: dict[str, Any] = {"event_shape": event, "parents": tuple(encs)}
        if c.net is None:
            updates["net"] = UNetConfig() if len(event) == 3 else MLPConfig()
        if c.guidance == "anticausal" and c.predictor is None and encs:
            updates["predictor"] = ImagePredictorConfig() if len(event) == 3 else MLPPredictorConfig()
        new_cfg = DiffusionConfig.model_validate({**c.model_dump(), **updates})

        # statistics (float32 on the training device)
        self.config, self._device = new_cfg, torch.device(device)
        standardize = new_cfg.standardize if new_cfg.standardize is not None else not new_cfg.is_image
        stats: dict[str, Tensor] = {}
        flat = x.to(device=device, dtype=torch.float32).reshape(n, *self._net_shape())
        if standardize:
            stats["x_mean"] = flat.mean(0)
            stats["x_std"] = flat.std(0).clamp_min(1e-6)
        for p in encs:
            if p.kind == "continuous":
                v = parents[p.name].to(device=device, dtype=torch.float32).reshape(n, -1)
                stats[f"parent.{p.name}.mean"] = v.mean(0)
                stats[f"parent.{p.name}.std"] = v.std(0).clamp_min(1e-6)
        self.stats = stats
        z = self._to_internal(x)
        cond, targets = self._encode_parents(parents, n)

        T = new_cfg.schedule.num_train_timesteps
        with torch.random.fork_rng(devices=cuda_devices(device)):
            torch.manual_seed(new_cfg.train.seed)
            net = build_denoiser(new_cfg.net, self._net_shape(), self._cond_dim(), T).to(device)
            predictor = None
            if new_cfg.guidance == "anticausal" and encs:
                out_dim = sum(h.out_dim for h in self._heads())
                predictor = build_predictor(new_cfg.predictor, self._net_shape(), out_dim, T).to(device)
        label = desc or f"fit {self.node}"
        result = train_denoiser(net, z, self.schedule, new_cfg.train, cond=cond,
                                cond_dropout=new_cfg.cond_dropout, desc=f"{label} (denoiser)")
        self.denoiser = result.ema
        self.predictor = None
        if predictor is not None:
            res = train_predictor(predictor, z, targets, self._heads(), self.schedule,
                                  new_cfg.predictor_train, desc=f"{label} (anti-causal predictor)")
            self.predictor = res.ema
        self.fitted_parents = parent_order

    # ----------------------------------------------------------------------------- introspection
    def event_shape(self, parents: Parents | None = None, n: int | None = None) -> tuple[int, ...] | None:
        return self.config.event_shape

    def value_dtype(self, parents: Parents | None = None, n: int | None = None) -> torch.dtype | None:
        return torch.float32 if self.config.event_shape is not None else None

    def pyro_distribution(self, parents: Parents, n: int | None = None) -> Any:
        return None  # no tractable density

    def to(self, device: torch.device | str) -> "DiffusionMechanism":
        self._device = torch.device(device)
        for net in (self.denoiser, self.predictor):
            if net is not None:
                net.to(self._device)
        self.stats = {k: v.to(self._device) for k, v in self.stats.items()}
        return self

    # ----------------------------------------------------------------------------- save / load
    def get_config(self) -> dict[str, Any]:
        return {"config": self.config.model_dump(mode="json"),
                "parents": list(self.fitted_parents) if self.fitted_parents is not None else None}

    def state_tensors(self) -> dict[str, Tensor]:
        out = {f"stats.{k}": v for k, v in self.stats.items()}
        for prefix, net in (("denoiser", self.denoiser), ("predictor", self.predictor)):
            if net is not None:
                out.update({f"{prefix}.{k}": v for k, v in net.state_dict().items()})
        return out

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, Tensor]) -> "DiffusionMechanism":
        try:
            cfg = DiffusionConfig.model_validate(config["config"])
        except (KeyError, TypeError, ValidationError) as e:
            raise SerializationError(f"not a saved DiffusionMechanism config: {e}") from e
        m = cls(cfg)
        if cfg.event_shape is None:
            if tensors:
                raise SerializationError("an unfitted DiffusionMechanism was saved with weights")
            return m
        device = next(iter(tensors.values())).device if tensors else torch.device("cpu")
        m._device = device
        groups: dict[str, dict[str, Tensor]] = {"stats": {}, "denoiser": {}, "predictor": {}}
        for k, v in tensors.items():
            head, _, rest = k.partition(".")
            if head not in groups:
                raise SerializationError(f"unexpected tensor {k!r} in a saved DiffusionMechanism")
            groups[head][rest] = v
        m.stats = {k: v.float() for k, v in groups["stats"].items()}
        standardize = cfg.standardize if cfg.standardize is not None else not cfg.is_image
        needed = (["x_mean", "x_std"] if standardize else []) + [
            f"parent.{p.name}.{s}" for p in cfg.parents if p.kind == "continuous" for s in ("mean", "std")]
        missing = sorted(set(needed) - set(m.stats))
        if missing:
            raise SerializationError(f"saved DiffusionMechanism lacks statistics {missing}")
        T = cfg.schedule.num_train_timesteps
        m.denoiser = _load_net(build_denoiser(cfg.net, m._net_shape(), m._cond_dim(), T),
                               groups["denoiser"], "denoiser", device)
        if cfg.guidance == "anticausal" and cfg.parents:
            out_dim = sum(h.out_dim for h in m._heads())
            m.predictor = _load_net(build_predictor(cfg.predictor, m._net_shape(), out_dim, T),
                                    groups["predictor"], "predictor", device)
        elif groups["predictor"]:
            raise SerializationError("saved predictor weights for a mechanism without a predictor")
        parents = config.get("parents")
        m.fitted_parents = tuple(parents) if parents is not None else tuple(p.name for p in cfg.parents)
        return m

    def __repr__(self) -> str:
        c = self.config
        net = c.net.kind if c.net is not None else "auto"
        state = f"fitted {c.event_shape}" if self.denoiser is not None else "unfitted"
        extra = f", s={c.guidance_scale}" if c.guidance == "anticausal" else (
            f", w={c.cfg_scale}" if c.cfg_scale else "")
        return (f"DiffusionMechanism({net}, {c.guidance}{extra}, K={self.sampler.num_steps}, "
                f"T={self.schedule.num_train_timesteps}, {state})")


def _load_net(net: nn.Module, state: dict[str, Tensor], what: str, device: torch.device) -> nn.Module:
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise SerializationError(f"saved {what} weights do not match its config: {e}") from e
    return net.to(device).eval().requires_grad_(False)
