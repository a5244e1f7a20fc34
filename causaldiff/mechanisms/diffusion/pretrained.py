"""Pretrained diffusers denoisers as image nodes: an unconditional ``UNet2DModel`` steered by a
noisy anti-causal predictor (Diff-SCM's setting), or a class-conditional DiT
(``DiTTransformer2DModel`` / ``Transformer2DModel``, Peebles & Xie 2023), usually in the latent
space of an ``AutoencoderKL`` (:mod:`.latent`), guided by classifier-free guidance anchored at the
factual class (``anchor_scale``, ``cfg_scale``).

``DiffusionMechanism.from_diffusers(model, scheduler, vae=...)`` takes the model as an object, a
local directory written by ``save_pretrained``, or a local pipeline folder (``model_index.json``
with ``unet/`` or ``transformer/``, ``vae/``, ``scheduler/``); never a download
(:mod:`.diffusers_files`). A DiT's class parent maps to its class labels, the null class being
label ``num_embeds_ada_norm`` (the last row of its table). It imports the noise schedule of a
diffusers scheduler (an object, its config dict, or a local ``scheduler_config.json``) exactly as
diffusers computes it (float32 tables held in float64), and converts the model's output to the
noise prediction ``eps`` the DDIM sampler needs:

* ``epsilon``: as is;
* ``v_prediction`` (Salimans & Ho 2022, ``v = sqrt(a) eps - sqrt(1 - a) x_0`` with
  ``x_t = sqrt(a) x_0 + sqrt(1 - a) eps``): ``eps = sqrt(a) v + sqrt(1 - a) x_t``;
* ``sample`` (the model predicts ``x_0``): ``eps = (x_t - sqrt(a) x_0) / sqrt(1 - a)``.

The model is frozen by default, so ``scm.fit`` trains only the anti-causal predictor (a DiT: nothing);
it is saved in the SCM's weights with its diffusers config and rebuilt on ``cd.load``. diffusers is
imported only when a model is built or loaded (``pip install causaldiff[diffusers]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ...diffusion.nets import build_predictor
from ...diffusion.schedule import NoiseSchedule, ScheduleConfig
from ...diffusion.train import train_denoiser, train_predictor
from ...errors import DataError, SerializationError
from ...training.seeding import seeded_module
from ..codecs import ParentCodec
from ..saved import check_state
from .config import DiffusionConfig
from .diffusers_files import DENOISERS, from_config, load_model, model_config, pipeline_parts, read_config
from .fit import check_rows, record_state
from .io import VARIANTS, groups_of, load_autoencoder, load_net, saved_config, saved_tensors, state_of
from .mechanism import DiffusionMechanism

PredictionType = Literal["epsilon", "v_prediction", "sample"]
#: diffusers' DDPMScheduler defaults, used when no scheduler is given or found
DDPM_DEFAULTS: dict[str, Any] = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02,
                                 "beta_schedule": "linear", "prediction_type": "epsilon"}
_KINDS = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}
#: settings from_diffusers decides itself (for a UNet; a DiT leaves cfg_scale to the user)
_FIXED = ("guidance", "net", "schedule", "cfg_scale", "cond_dropout")
#: the label dropout DiT was trained with (its null class)
DIT_DROPOUT = 0.1


class DiffusersDenoiser(nn.Module):
    """``eps(x_t, t, cond)`` from a diffusers model predicting ``prediction_type`` (module
    docstring); a class-conditional one (``classes``: its ``num_embeds_ada_norm``) reads the class
    from ``cond = [one-hot class, present flag]``, the null class where the flag is 0."""

    def __init__(self, unet: nn.Module, alphas_cumprod: Tensor, prediction_type: PredictionType) -> None:
        super().__init__()
        if prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"prediction_type {prediction_type!r} is not supported "
                             "(epsilon, v_prediction or sample)")
        self.unet, self.prediction_type = unet, prediction_type
        self.classes = getattr(getattr(unet, "config", None), "num_embeds_ada_norm", None)
        self.register_buffer("alphas_cumprod", alphas_cumprod.to(torch.float64), persistent=False)

    def labels(self, cond: Tensor | None, n: int, device: torch.device) -> Tensor:
        """The class labels of ``cond`` (the null class ``classes`` where absent)."""
        if cond is None:
            return torch.full((n,), self.classes, device=device)
        return torch.where(cond[:, -1] > 0.5, cond[:, :-1].argmax(1), self.classes)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        kw = {} if self.classes is None else {"class_labels": self.labels(cond, x.shape[0], x.device)}
        out = self.unet(x, t, return_dict=False, **kw)[0]
        out = out[:, : x.shape[1]]  # a learned-variance model also outputs the variance channels
        if self.prediction_type == "epsilon":
            return out
        a = self.alphas_cumprod[t].reshape(-1, *([1] * (x.dim() - 1)))
        if self.prediction_type == "v_prediction":
            return (a.sqrt() * out + (1.0 - a).sqrt() * x).to(out.dtype)
        return ((x - a.sqrt() * out) / (1.0 - a).sqrt()).to(out.dtype)


def scheduler_config(scheduler: Any) -> dict[str, Any]:
    """The config dict of a diffusers scheduler object, a dict, or a local ``scheduler_config.json``
    (or a directory holding one); ``None``: diffusers' DDPM defaults."""
    if scheduler is None:
        return dict(DDPM_DEFAULTS)
    if isinstance(scheduler, (str, Path)):
        path = Path(scheduler)
        path = path / "scheduler_config.json" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"no scheduler config at {path} (local files only, nothing is downloaded)")
        return read_config(path)
    config = getattr(scheduler, "config", scheduler)
    if not isinstance(config, Mapping):
        raise TypeError(f"scheduler must be a diffusers scheduler, its config or a local path; "
                        f"got {type(scheduler).__name__}")
    return dict(config)


