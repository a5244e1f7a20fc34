"""A node bound to a diffusion model: ``x = f(u, pa)`` with ``f`` DDIM generation from ``u = x_T``.

* **Abduction** is deterministic DDIM inversion ``x_0 -> x_T`` (Song et al. 2020), conditioned on
  the factual parents when the denoiser is conditional (DCM, Chao et al.); with
  ``abduction_fraction < 1`` it stops at an intermediate state (Diff-SCM's partial trajectory).
* **Prediction** is DDIM generation from the abducted noise toward the given parents, either with a
  conditional denoiser (``guidance="conditional"``, optional classifier-free guidance; a
  counterfactual's generation may be guided away from the factual parents it was inverted under,
  ``anchor_scale``) or with an
  unconditional denoiser steered by the gradient of anti-causal predictors
  ``log p_phi(pa | x_t, t)`` (``guidance="anticausal"``, Diff-SCM, Sanchez & Tsaftaris 2022).

Works for scalar ``(n,)``, vector ``(n, d)`` and image ``(n, C, H, W)`` nodes; tabular values and
continuous parents are standardised, categorical (``torch.long``) parents one-hot encoded. An image
node may declare an ``autoencoder``: then the diffusion runs in its latent space (:mod:`.latent`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor, nn

from ...diffusion.ddim import DDIMSampler
from ...diffusion.fast import InferenceConfig, fast_eps, fast_net
from ...diffusion.guidance import AnchoredGuidance, AntiCausalGuidance, ClassifierFreeGuidance, PredictorLikelihood
from ...diffusion.schedule import NoiseSchedule
from ...errors import DataError, DivergenceError, NotFittedError
from ...registry import MECHANISMS
from ..base import Abduction, Conditional, Mechanism, Parents
from ..moves import Move
from .io import VARIANTS, load, saved_config, saved_tensors
from .config import DiffusionConfig
from .fit import check_rows, fit_networks, record_state
from .latent import Autoencoder
from .state import DiffusionState


@MECHANISMS.register("diffusion")
class DiffusionMechanism(Mechanism):
    """A learnable node whose structural equation is a (guided) DDIM sampler.

    ``config`` holds the hyperparameters; ``state`` what fit recorded (``None`` until fitted);
    ``denoiser`` / ``predictor`` the trained (EMA) networks; ``autoencoder`` (a diffusers
    ``AutoencoderKL`` or its local folder, frozen) makes it a latent node. Change inference
    settings with :meth:`with_inference`, which shares the networks.

    >>> DiffusionMechanism(guidance="anticausal", guidance_scale=2.0,
    ...                    train=TrainConfig(steps=3000, lr=1e-3))  # doctest: +SKIP
    """

    learnable = True
    Config = DiffusionConfig

    @classmethod
    def quick(cls, config: DiffusionConfig) -> DiffusionConfig:
        return config.quick()

    def __init__(self, config: DiffusionConfig | None = None, *, autoencoder: Any = None, **overrides: Any) -> None:
        super().__init__()
        self.autoencoder = autoencoder if autoencoder is None or isinstance(autoencoder, Autoencoder) \
            else Autoencoder(autoencoder)
        if config is not None and overrides:
            config = DiffusionConfig.model_validate({**config.model_dump(), **overrides})
        self.config = config if config is not None else DiffusionConfig(**overrides)
        self.state: DiffusionState | None = None
        self.denoiser: nn.Module | None = None
        self.predictor: nn.Module | None = None
        self._device: torch.device | None = None
        self.schedule = NoiseSchedule(self.config.schedule)
        self.sampler = DDIMSampler(self.schedule, self.config.sampler)
        self._fast: dict[int, Any] = {}  # FastNet per network for this mechanism's inference setting

    @classmethod
    def from_diffusers(cls, unet: Any, scheduler: Any = None, *, vae: Any = None,
                       **settings: Any) -> "DiffusionMechanism":
        """An image node whose denoiser is a pretrained diffusers model (an object, a local
        ``save_pretrained`` directory or a local pipeline folder; never a download): an unconditional
        ``UNet2DModel`` steered by an anti-causal predictor that ``scm.fit`` trains while the UNet stays
        frozen (``frozen=False`` fine-tunes it), or a class-conditional DiT whose class is the node's one
        categorical parent. ``scheduler``: a diffusers scheduler, its config or a local
        ``scheduler_config.json``; ``vae``: an ``AutoencoderKL`` (or its folder) making a latent node;
        ``settings``: other :class:`DiffusionConfig` fields. See :mod:`causaldiff.mechanisms.diffusion.pretrained`."""
        return VARIANTS["pretrained"].build(unet, scheduler, vae=vae, **settings)

    # ----------------------------------------------------------------------------- inference settings
    def with_inference(self, *, guidance_scale: float | dict[str, float] | None = None,
                       abduction_fraction: float | None = None, num_inference_steps: int | None = None,
                       cfg_scale: float | None = None, guide_abduction: bool | None = None,
                       anchor_scale: float | None = None,
                       sampler: Mapping[str, Any] | None = None,
                       inference: InferenceConfig | Mapping[str, Any] | None = None) -> "DiffusionMechanism":
        """A new mechanism with other inference settings, sharing this one's fitted networks and
        state (no copy of the weights; moving either to a device moves the shared networks); this
        mechanism is unchanged. ``sampler`` updates fields of the :class:`DDIMConfig` (e.g.
        ``clip_sample``, ``inversion_fixed_point_iters``), ``num_inference_steps`` is its ``K``;
        ``inference`` updates fields of the :class:`~causaldiff.diffusion.fast.InferenceConfig`
        (``precision``, ``compile``, ``channels_last``, ``fixed_batch``, ``cuda_graphs``). Raises ``ValueError`` naming the field if a setting is invalid."""
        update: dict[str, Any] = {k: v for k, v in (
            ("guidance_scale", guidance_scale), ("abduction_fraction", abduction_fraction),
            ("cfg_scale", cfg_scale), ("guide_abduction", guide_abduction),
            ("anchor_scale", anchor_scale)) if v is not None}
        steps = {} if num_inference_steps is None else {"num_inference_steps": num_inference_steps}
        if sampler is not None or steps:
            update["sampler"] = {**self.config.sampler.model_dump(), **dict(sampler or {}), **steps}
        if inference is not None:
            given = inference.model_dump() if isinstance(inference, InferenceConfig) else dict(inference)
            update["inference"] = {**self.config.inference.model_dump(), **given}
        try:
            config = DiffusionConfig.model_validate({**self.config.model_dump(), **update})
            if self.state is not None:
                config.check_scales(self.state.parent_codec.order)
        except ValidationError as e:
            fields = ", ".join(".".join(map(str, err["loc"])) or "config" for err in e.errors())
            raise ValueError(f"node {self.node!r}: invalid inference setting ({fields}): "
                             f"{e.errors()[0]['msg']}") from None
        except ValueError as e:
            raise ValueError(f"node {self.node!r}: invalid inference setting (guidance_scale): {e}") from None
        new = type(self)(config, autoencoder=self.autoencoder)
        new.state, new.denoiser, new.predictor = self.state, self.denoiser, self.predictor
        new._device, new.fitted_parents, new.node = self._device, self.fitted_parents, self.node
        return new

    # ----------------------------------------------------------------------------- shapes & codecs
    @property
    def device(self) -> torch.device:
        return self._device or torch.device("cpu")

    def _fitted(self) -> DiffusionState:
        if self.denoiser is None or self.state is None:
            raise NotFittedError(f"node {self.node!r}: DiffusionMechanism is not fitted; call scm.fit(data)")
        return self.state

    def _check_x(self, x: Tensor, what: str, noise: bool = False) -> None:
        shape = None if self.state is None else self.state.noise_shape if noise else self.state.event_shape
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise DataError(f"node {self.node!r}: {what} must be a floating tensor")
        if x.dim() < 1 or (shape is not None and tuple(x.shape[1:]) != tuple(shape)):
            raise DataError(f"node {self.node!r}: {what} has shape {tuple(x.shape)}, expected "
                            f"(n, *{tuple(shape) if shape is not None else '...'})")

    def _unconditional(self, x: Tensor, t: Tensor, cond: Any) -> Tensor:
        return fast_net(self.denoiser, self.config.inference, self._fast)(x, t, None)

    def _eps(self, parents: Parents, n: int, *, guided: bool):
        """``(eps callable, cond)`` for the DDIM loops toward ``parents``, run as the inference
        setting says (:mod:`causaldiff.diffusion.fast`)."""
        eps, cond = self._eager_eps(parents, n, guided=guided)
        return fast_eps(eps, self.config.inference), cond

    def _eager_eps(self, parents: Parents, n: int, *, guided: bool):
        state, c = self._fitted(), self.config
        c.inference.check_device(self.device, self.node)
        cond, targets = state.condition(c, parents, n, self.device, self.node)
        denoiser = fast_net(self.denoiser, c.inference, self._fast)
        if c.guidance == "conditional":
            if cond is None:
                return self._unconditional, None
            return ClassifierFreeGuidance(denoiser, c.cfg_scale), cond
        heads = state.heads(c)
        if not guided or self.predictor is None or all(h.scale == 0.0 for h in heads):
            return self._unconditional, None  # at scale 0 the guidance term is zero: no predictor call
        likelihood = PredictorLikelihood(fast_net(self.predictor, c.inference, self._fast), heads)
        return AntiCausalGuidance(denoiser, likelihood, self.schedule), targets

    # ----------------------------------------------------------------------------- the contract
    def abduction(self, parents: Parents | None = None) -> Abduction:
        return Abduction.APPROXIMATE

    def sample_noise(self, n: int, parents: Parents, generator: torch.Generator | None = None) -> Tensor:
        """``x_T ~ N(0, I)`` of the node's shape, from ``generator``; for a partial trajectory,
        ``x_T`` is then carried down to the abduction state by generation toward ``parents``."""
        state = self._fitted()
        u = torch.randn((n, *state.net_shape), generator=generator, device=self.device)
        k = self.config.abduction_steps
        if k < self.sampler.num_steps:
            eps, cond = self._eps(parents, n, guided=True)
            with torch.no_grad():
                u = self.sampler.generate(eps, u, cond, stop=k, generator=generator).sample
        return u.reshape(n, *state.noise_shape)

    def forward(self, noise: Tensor, parents: Parents) -> Tensor:
        """DDIM generation from ``noise`` (the abduction state) toward ``parents``."""
        eps, cond = self._eps(parents, noise.shape[0], guided=True)
        return self._generate(noise, eps, cond)

    def anchored_forward(self, noise: Tensor, factual: Parents, parents: Parents) -> Tensor:
        """DDIM generation from ``noise``, abducted under the ``factual`` parents, toward ``parents``
        with :class:`~causaldiff.diffusion.guidance.AnchoredGuidance` of weight ``anchor_scale``
        (rows whose parents are unchanged decode with exactly the predictions of their inversion)."""
        n = noise.shape[0]
        base, cond_f = self._eager_eps(factual, n, guided=True)
        _, cond_cf = self._eager_eps(parents, n, guided=True)
        if cond_f is None:  # no parents to guide by
            return self.forward(noise, parents)
        eps = fast_eps(AnchoredGuidance(base, self.config.anchor_scale), self.config.inference)
        return self._generate(noise, eps, (cond_f, cond_cf))

    def _generate(self, noise: Tensor, eps: Any, cond: Any) -> Tensor:
        state = self._fitted()
        self._check_x(noise, "the noise", noise=True)
        n = noise.shape[0]
        z = noise.to(device=self.device, dtype=torch.float32).reshape(n, *state.net_shape)
        with torch.no_grad():
            out = self.sampler.generate(eps, z, cond, start=self.config.abduction_steps).sample
        self._check_finite(out, "DDIM generation")
        out = state.from_internal(out)
        return out if self.autoencoder is None else self.autoencoder.decode(out)

    def given(self, parents: Parents, n: int) -> Conditional:
        return DiffusionConditional(self, parents, n)

    def abduct(self, x: Tensor, parents: Parents, generator: torch.Generator | None = None) -> Tensor:
        """DDIM inversion of ``x`` under its factual ``parents`` (no clipping)."""
        state = self._fitted()
        self._check_x(x, "the observed values")
        n = x.shape[0]
        eps, cond = self._eps(parents, n, guided=self.config.guide_abduction)
        with torch.no_grad():
            u = self.sampler.invert(eps, state.to_internal(self._encoded(x, self.device), self.device), cond,
                                    stop=self.config.abduction_steps).sample
        self._check_finite(u, "DDIM inversion (abduction)")
        return u.reshape(n, *state.noise_shape)

    def _encoded(self, x: Tensor, device: torch.device) -> Tensor:
        """The rows themselves, or a latent node's latents (the encoder's mean), on ``device``."""
        if self.autoencoder is None:
            return x
        try:
            self.autoencoder.latent_shape(tuple(x.shape[1:]))
        except ValueError as e:
            raise DataError(f"node {self.node!r}: {e}") from None
        return self.autoencoder.to(device).encode(x.to(device))

    def _check_finite(self, z: Tensor, what: str) -> None:
        """A DDIM loop whose guidance gradient grew without bound leaves non-finite rows: refused,
        naming the node (one check per loop, after it)."""
        if z.device.type == "meta":  # shapes only: no values to check
            return
        bad = ~torch.isfinite(z.reshape(z.shape[0], -1)).all(dim=1)
        if bool(bad.any()):
            hint = " (guided abduction: try guide_abduction=False or a smaller guidance_scale)" \
                if self.config.guidance == "anticausal" else ""
            raise DivergenceError(f"node {self.node!r}: {what} diverged on {int(bad.sum())} of {z.shape[0]} "
                                 f"rows (non-finite values){hint}")

    def fit(self, x: Tensor, parents: Parents, *, parent_order: tuple[str, ...], desc: str = "") -> None:
        """Record the state, then train the denoiser (and, for anti-causal guidance, the noisy
        parent predictor); nothing is changed if the rows are refused."""
        check_rows(x, self.node)
        device = torch.device(self._device or x.device)
        z = self._encoded(x, device)
        state = record_state(self.config, z, parents, tuple(parent_order), node=self.node, device=device,
                             event_shape=None if self.autoencoder is None else tuple(x.shape[1:]))
        nets = fit_networks(self.config, state, self.schedule, z, parents, device=device, node=self.node, desc=desc)
        self.state, self._device, (self.denoiser, self.predictor) = state, device, nets
        self.fitted_parents = tuple(parent_order)

    # ----------------------------------------------------------------------------- introspection
    def event_shape(self, parents: Parents | None = None, n: int | None = None) -> tuple[int, ...] | None:
        return self.state.event_shape if self.state is not None else None

    def value_dtype(self, parents: Parents | None = None, n: int | None = None) -> torch.dtype | None:
        return torch.float32 if self.state is not None else None

    def stage_to(self, move: Move) -> None:
        move.module(self.denoiser)
        move.module(self.predictor)
        move.module(self.autoencoder)
        state = self.state.to(move.device) if self.state is not None else None
        move.set(self, _device=move.device, state=state)

    # ----------------------------------------------------------------------------- save / load
    def get_config(self) -> dict[str, Any]:
        return saved_config(self)

    def state_tensors(self) -> dict[str, Tensor]:
        return saved_tensors(self)

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, Tensor]) -> "DiffusionMechanism":
        return load(cls, config, tensors)

    def __repr__(self) -> str:
        c = self.config
        net = (self.state.net if self.state is not None else c.net)
        kind = net.kind if net is not None else "auto"
        state = f"fitted {self.state.event_shape}" if self.denoiser is not None else "unfitted"
        extra = f", s={c.guidance_scale}" if c.guidance == "anticausal" else (
            f", w={c.cfg_scale}" if c.cfg_scale else "")
        extra += f", anchor w={c.anchor_scale}" if c.anchor_scale != 1.0 else ""
        extra += ", latent" if self.autoencoder is not None else ""
        return (f"DiffusionMechanism({kind}, {c.guidance}{extra}, K={self.sampler.num_steps}, "
                f"T={self.schedule.num_train_timesteps}, {state})")


class DiffusionConditional(Conditional):
    """A diffusion node given its parents: a counterfactual step inverts the factual rows under these
    parents, then generates under the new ones, with anchored guidance when ``anchor_scale != 1``."""

    def tolerance_floor(self, x: Tensor) -> float:
        """A latent node's autoencoder reconstruction error on ``x``: no query comes closer (0: pixel node)."""
        m: DiffusionMechanism = self.mechanism  # type: ignore[assignment]
        return 0.0 if m.autoencoder is None else m.autoencoder.to(m.device).floor(x.to(m.device))

    def counterfactual(self, x: Tensor, parents: Parents, generator: torch.Generator | None = None) -> Tensor:
        m: DiffusionMechanism = self.mechanism  # type: ignore[assignment]
        if m.config.anchor_scale == 1.0:
            return super().counterfactual(x, parents, generator)
        self.check(x, "the factual rows")
        return m.anchored_forward(self.abduct(x, generator), self.parents, parents)
