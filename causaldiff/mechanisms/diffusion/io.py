"""Saving and loading a diffusion mechanism: a JSON config (format 2: hyperparameters and the
fitted state apart) plus flat tensors (``stats.*``, ``denoiser.*``, ``predictor.*``); no code.
A pretrained diffusers UNet adds its diffusers config under ``"pretrained"`` (what
``save_pretrained`` writes as config.json) and its weights as ``denoiser.unet.*``; a latent node's
autoencoder its diffusers config under ``"autoencoder"`` and its weights as ``autoencoder.*``.

Format 1 (the state inside the config) is still read."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import TypeAdapter, ValidationError
from torch import Tensor, nn

from ...diffusion.nets import DenoiserConfig, PredictorConfig
from ...errors import SerializationError
from ..base import Mechanism
from ..codecs import ParentCodec
from ..saved import check_state, check_statistics
from .config import DiffusionConfig
from .fit import build_networks
from .latent import Autoencoder
from .state import DiffusionState


FORMAT = 2
#: subclasses saved with an extra config section, by that section's key; each has ``build`` and
#: ``load_saved(config, tensors)`` (``pretrained.py`` adds ``"pretrained"`` when the package loads)
VARIANTS: dict[str, Any] = {}
_NET, _PREDICTOR = TypeAdapter(DenoiserConfig), TypeAdapter(PredictorConfig | None)


def saved_config(m: Mechanism) -> dict[str, Any]:
    """A diffusion mechanism's saved config (``m``: a :class:`~.mechanism.DiffusionMechanism`, which
    imports this module: typed by the base class so the two never import each other)."""
    s = m.state
    state = None if s is None else {
        "event_shape": list(s.event_shape), "parent_codec": s.parent_codec.get_config(),
        "net": _NET.dump_python(s.net, mode="json"), "predictor": _PREDICTOR.dump_python(s.predictor, mode="json"),
        "latent_shape": None if s.latent_shape is None else list(s.latent_shape)}
    latent = {} if m.autoencoder is None else {"autoencoder": m.autoencoder.get_config()}
    return {"format": FORMAT, "config": m.config.model_dump(mode="json"), "state": state,
            "parents": list(m.fitted_parents) if m.fitted_parents is not None else None, **latent}


def saved_tensors(m: Mechanism) -> dict[str, Tensor]:
    out = {} if m.autoencoder is None else {f"autoencoder.{k}": v for k, v in m.autoencoder.state_dict().items()}
    if m.state is None:
        return out
    out.update({f"stats.{k}": v for k, v in m.state.stats.items()})
    out.update({f"stats.parent.{k}": v for k, v in m.state.parent_codec.state_tensors().items()})
    for prefix, net in (("denoiser", m.denoiser), ("predictor", m.predictor)):
        if net is not None:
            out.update({f"{prefix}.{k}": v for k, v in net.state_dict().items()})
    return out


def _upgrade(config: dict[str, Any]) -> dict[str, Any]:
    """A format-1 config (event shape, parents and resolved networks inside ``config``) as format 2."""
    cfg = dict(config.get("config") or {})
    event, parents = cfg.pop("event_shape", None), cfg.pop("parents", None)
    state = None if event is None else {
        "event_shape": event, "parent_codec": {"parents": parents or [], "standardize": True},
        "net": cfg.get("net"), "predictor": cfg.get("predictor")}
    return {"format": FORMAT, "config": cfg, "state": state, "parents": config.get("parents")}


def groups_of(tensors: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    groups: dict[str, dict[str, Tensor]] = {"stats": {}, "parent": {}, "denoiser": {}, "predictor": {},
                                            "autoencoder": {}}
    for k, v in tensors.items():
        head, _, rest = k.partition(".")
        if head == "stats" and rest.startswith("parent."):
            head, rest = "parent", rest[len("parent."):]
        if head not in groups:
            raise SerializationError(f"unexpected tensor {k!r} in a saved DiffusionMechanism")
        groups[head][rest] = v
    return groups


def state_of(raw: dict[str, Any], groups: dict[str, dict[str, Tensor]], config: DiffusionConfig) -> DiffusionState:
    try:
        net, predictor = _NET.validate_python(raw["net"]), _PREDICTOR.validate_python(raw["predictor"])
        event = tuple(int(d) for d in raw["event_shape"])
        latent = None if raw.get("latent_shape") is None else tuple(int(d) for d in raw["latent_shape"])
    except (KeyError, TypeError, ValueError, ValidationError) as e:
        raise SerializationError(f"not a saved DiffusionMechanism state: {e}") from e
    codec = ParentCodec.from_saved(raw["parent_codec"], {k: v.float() for k, v in groups["parent"].items()})
    state = DiffusionState(event, codec, net, predictor, {}, latent)
    standardize = config.standardize if config.standardize is not None else not state.is_image
    shapes = {"x_mean": state.net_shape, "x_std": state.net_shape} if standardize else {}
    check_statistics(groups["stats"], shapes, "saved DiffusionMechanism", positive=("x_std",))
    state.stats = {k: v.float() for k, v in groups["stats"].items()}
    return state


def load(cls: type[Mechanism], config: dict[str, Any], tensors: dict[str, Tensor]) -> Mechanism:
    """The mechanism saved as ``(saved_config(m), saved_tensors(m))``, on the tensors' device."""
    config = config if config.get("format") == FORMAT else _upgrade(config)
    variant = next((VARIANTS[k] for k in VARIANTS if k in config), None)
    if variant is not None:
        return variant.load_saved(config, tensors)
    try:
        cfg = DiffusionConfig.model_validate(config["config"])
    except (KeyError, TypeError, ValidationError) as e:
        raise SerializationError(f"not a saved DiffusionMechanism config: {e}") from e
    groups = groups_of(tensors)
    device = next(iter(tensors.values())).device if tensors else torch.device("cpu")
    m = cls(cfg, autoencoder=load_autoencoder(config, groups["autoencoder"], device))
    if config.get("state") is None:
        if any(groups[k] for k in groups if k != "autoencoder"):
            raise SerializationError("an unfitted DiffusionMechanism was saved with weights")
        return m
    m.state, m._device = state_of(config["state"], groups, cfg), device
    check_networks(cfg, m.state, groups)
    net, predictor = build_networks(cfg, m.state, torch.device("cpu"))
    m.denoiser = load_net(net, groups["denoiser"], "denoiser", device)
    if predictor is not None:
        m.predictor = load_net(predictor, groups["predictor"], "predictor", device)
    elif groups["predictor"]:
        raise SerializationError("saved predictor weights for a mechanism without a predictor")
    parents = config.get("parents")
    m.fitted_parents = tuple(parents) if parents is not None else m.state.parent_codec.order
    return m