def import_schedule(config: Mapping[str, Any]) -> tuple[ScheduleConfig, PredictionType]:
    """``(ScheduleConfig, prediction_type)`` of a diffusers scheduler config: the same
    ``alphas_cumprod`` as diffusers (float32 tables), or an error naming the unsupported field."""
    c = {**DDPM_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
    if c.get("rescale_betas_zero_snr"):
        raise ValueError("scheduler: rescale_betas_zero_snr=True (alpha_bar_T = 0) is not supported")
    common = {"num_train_timesteps": int(c["num_train_timesteps"]), "precision": "float32"}
    if c.get("trained_betas") is not None:
        betas = tuple(float(b) for b in c["trained_betas"])
        schedule = ScheduleConfig(kind="trained", trained_betas=betas, **{**common, "num_train_timesteps": len(betas)})
    elif c["beta_schedule"] in _KINDS:
        schedule = ScheduleConfig(kind=_KINDS[c["beta_schedule"]], beta_start=float(c["beta_start"]),
                                  beta_end=float(c["beta_end"]), cosine_s=0.008, max_beta=0.999, **common)
    else:
        raise ValueError(f"scheduler: beta_schedule {c['beta_schedule']!r} is not supported "
                         f"({', '.join(_KINDS)} or trained_betas)")
    prediction = c["prediction_type"]
    if prediction not in ("epsilon", "v_prediction", "sample"):
        raise ValueError(f"scheduler: prediction_type {prediction!r} is not supported")
    return schedule, prediction


def _default_scheduler(unet: Any) -> Any:
    """A ``scheduler_config.json`` beside a local model directory (or in a pipeline's scheduler/)."""
    if isinstance(unet, (str, Path)):
        for where in (Path(unet), Path(unet).parent / "scheduler"):
            if (where / "scheduler_config.json").is_file():
                return where
    return None


class PretrainedDiffusionMechanism(DiffusionMechanism):
    """A :class:`DiffusionMechanism` whose denoiser is a pretrained diffusers model: an unconditional
    UNet (``guidance="anticausal"``) or a class-conditional DiT (``guidance="conditional"``, one
    categorical parent: the class), pixel or latent; build it with :meth:`DiffusionMechanism.from_diffusers`.

    ``frozen`` (default True): ``fit`` trains only the anti-causal predictor (a DiT: nothing); False
    also fine-tunes the model with ``config.train``. Saved under the ``diffusion`` name with the
    model's config."""

    frozen: bool = True

    @classmethod
    def build(cls, unet: Any, scheduler: Any = None, *, vae: Any = None, frozen: bool = True,
              **settings: Any) -> "PretrainedDiffusionMechanism":
        parts = pipeline_parts(unet)
        if parts:
            scheduler = scheduler if scheduler is not None else parts.get("scheduler")
            vae = vae if vae is not None else parts.get("vae")
            unet = parts.get("transformer", parts.get("unet", unet))
        model = load_model(unet, DENOISERS, "the denoiser")
        dit = type(model).__name__ != "UNet2DModel"
        fixed = sorted(set(settings) & (set(_FIXED) - ({"cfg_scale"} if dit else set())))
        if fixed:
            raise ValueError(f"from_diffusers sets {fixed} itself (from the model and the scheduler)")
        c = model.config
        if not dit and (getattr(c, "num_class_embeds", None) or getattr(c, "class_embed_type", None)):
            raise ValueError("from_diffusers takes an unconditional UNet2DModel (no class embedding)")
        if dit and not getattr(c, "num_embeds_ada_norm", None):
            raise ValueError("from_diffusers takes a class-conditional DiT (num_embeds_ada_norm: its class count)")
        sched = scheduler if scheduler is not None else _default_scheduler(unet)
        schedule, prediction = import_schedule(scheduler_config(sched))
        guidance = {"guidance": "conditional", "cond_dropout": DIT_DROPOUT} if dit else {"guidance": "anticausal"}
        m = cls(DiffusionConfig(schedule=schedule, **guidance, **settings), autoencoder=vae)
        model.eval().requires_grad_(False)
        m.denoiser, m.frozen = DiffusersDenoiser(model, m.schedule.alphas_cumprod, prediction), frozen
        return m

    @property
    def unet(self) -> nn.Module:
        return self.denoiser.unet

    def with_inference(self, **settings: Any) -> "PretrainedDiffusionMechanism":
        new = super().with_inference(**settings)
        new.denoiser, new.frozen = self.denoiser, self.frozen
        return new

    def _check_input(self, z: Tensor, parents: Mapping[str, Tensor]) -> None:
        """The model's input rows (a latent node's latents) and, for a DiT, its one class parent."""
        c, what = self.unet.config, "latents" if self.autoencoder is not None else "images"
        size = c.sample_size if isinstance(c.sample_size, (tuple, list)) else (c.sample_size, c.sample_size)
        if z.dim() != 4 or tuple(z.shape[1:]) != (c.in_channels, *size):
            raise DataError(f"node {self.node!r}: the pretrained {type(self.unet).__name__} takes {what} (n, "
                            f"{c.in_channels}, {size[0]}, {size[1]}), got {tuple(z.shape)}")
        k = self.denoiser.classes
        if k is not None and (len(parents) != 1 or next(iter(parents.values())).is_floating_point()
                              or int(next(iter(parents.values())).max()) >= k):
            raise DataError(f"node {self.node!r}: the pretrained DiT takes one categorical parent, its class "
                            f"in 0..{k - 1}; got parents {sorted(parents)}")

    def fit(self, x: Tensor, parents: Mapping[str, Tensor], *, parent_order: tuple[str, ...], desc: str = "") -> None:
        """Record the state and train the anti-causal predictor (and, unless frozen, fine-tune the
        model); nothing is changed if the rows are refused."""
        check_rows(x, self.node)
        device = torch.device(self._device or x.device)
        z = self._encoded(x, device)
        self._check_input(z, parents)
        state = record_state(self.config, z, parents, tuple(parent_order), node=self.node, device=device,
                             event_shape=None if self.autoencoder is None else tuple(x.shape[1:]))
        if self.denoiser.classes is not None:  # every class of the DiT, not only those in the rows
            (p,) = state.parent_codec.parents
            state.parent_codec = ParentCodec((p.model_copy(update={"num_classes": self.denoiser.classes}),),
                                             standardize=state.parent_codec.standardize)
        z, label = state.to_internal(z, device), desc or f"fit {self.node}"
        cond, targets = state.condition(self.config, parents, x.shape[0], device, self.node)
        denoiser = self.denoiser.to(device)
        if not self.frozen:
            denoiser = train_denoiser(denoiser.requires_grad_(True), z, self.schedule, self.config.train, cond=cond,
                                      cond_dropout=self.config.cond_dropout,
                                      desc=f"{label} (fine-tune {type(self.unet).__name__})").ema.requires_grad_(False)
        predictor = None
        if state.predictor is not None:
            net = seeded_module(lambda: build_predictor(state.predictor, state.net_shape, state.predictor_out_dim(
                self.config), self.schedule.num_train_timesteps), self.config.predictor_train.seed, device)
            predictor = train_predictor(net, z, targets, state.heads(self.config), self.schedule,
                                        self.config.predictor_train, desc=f"{label} (anti-causal predictor)").ema
        self.state, self._device, self.denoiser, self.predictor = state, device, denoiser, predictor
        self.fitted_parents = tuple(parent_order)

    def save_pretrained(self, path: str | Path) -> None:
        """Write the (possibly fine-tuned) model as diffusers does (config.json + safetensors)."""
        self.unet.save_pretrained(str(path), safe_serialization=True)

    def get_config(self) -> dict[str, Any]:
        return {**saved_config(self), "pretrained": {
            "unet": model_config(self.unet), "prediction_type": self.denoiser.prediction_type, "frozen": self.frozen}}

    def state_tensors(self) -> dict[str, Tensor]:
        out = saved_tensors(self)
        if self.state is None:  # an unfitted mechanism still carries its pretrained model
            out.update({f"denoiser.{k}": v for k, v in self.denoiser.state_dict().items()})
        return out

    def __repr__(self) -> str:
        c, fitted = self.config, f"fitted {self.state.event_shape}" if self.state is not None else "unfitted"
        guide = f"anchor w={c.anchor_scale}, cfg w={c.cfg_scale}" if c.guidance == "conditional" \
            else f"s={c.guidance_scale}"
        return (f"PretrainedDiffusionMechanism(diffusers {type(self.unet).__name__}, {self.denoiser.prediction_type}, "
                f"{guide}{', latent' if self.autoencoder is not None else ''}, K={self.sampler.num_steps}, "
                f"T={self.schedule.num_train_timesteps}, {'frozen' if self.frozen else 'fine-tuned'}, {fitted})")


def load_pretrained(config: dict[str, Any], tensors: dict[str, Tensor]) -> PretrainedDiffusionMechanism:
    """The mechanism saved by :meth:`PretrainedDiffusionMechanism.get_config` / ``state_tensors``
    (``cd.load`` reaches it through :data:`.io.VARIANTS`): the model (and a latent node's
    autoencoder) rebuilt from its saved diffusers config and weights (no download, no pickle)."""
    try:
        raw, cfg = config["pretrained"], DiffusionConfig.model_validate(config["config"])

        def denoiser() -> DiffusersDenoiser:  # the config checked before anything is allocated
            return DiffusersDenoiser(from_config(raw["unet"], DENOISERS, "saved pretrained denoiser config"),
                                     NoiseSchedule(cfg.schedule).alphas_cumprod, raw["prediction_type"])

        groups = groups_of(tensors)
        with torch.device("meta"):
            denoiser()
    except SerializationError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise SerializationError(f"not a saved pretrained diffusion mechanism: {e}") from e
    check_state(denoiser, groups["denoiser"], "saved denoiser")
    device = next(iter(tensors.values())).device if tensors else torch.device("cpu")
    m = PretrainedDiffusionMechanism(cfg, autoencoder=load_autoencoder(config, groups["autoencoder"], device))
    m.denoiser, m.frozen = load_net(denoiser(), groups["denoiser"], "denoiser", device), bool(raw["frozen"])
    if config.get("state") is not None:
        m.state, m._device = state_of(config["state"], groups, cfg), device
        if groups["predictor"]:
            def predictor() -> nn.Module:
                return build_predictor(m.state.predictor, m.state.net_shape, m.state.predictor_out_dim(cfg),
                                       m.schedule.num_train_timesteps)

            check_state(predictor, groups["predictor"], "saved predictor")
            m.predictor = load_net(predictor(), groups["predictor"], "predictor", device)
        m.fitted_parents = tuple(config.get("parents") or m.state.parent_codec.order)
    return m


PretrainedDiffusionMechanism.load_saved = staticmethod(load_pretrained)
VARIANTS["pretrained"] = PretrainedDiffusionMechanism

__all__ = ["DIT_DROPOUT", "DiffusersDenoiser", "PretrainedDiffusionMechanism", "import_schedule", "load_pretrained",
           "scheduler_config"]
