"""Latent image nodes: the diffusion runs in the latent space of an autoencoder declared on the
node (latent diffusion, Rombach et al. 2022, Sec. 3), as a class-conditional DiT does (Peebles &
Xie 2023).

Abduction encodes the factual image to the encoder's mean (deterministically: no draw from the
posterior), scaled by the autoencoder's ``scaling_factor``, then inverts DDIM there under the
factual parents; prediction generates in latent space and decodes. So no query can return an
image closer to the factual than the autoencoder's reconstruction ``decode(encode(x))``: that
error is the node's tolerance floor (:meth:`Autoencoder.floor`), which the law checker adds to
the node's tolerance and reports.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .diffusers_files import AUTOENCODERS, from_config, load_model, model_config

#: rows encoded or decoded at once (bounds the autoencoder's activations)
CHUNK = 256


class Autoencoder(nn.Module):
    """A frozen diffusers ``AutoencoderKL`` (an object or a local folder) as a node's latent codec:
    ``encode(x) = (mean(q(z | x)) - shift) * scale``, ``decode(z) = D(z / scale + shift)``."""

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = load_model(vae, AUTOENCODERS, "the autoencoder").eval().requires_grad_(False)
        c = self.vae.config
        self.scale, self.shift = float(c.scaling_factor), float(getattr(c, "shift_factor", None) or 0.0)

    @classmethod
    def saved(cls, config: dict[str, Any]) -> "Autoencoder":
        """The (untrained) autoencoder a saved config describes, checked before it is built."""
        return cls(from_config(config, AUTOENCODERS, "saved autoencoder config"))

    def get_config(self) -> dict[str, Any]:
        return model_config(self.vae)

    def latent_shape(self, event: tuple[int, ...]) -> tuple[int, ...]:
        """The latent ``(c, h, w)`` of images ``event = (C, H, W)``, or an error naming the mismatch."""
        c = self.vae.config
        factor = 2 ** (len(c.block_out_channels) - 1)
        if len(event) != 3 or event[0] != c.in_channels or event[1] % factor or event[2] % factor:
            raise ValueError(f"the autoencoder takes images ({c.in_channels}, H, W) with H, W divisible by "
                             f"{factor}, got rows of shape {tuple(event)}")
        return (c.latent_channels, event[1] // factor, event[2] // factor)

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        dtype = next(self.vae.parameters()).dtype
        z = [self.vae.encode(part.to(dtype)).latent_dist.mean for part in x.split(CHUNK)]
        return ((torch.cat(z) - self.shift) * self.scale).float()

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        dtype = next(self.vae.parameters()).dtype
        return torch.cat([self.vae.decode((part / self.scale + self.shift).to(dtype)).sample
                          for part in z.split(CHUNK)]).float()

    def floor(self, x: Tensor) -> float:
        """The reconstruction error ``error(decode(encode(x)), x)`` (the law checker's measure)."""
        from ...testing.report import error

        return error(self.decode(self.encode(x)), x)


__all__ = ["Autoencoder", "CHUNK"]
