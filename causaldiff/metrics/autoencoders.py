"""IM1 and IM2 interpretability metrics (Van Looveren & Klaise 2021).

``IM1 = ||x - AE_t(x)||^2 / (||x - AE_o(x)||^2 + eps)`` (target- vs original-class autoencoder) and
``IM2 = ||AE_t(x) - AE(x)||^2 / (||x||_1 + eps)`` (``AE`` trained on every class); lower is better.
Images are scored in ``[0, 1]`` (callers pass ``[-1, 1]``; ``value_range`` maps them).

After the paper's MNIST code: one convolutional autoencoder per class (``8 x H/4 x W/4`` latent),
stored as one grouped network (``groups = num_classes``: disjoint weights, each group trained on its
class only, so exactly independent autoencoders in one pass), and a global one (``1 x H/2 x W/2``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from pydantic import Field
from torch import Tensor, nn

from ..errors import DataError
from ..training import seeded_module
from ._checks import check_images, check_labels, resolve_device
from ._fit import MetricTrainConfig, fit_metric_model, with_seed


class AutoencoderConfig(MetricTrainConfig):
    """Hyperparameters of the IM1/IM2 autoencoders and their training."""

    hidden: int = Field(16, ge=1)
    class_latent_channels: int = Field(8, ge=1)
    class_downsamples: int = Field(2, ge=1, le=4)
    global_latent_channels: int = Field(1, ge=1)
    global_downsamples: int = Field(1, ge=1, le=4)


class GroupedConvAutoencoder(nn.Module):
    """``groups`` independent conv autoencoders on single-channel images, run in one network.

    Input ``(n, groups, H, W)`` (channel ``g`` goes to autoencoder ``g``), output likewise.
    """

    def __init__(self, groups: int, hidden: int, latent_channels: int, downsamples: int):
        super().__init__()
        g, h = groups, hidden

        def conv(cin: int, cout: int) -> nn.Conv2d:
            return nn.Conv2d(cin * g, cout * g, 3, padding=1, groups=g)

        enc: list[nn.Module] = [conv(1, h), nn.ReLU(), conv(h, h), nn.ReLU(), nn.MaxPool2d(2)]
        for _ in range(downsamples - 1):
            enc += [conv(h, h), nn.ReLU(), nn.MaxPool2d(2)]
        enc.append(conv(h, latent_channels))
        dec: list[nn.Module] = [conv(latent_channels, h), nn.ReLU()]
        for _ in range(downsamples):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), conv(h, h), nn.ReLU()]
        dec.append(conv(h, 1))
        self.groups, self.downsamples = groups, downsamples
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


@dataclass
class AutoencoderSet:
    """Trained autoencoders for IM1/IM2 on ``[0, 1]`` images: ``class_ae`` ``(n, 1, H, W) -> (n, C, H,
    W)`` (channel ``c``: class ``c``'s), ``global_ae`` ``-> (n, 1, H, W)``; ``value_range``: the pixel
    range of the images the metrics receive."""

    class_ae: nn.Module
    global_ae: nn.Module
    num_classes: int
    value_range: tuple[float, float] = (-1.0, 1.0)
    #: training loss histories (the mean of each ``log_every`` window), by network
    history: dict[str, list[float]] = field(default_factory=dict)

    def to_unit(self, images: Tensor) -> Tensor:
        lo, hi = self.value_range
        return (images - lo) / (hi - lo)

    def to(self, device: torch.device | str) -> "AutoencoderSet":
        self.class_ae.to(device)
        self.global_ae.to(device)
        return self


class _PerClass(nn.Module):
    """Wraps the grouped network: broadcasts one image to every class's autoencoder."""

    def __init__(self, net: GroupedConvAutoencoder):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.expand(-1, self.net.groups, -1, -1))


