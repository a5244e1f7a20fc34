"""What fitting a diffusion mechanism records: shapes, the parent codec, statistics, networks.

Kept apart from :class:`DiffusionConfig` (the hyperparameters), so inference settings can change
(:meth:`DiffusionMechanism.with_inference`) without touching anything learned from data.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...diffusion.guidance import ParentHead
from ...diffusion.nets import DenoiserConfig, PredictorConfig
from ..base import Parents
from ..codecs import ParentCodec
from .config import DiffusionConfig


class DiffusionState:
    """The fitted state of a diffusion node.

    ``event_shape`` is the node's per-row shape (``()`` for scalars); ``parent_codec`` encodes the
    parents as at fit (continuous parents standardised); ``stats`` holds the value statistics
    ``x_mean`` / ``x_std`` when values are standardised; ``net`` / ``predictor`` are the network
    configs actually built (the config's, or the defaults chosen for the event shape);
    ``latent_shape`` is the per-row shape in an autoencoder's latent space, where the networks and
    the noise live, for a latent node (:mod:`.latent`; ``None``: a pixel node).
    """

    def __init__(self, event_shape: tuple[int, ...], parent_codec: ParentCodec, net: DenoiserConfig,
                 predictor: PredictorConfig | None, stats: dict[str, Tensor],
                 latent_shape: tuple[int, ...] | None = None) -> None:
        self.event_shape, self.parent_codec = tuple(event_shape), parent_codec
        self.net, self.predictor, self.stats = net, predictor, dict(stats)
        self.latent_shape = None if latent_shape is None else tuple(latent_shape)

    @property
    def is_image(self) -> bool:
        return len(self.event_shape) == 3

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """The per-row shape of the node's exogenous noise (the latent's for a latent node)."""
        return self.latent_shape if self.latent_shape is not None else self.event_shape

    @property
    def net_shape(self) -> tuple[int, ...]:
        """The shape the networks see per row (scalars become ``(1,)``)."""
        return self.noise_shape if self.noise_shape else (1,)

    def heads(self, config: DiffusionConfig) -> tuple[ParentHead, ...]:
        """One anti-causal predictor head per parent, with its guidance scale."""
        return tuple(ParentHead(p.name, p.kind, p.width, config.scale_of(p.name))
                     for p in self.parent_codec.parents)

    def cond_dim(self, config: DiffusionConfig) -> int:
        """Width of a conditional denoiser's conditioning vector (0: unconditional)."""
        if config.guidance != "conditional" or not self.parent_codec.parents:
            return 0
        return self.parent_codec.width + 1  # + the "parents present" flag

    def cond_layout(self, config: DiffusionConfig) -> tuple[tuple[int, bool], ...]:
        """``(width, categorical)`` per parent in the conditioning vector (empty: unconditional)."""
        if not self.cond_dim(config):
            return ()
        return tuple((p.width, p.kind == "categorical") for p in self.parent_codec.parents)

    def predictor_out_dim(self, config: DiffusionConfig) -> int:
        return sum(h.out_dim for h in self.heads(config))

    def condition(self, config: DiffusionConfig, parents: Parents, n: int, device: torch.device,
                  node: str) -> tuple[Tensor | None, tuple[Tensor, ...]]:
        """``(cond vector for a conditional denoiser or None, predictor targets per parent)``."""
        features, targets = self.parent_codec.encode(parents, n, dtype=torch.float32, device=device, node=node)
        if not self.cond_dim(config):
            return None, targets
        return torch.cat([features, torch.ones(n, 1, device=device)], dim=1), targets

    def to_internal(self, x: Tensor, device: torch.device) -> Tensor:
        """Node value -> standardised network input of shape ``(n, *net_shape)``."""
        x = x.to(device=device, dtype=torch.float32).reshape(x.shape[0], *self.net_shape)
        if "x_mean" in self.stats:
            x = (x - self.stats["x_mean"]) / self.stats["x_std"]
        return x

    def from_internal(self, z: Tensor) -> Tensor:
        if "x_mean" in self.stats:
            z = z * self.stats["x_std"] + self.stats["x_mean"]
        return z.reshape(z.shape[0], *self.noise_shape)

    def to(self, device: torch.device) -> "DiffusionState":
        """This state with its tensors on ``device`` (a new object; this one is unchanged)."""
        codec = ParentCodec(self.parent_codec.parents, standardize=self.parent_codec.standardize,
                            stats={k: v.to(device) for k, v in self.parent_codec.stats.items()})
        return DiffusionState(self.event_shape, codec, self.net, self.predictor,
                              {k: v.to(device) for k, v in self.stats.items()}, self.latent_shape)

    def __repr__(self) -> str:
        return f"DiffusionState({self.event_shape}, {self.parent_codec}, {math.prod(self.net_shape)} features)"
