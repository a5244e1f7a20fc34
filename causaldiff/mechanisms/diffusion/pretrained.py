"""Pretrained diffusers ``UNet2DModel`` denoisers as image nodes (Diff-SCM's setting: a pretrained
unconditional diffusion model steered by a noisy anti-causal predictor).

``DiffusionMechanism.from_diffusers(unet, scheduler)`` takes a ``UNet2DModel`` object or a local
directory written by ``save_pretrained`` (never a download), imports the noise schedule of a
diffusers scheduler (an object, its config dict, or a local ``scheduler_config.json``) exactly as
diffusers computes it (float32 tables held in float64), and converts the model's output to the
noise prediction ``eps`` the DDIM sampler needs:

* ``epsilon``: as is;
* ``v_prediction`` (Salimans & Ho 2022, ``v = sqrt(a) eps - sqrt(1 - a) x_0`` with
  ``x_t = sqrt(a) x_0 + sqrt(1 - a) eps``): ``eps = sqrt(a) v + sqrt(1 - a) x_t``;
* ``sample`` (the model predicts ``x_0``): ``eps = (x_t - sqrt(a) x_0) / sqrt(1 - a)``.

The UNet is frozen by default, so ``scm.fit`` trains only the anti-causal predictor; it is saved in
the SCM's weights with its diffusers config and rebuilt on ``cd.load``. diffusers is imported only
here, and only when a UNet is built or loaded (``pip install causaldiff[diffusers]``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ...diffusion.nets import build_predictor
from ...diffusion.schedule import NoiseSchedule, ScheduleConfig
from ...diffusion.train import train_denoiser, train_predictor
from ...errors import DataError, SerializationError
from ...limits import MAX_PARAMETERS, MAX_WIDTH
from ...optional import optional_import
from ...training.seeding import seeded_module
from ..saved import check_state
from .config import DiffusionConfig
from .fit import check_rows, record_state
from .io import VARIANTS, groups_of, load_net, saved_config, saved_tensors, state_of
from .mechanism import DiffusionMechanism

PredictionType = Literal["epsilon", "v_prediction", "sample"]
#: diffusers' DDPMScheduler defaults, used when no scheduler is given or found
DDPM_DEFAULTS: dict[str, Any] = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02,
                                 "beta_schedule": "linear", "prediction_type": "epsilon"}
_KINDS = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}
#: settings from_diffusers decides itself
_FIXED = ("guidance", "net", "schedule", "cfg_scale", "cond_dropout")


def _diffusers():
    return optional_import("diffusers", "diffusers", "pretrained diffusers models")


class DiffusersDenoiser(nn.Module):
    """``eps(x_t, t)`` from a diffusers UNet predicting ``prediction_type`` (module docstring)."""

    def __init__(self, unet: nn.Module, alphas_cumprod: Tensor, prediction_type: PredictionType) -> None:
        super().__init__()
        if prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"prediction_type {prediction_type!r} is not supported "
                             "(epsilon, v_prediction or sample)")
        self.unet, self.prediction_type = unet, prediction_type
        self.register_buffer("alphas_cumprod", alphas_cumprod.to(torch.float64), persistent=False)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        out = self.unet(x, t, return_dict=False)[0]
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
        return json.loads(path.read_text())
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


#: the one weights file load_unet reads (a ``.bin`` is a pickle: never read)
WEIGHTS = "diffusion_pytorch_model.safetensors"
#: UNet2DModel config fields that must be positive integers (or lists / pairs of them)
_POSITIVE = ("in_channels", "out_channels", "sample_size", "block_out_channels", "layers_per_block", "norm_num_groups")


def check_unet_config(config: Mapping[str, Any], where: str) -> None:
    """Refuse, before anything is allocated, a diffusers config that is not a ``UNet2DModel``'s, a
    field that is not a positive integer, or a network of more than :data:`MAX_PARAMETERS`
    parameters (counted on the meta device)."""
    kind = config.get("_class_name", "UNet2DModel")
    if kind != "UNet2DModel":
        raise SerializationError(f"{where}: _class_name={kind!r}; from_diffusers takes a UNet2DModel")
    for field in _POSITIVE:
        value = config.get(field)
        items = value if isinstance(value, (list, tuple)) else [value]
        if value is not None and not (items and all(type(v) is int and 0 < v <= MAX_WIDTH for v in items)):
            raise SerializationError(f"{where}: {field}={value!r} must be a positive integer (at most "
                                     f"{MAX_WIDTH}), or a list of them")
    try:
        with torch.device("meta"):
            count = sum(p.numel() for p in _diffusers().UNet2DModel.from_config(dict(config)).parameters())
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as e:
        raise SerializationError(f"{where}: not a valid UNet2DModel config ({type(e).__name__}: {e})") from None
    if count > MAX_PARAMETERS:
        raise SerializationError(f"{where}: a UNet2DModel of {count:,} parameters is more than MAX_PARAMETERS="
                                 f"{MAX_PARAMETERS:,} (block_out_channels={config.get('block_out_channels')})")


def load_unet(unet: Any) -> nn.Module:
    """A ``UNet2DModel`` object as is, or loaded from a local ``save_pretrained`` directory: its
    ``config.json`` checked (:func:`check_unet_config`) before anything is allocated, its weights
    read from :data:`WEIGHTS` only (a folder with only a pickled ``.bin`` is refused, never read)."""
    if isinstance(unet, (str, Path)):
        path = Path(unet)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a local directory written by save_pretrained "
                                    "(nothing is downloaded)")
        if not (path / WEIGHTS).is_file():
            raise SerializationError(f"{path}: no {WEIGHTS}; only safetensors weights are read (a pickled "
                                     "diffusion_pytorch_model.bin never is: convert it with save_pretrained("
                                     "safe_serialization=True))")
        try:
            config = json.loads((path / "config.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SerializationError(f"{path / 'config.json'}: cannot read it ({type(e).__name__}: {e})") from None
        if not isinstance(config, dict):
            raise SerializationError(f"{path / 'config.json'}: not a config (a {type(config).__name__})")
        check_unet_config(config, str(path / "config.json"))
        return _diffusers().UNet2DModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True,
                                                        low_cpu_mem_usage=False)
    if not isinstance(unet, _diffusers().UNet2DModel):
        raise TypeError(f"unet must be a diffusers UNet2DModel or a local directory, got {type(unet).__name__}")
    return unet


def _default_scheduler(unet: Any) -> Any:
    """A ``scheduler_config.json`` beside a local UNet directory (or in a pipeline's scheduler/)."""
    if isinstance(unet, (str, Path)):
        for where in (Path(unet), Path(unet).parent / "scheduler"):
            if (where / "scheduler_config.json").is_file():
                return where
    return None


class PretrainedDiffusionMechanism(DiffusionMechanism):
    """A :class:`DiffusionMechanism` whose unconditional denoiser is a pretrained diffusers UNet
    (``guidance="anticausal"``); build it with :meth:`DiffusionMechanism.from_diffusers`.

    ``frozen`` (default True): ``fit`` trains only the anti-causal predictor; False also fine-tunes
    the UNet with ``config.train``. Saved under the ``diffusion`` name with the UNet's config."""

    frozen: bool = True

    @classmethod
    def build(cls, unet: Any, scheduler: Any = None, *, frozen: bool = True,
              **settings: Any) -> "PretrainedDiffusionMechanism":
        fixed = sorted(set(settings) & set(_FIXED))
        if fixed:
            raise ValueError(f"from_diffusers sets {fixed} itself (from the UNet and the scheduler)")
        model = load_unet(unet)
        if getattr(model.config, "num_class_embeds", None) or getattr(model.config, "class_embed_type", None):
            raise ValueError("from_diffusers takes an unconditional UNet2DModel (no class embedding)")
        sched = scheduler if scheduler is not None else _default_scheduler(unet)
        schedule, prediction = import_schedule(scheduler_config(sched))
        m = cls(DiffusionConfig(guidance="anticausal", schedule=schedule, **settings))
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

    def _check_image(self, x: Tensor) -> None:
        c = self.unet.config
        size = c.sample_size if isinstance(c.sample_size, (tuple, list)) else (c.sample_size, c.sample_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != (c.in_channels, *size):
            raise DataError(f"node {self.node!r}: the pretrained UNet takes images (n, {c.in_channels}, "
                            f"{size[0]}, {size[1]}), got {tuple(x.shape)}")

    def fit(self, x: Tensor, parents: Mapping[str, Tensor], *, parent_order: tuple[str, ...], desc: str = "") -> None:
        """Record the state and train the anti-causal predictor (and, unless frozen, fine-tune the
        UNet); nothing is changed if the rows are refused."""
        check_rows(x, self.node)
        self._check_image(x)
        device = torch.device(self._device or x.device)
        state = record_state(self.config, x, parents, tuple(parent_order), node=self.node, device=device)
        z, label = state.to_internal(x, device), desc or f"fit {self.node}"
        denoiser = self.denoiser.to(device)
        if not self.frozen:
            denoiser = train_denoiser(denoiser.requires_grad_(True), z, self.schedule, self.config.train,
                                      desc=f"{label} (fine-tune UNet)").ema.requires_grad_(False)
        predictor = None
        if state.predictor is not None:
            _, targets = state.condition(self.config, parents, x.shape[0], device, self.node)
            net = seeded_module(lambda: build_predictor(state.predictor, state.net_shape, state.predictor_out_dim(
                self.config), self.schedule.num_train_timesteps), self.config.predictor_train.seed, device)
            predictor = train_predictor(net, z, targets, state.heads(self.config), self.schedule,
                                        self.config.predictor_train, desc=f"{label} (anti-causal predictor)").ema
        self.state, self._device, self.denoiser, self.predictor = state, device, denoiser, predictor
        self.fitted_parents = tuple(parent_order)

    def save_pretrained(self, path: str | Path) -> None:
        """Write the (possibly fine-tuned) UNet as diffusers does (config.json + safetensors)."""
        self.unet.save_pretrained(str(path), safe_serialization=True)

    def get_config(self) -> dict[str, Any]:
        unet = {k: v for k, v in dict(self.unet.config).items() if not k.startswith("_")}
        return {**saved_config(self), "pretrained": {
            "unet": json.loads(json.dumps(unet)), "prediction_type": self.denoiser.prediction_type,
            "frozen": self.frozen}}

    def state_tensors(self) -> dict[str, Tensor]:
        out = saved_tensors(self)
        if self.state is None:  # an unfitted mechanism still carries its pretrained UNet
            out.update({f"denoiser.{k}": v for k, v in self.denoiser.state_dict().items()})
        return out

    def __repr__(self) -> str:
        c, fitted = self.config, f"fitted {self.state.event_shape}" if self.state is not None else "unfitted"
        return (f"PretrainedDiffusionMechanism(diffusers UNet2DModel, {self.denoiser.prediction_type}, "
                f"s={c.guidance_scale}, K={self.sampler.num_steps}, T={self.schedule.num_train_timesteps}, "
                f"{'frozen' if self.frozen else 'fine-tuned'}, {fitted})")


def load_pretrained(config: dict[str, Any], tensors: dict[str, Tensor]) -> PretrainedDiffusionMechanism:
    """The mechanism saved by :meth:`PretrainedDiffusionMechanism.get_config` / ``state_tensors``
    (``cd.load`` reaches it through :data:`.io.VARIANTS`): the UNet rebuilt from its saved diffusers
    config and weights (no download, no pickle)."""
    try:
        raw, cfg = config["pretrained"], DiffusionConfig.model_validate(config["config"])

        def denoiser() -> DiffusersDenoiser:
            return DiffusersDenoiser(_diffusers().UNet2DModel.from_config(raw["unet"]),
                                     NoiseSchedule(cfg.schedule).alphas_cumprod, raw["prediction_type"])

        groups = groups_of(tensors)
        check_unet_config(raw["unet"], "saved pretrained UNet config")  # before anything is allocated
        with torch.device("meta"):
            denoiser()
    except SerializationError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise SerializationError(f"not a saved pretrained diffusion mechanism: {e}") from e
    check_state(denoiser, groups["denoiser"], "saved denoiser")
    m = PretrainedDiffusionMechanism(cfg)
    device = next(iter(tensors.values())).device if tensors else torch.device("cpu")
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

__all__ = ["WEIGHTS", "check_unet_config", "DiffusersDenoiser", "PretrainedDiffusionMechanism", "import_schedule", "load_pretrained",
           "load_unet", "scheduler_config"]