def check_networks(cfg: DiffusionConfig, state: DiffusionState, groups: dict[str, dict[str, Tensor]]) -> None:
    """The saved weights against the networks the config builds (on ``meta``: nothing allocated)."""
    with torch.device("meta"):
        nets = build_networks(cfg, state, torch.device("meta"))
    for net, what in zip(nets, ("denoiser", "predictor")):
        if net is not None:
            check_state(lambda: net, groups[what], f"saved {what}")


def load_autoencoder(config: dict[str, Any], tensors: dict[str, Tensor], device: torch.device) -> Autoencoder | None:
    """A latent node's saved autoencoder (config checked, weights checked on meta, then loaded), or None."""
    raw = config.get("autoencoder")
    if raw is None:
        if tensors:
            raise SerializationError("saved autoencoder weights for a node without an autoencoder")
        return None
    if not isinstance(raw, dict):
        raise SerializationError(f"saved autoencoder config is not a config (a {type(raw).__name__})")
    check_state(lambda: Autoencoder.saved(raw), tensors, "saved autoencoder")
    return load_net(Autoencoder.saved(raw), tensors, "autoencoder", device)


def load_net(net: nn.Module, state: dict[str, Tensor], what: str, device: torch.device) -> nn.Module:
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise SerializationError(f"saved {what} weights do not match its config: {e}") from e
    return net.to(device).eval().requires_grad_(False)
