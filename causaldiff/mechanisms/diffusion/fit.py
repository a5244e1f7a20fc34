"""Fitting a diffusion node: record its state, then train the denoiser (and the anti-causal
predictor) with the shared diffusion training loop."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...diffusion.nets import (ImagePredictorConfig, MLPConfig, MLPPredictorConfig, UNetConfig,
                               build_denoiser, build_predictor)
from ...diffusion.schedule import NoiseSchedule
from ...diffusion.train import train_denoiser, train_predictor
from ...errors import DataError
from ...rng import generator
from ...training.seeding import seeded_init
from ..base import Parents
from ..codecs import ParentCodec
from .config import DiffusionConfig
from .state import DiffusionState


def check_rows(x: Tensor, node: str) -> None:
    """Training values: a floating tensor of at least 2 finite rows."""
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1 or x.shape[0] < 2:
        raise DataError(f"node {node!r}: needs a floating tensor of at least 2 rows, got "
                        f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
    if not torch.isfinite(x).all():
        raise DataError(f"node {node!r}: training values contain NaN or Inf")


def record_state(config: DiffusionConfig, x: Tensor, parents: Parents, parent_order: tuple[str, ...], *,
                 node: str, device: torch.device, event_shape: tuple[int, ...] | None = None) -> DiffusionState:
    """The event shape, parent codec, value statistics (float32 on ``device``) and networks; with
    ``event_shape`` (a latent node's images), ``x`` are the node's latents."""
    n, event = x.shape[0], tuple(x.shape[1:])
    codec = ParentCodec.fit(parents, parent_order, n, node=node, standardize=True, device=device)
    try:
        config.check_scales(codec.order)
    except ValueError as e:
        raise DataError(f"node {node!r}: {e}") from None
    image = len(event) == 3
    net = config.net if config.net is not None else (UNetConfig() if image else MLPConfig())
    predictor = config.predictor
    if config.guidance == "anticausal" and predictor is None and codec.parents:
        predictor = ImagePredictorConfig() if image else MLPPredictorConfig()
    standardize = config.standardize if config.standardize is not None else not image
    stats: dict[str, Tensor] = {}
    if standardize:
        flat = x.to(device=device, dtype=torch.float32).reshape(n, *(event or (1,)))
        stats["x_mean"], stats["x_std"] = flat.mean(0), flat.std(0).clamp_min(1e-6)
    latent = None if event_shape is None else event
    return DiffusionState(event if latent is None else tuple(event_shape), codec, net, predictor, stats, latent)


def build_networks(config: DiffusionConfig, state: DiffusionState,
                   device: torch.device) -> tuple[nn.Module, nn.Module | None]:
    """Fresh denoiser (and predictor, for anti-causal guidance with parents) on ``device``."""
    T = config.schedule.num_train_timesteps
    net = build_denoiser(state.net, state.net_shape, state.cond_dim(config), T, state.cond_layout(config)).to(device)
    predictor = None
    if config.guidance == "anticausal" and state.parent_codec.parents:
        predictor = build_predictor(state.predictor, state.net_shape, state.predictor_out_dim(config), T)
        predictor = predictor.to(device)
    return net, predictor


def fit_networks(config: DiffusionConfig, state: DiffusionState, schedule: NoiseSchedule, x: Tensor,
                 parents: Parents, *, device: torch.device, node: str,
                 desc: str = "") -> tuple[nn.Module, nn.Module | None]:
    """Train the denoiser on the standardised rows (and the noisy parent predictor); returns the
    EMA networks. The initial weights are drawn from ``config.train.seed``."""
    n = x.shape[0]
    z = state.to_internal(x, device)
    cond, targets = state.condition(config, parents, n, device, node)
    net, predictor = seeded_init(lambda: build_networks(config, state, torch.device("cpu")),
                                 generator(config.train.seed))
    net, predictor = net.to(device), None if predictor is None else predictor.to(device)
    label = desc or f"fit {node}"
    denoiser = train_denoiser(net, z, schedule, config.train, cond=cond, cond_dropout=config.cond_dropout,
                              desc=f"{label} (denoiser)").ema
    if predictor is not None:
        predictor = train_predictor(predictor, z, targets, state.heads(config), schedule, config.predictor_train,
                                    desc=f"{label} (anti-causal predictor)").ema
    return denoiser, predictor