def train_autoencoders(images: Tensor, labels: Tensor, *, num_classes: int | None = None,
                       config: AutoencoderConfig | None = None,
                       device: torch.device | str | None = None, seed: int | None = None,
                       value_range: tuple[float, float] = (-1.0, 1.0)) -> AutoencoderSet:
    """The per-class and global autoencoders, by MSE on ``[0, 1]`` images (each step ``batch_size``
    images of every class, and of any class), seeded ``seed`` (default ``config.seed``) and ``seed + 1``."""
    config = with_seed(config or AutoencoderConfig(), seed)
    factor = 2 ** max(config.class_downsamples, config.global_downsamples)
    check_images(images, "train_autoencoders", multiple_of=factor)
    k = check_labels(labels, images.shape[0], num_classes, "train_autoencoders")
    counts = torch.bincount(labels.cpu(), minlength=k)
    if (counts == 0).any():
        raise DataError(f"train_autoencoders: no training image of class "
                        f"{int((counts == 0).nonzero()[0])}")
    dev = resolve_device(device, images)
    lo, hi = value_range
    x = ((images - lo) / (hi - lo)).to(dev, torch.float32)
    global_config = with_seed(config, config.seed + 1)
    cls = seeded_module(lambda: GroupedConvAutoencoder(
        k, config.hidden, config.class_latent_channels, config.class_downsamples), config.seed, dev)
    glob = seeded_module(lambda: GroupedConvAutoencoder(
        1, config.hidden, config.global_latent_channels, config.global_downsamples),
        global_config.seed, dev)
    order = torch.argsort(labels.cpu(), stable=True)
    starts = torch.cumsum(counts, 0) - counts

    def class_batch(g: torch.Generator, b: int) -> Tensor:
        """``(b, k)`` image indices: column ``c`` holds ``b`` random images of class ``c``."""
        offs = (torch.rand(b, k, generator=g, dtype=torch.float64) * counts).long()
        return order[starts + offs.clamp_max(counts - 1)]

    def class_loss(net: nn.Module, idx: Tensor, _: torch.Generator) -> Tensor:
        batch = x[idx].squeeze(2)  # (b, k, H, W)
        # sum over classes of each autoencoder's own mean squared error
        return (net(batch) - batch).pow(2).mean(dim=(0, 2, 3)).sum()

    def global_loss(net: nn.Module, idx: Tensor, _: torch.Generator) -> Tensor:
        batch = x[idx]
        return (net(batch) - batch).pow(2).mean()

    history = {
        "class": fit_metric_model(cls, class_loss, len(x), config, desc="class autoencoders",
                                  sample_batch=class_batch),
        "global": fit_metric_model(glob, global_loss, len(x), global_config,
                                   desc="global autoencoder"),
    }
    return AutoencoderSet(_PerClass(cls).eval(), glob.eval(), k, (float(lo), float(hi)), history)


def _device_of(module: nn.Module, default: torch.device) -> torch.device:
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return default


def _reconstructions(aes: AutoencoderSet, x: Tensor, target: Tensor, original: Tensor | None
                     ) -> tuple[Tensor, Tensor, Tensor | None]:
    check_images(x, "IM1/IM2")
    check_labels(target, x.shape[0], aes.num_classes, "IM1/IM2 target")
    if original is not None:
        check_labels(original, x.shape[0], aes.num_classes, "IM1/IM2 original")
    x01 = aes.to_unit(x.to(_device_of(aes.class_ae, x.device)))
    with torch.no_grad():
        rec = aes.class_ae(x01)
    rt = rec.gather(1, target.to(rec.device).long()[:, None, None, None]
                    .expand(-1, 1, *rec.shape[-2:]))
    ro = None if original is None else rec.gather(
        1, original.to(rec.device).long()[:, None, None, None].expand(-1, 1, *rec.shape[-2:]))
    return x01, rt, ro


def im1(autoencoders: AutoencoderSet, counterfactuals: Tensor, target: Tensor, original: Tensor,
        eps: float = 1e-8) -> Tensor:
    """IM1 per row ``(n,)``: target-class over original-class reconstruction error."""
    x, rt, ro = _reconstructions(autoencoders, counterfactuals, target, original)
    num = (x - rt).pow(2).flatten(1).sum(1)
    den = (x - ro).pow(2).flatten(1).sum(1)
    return num.double() / (den.double() + eps)


def im2(autoencoders: AutoencoderSet, counterfactuals: Tensor, target: Tensor,
        eps: float = 1e-8) -> Tensor:
    """IM2 per row ``(n,)``: target-class vs global reconstruction, over the L1 norm of ``x``."""
    x, rt, _ = _reconstructions(autoencoders, counterfactuals, target, None)
    with torch.no_grad():
        rg = autoencoders.global_ae(x)
    num = (rt - rg).pow(2).flatten(1).sum(1)
    return num.double() / (x.abs().flatten(1).sum(1).double() + eps)
