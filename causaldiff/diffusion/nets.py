"""Networks: noise predictors ``eps(x_t, t, cond)`` and noisy anti-causal predictors ``(x_t, t) -> heads``.

* :class:`MLPDenoiser`: DCM-style MLP on ``[x, parents, t/T]`` for vectors and scalars (Chao et al.).
* :class:`UNet`: image denoiser with a sinusoidal time embedding, GroupNorm, SiLU, residual blocks with
  scale-shift conditioning and optional self-attention (Ho et al. 2020; Dhariwal & Nichol 2021).
* :class:`DiT`: transformer over image patches with adaLN-Zero conditioning (Peebles & Xie 2023).
* :class:`MLPPredictor` and :class:`ImagePredictor`: time-conditioned classifiers/regressors of
  the parents from noisy ``x_t`` (Diff-SCM's anti-causal predictors).

``cond`` is an optional ``(n, cond_dim)`` float vector encoding the parents; ``None`` means zeros.
Hyperparameters are frozen pydantic configs built into modules by :func:`build_denoiser` and
:func:`build_predictor`.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from ..limits import Depth, Width, check_hidden_parameters

_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


# ============================================================================= configs
class _MLPShape(BaseModel):
    """The width and depth of a time-conditioned MLP."""

    model_config = _FROZEN
    kind: Literal["mlp"] = "mlp"
    hidden: Width = 128
    num_layers: Depth = 3

    @model_validator(mode="after")
    def _bounded(self) -> "_MLPShape":
        check_hidden_parameters((self.hidden,) * self.num_layers, "hidden x num_layers")
        return self


class MLPConfig(_MLPShape):
    """DCM-style MLP denoiser (input ``[x, parents, t/T]``)."""

    #: "scalar": t/T as one input feature (DCM); "sinusoidal": a 32-dim sinusoidal embedding.
    time_embedding: Literal["scalar", "sinusoidal"] = "scalar"


class _ConvShape(BaseModel):
    """The levels of a time-conditioned convolutional network (GroupNorm, SiLU, residual blocks)."""

    model_config = _FROZEN
    base_channels: Width = 64
    channel_mult: tuple[Annotated[int, Field(ge=1, le=64)], ...] = Field((1, 2, 4), min_length=1, max_length=16)
    num_res_blocks: Depth = 1
    num_heads: Depth = 4
    num_groups: Width = 32
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class UNetConfig(_ConvShape):
    """UNet denoiser for ``(C, H, W)`` events; H and W divisible by ``2 ** (len(channel_mult) - 1)``."""

    kind: Literal["unet"] = "unet"
    #: levels (indices into channel_mult) with self-attention after each residual block
    attention_levels: tuple[int, ...] = ()
    mid_attention: bool = True


class DiTConfig(BaseModel):
    """DiT denoiser for ``(C, H, W)`` events; H and W divisible by ``patch_size``."""

    model_config = _FROZEN
    kind: Literal["dit"] = "dit"
    patch_size: Annotated[int, Field(ge=1, le=64)] = 2
    hidden: Width = 256
    depth: Depth = 6
    num_heads: Depth = 4
    mlp_ratio: float = Field(4.0, gt=0.0, le=64.0)


DenoiserConfig = Annotated[Union[MLPConfig, UNetConfig, DiTConfig], Field(discriminator="kind")]


class MLPPredictorConfig(_MLPShape):
    """Time-conditioned MLP classifier/regressor on ``[x, t/T]``."""

    time_embedding: Literal["scalar", "sinusoidal"] = "sinusoidal"


class ImagePredictorConfig(_ConvShape):
    """Time-conditioned convolutional encoder (the down half of a UNet) + pooled linear head."""

    kind: Literal["image"] = "image"
    base_channels: Width = 32
    channel_mult: tuple[Annotated[int, Field(ge=1, le=64)], ...] = Field((1, 2, 2), min_length=1, max_length=16)
    attention: bool = False


PredictorConfig = Annotated[Union[MLPPredictorConfig, ImagePredictorConfig], Field(discriminator="kind")]


# ============================================================================= shared pieces
def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps ``t`` of shape ``(n,)`` -> ``(n, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def _groups(channels: int, num_groups: int) -> int:
    """The largest group count <= ``num_groups`` dividing ``channels``."""
    g = min(num_groups, channels)
    while channels % g:
        g -= 1
    return g


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _cond_or_zeros(cond: Tensor | None, n: int, cond_dim: int, like: Tensor) -> Tensor | None:
    if cond_dim == 0:
        return None
    if cond is None:
        return like.new_zeros(n, cond_dim)
    if cond.shape != (n, cond_dim):
        raise ValueError(f"cond has shape {tuple(cond.shape)}, expected ({n}, {cond_dim})")
    return cond.to(like.dtype)


class _TimeCondEmbedding(nn.Module):
    """``emb = MLP(sinusoid(t)) + Linear(cond)``."""

    def __init__(self, base: int, emb_dim: int, cond_dim: int) -> None:
        super().__init__()
        self.base, self.cond_dim = base, cond_dim
        self.time = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.cond = nn.Linear(cond_dim, emb_dim) if cond_dim else None

    def forward(self, t: Tensor, cond: Tensor | None, like: Tensor) -> Tensor:
        emb = self.time(timestep_embedding(t, self.base).to(like.dtype))
        c = _cond_or_zeros(cond, t.shape[0], self.cond_dim, like)
        if self.cond is not None and c is not None:
            emb = emb + self.cond(c)
        return emb


# ============================================================================= MLPs
class _TimeMLP(nn.Module):
    """MLP on ``[flatten(x), extra, time features]`` -> ``out_dim``, SiLU activations."""

    def __init__(self, in_dim: int, extra_dim: int, out_dim: int, hidden: int, num_layers: int,
                 time_embedding: str, num_train_timesteps: int) -> None:
        super().__init__()
        self.T = num_train_timesteps
        self.time_embedding = time_embedding
        self.extra_dim = extra_dim
        t_dim = 1 if time_embedding == "scalar" else 32
        layers: list[nn.Module] = []
        d = in_dim + extra_dim + t_dim
        for _ in range(num_layers):
            layers += [nn.Linear(d, hidden), nn.SiLU()]
            d = hidden
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)

    def _features(self, x: Tensor, t: Tensor, extra: Tensor | None) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        if self.time_embedding == "scalar":
            tf = (t.to(flat.dtype) / self.T)[:, None]
        else:
            tf = timestep_embedding(t.float() * (1000.0 / self.T), 32).to(flat.dtype)
        parts = [flat]
        e = _cond_or_zeros(extra, x.shape[0], self.extra_dim, flat)
        if e is not None:
            parts.append(e)
        parts.append(tf)
        return torch.cat(parts, dim=1)


class MLPDenoiser(_TimeMLP):
    """``eps(x_t, t, cond)`` for any event shape, as an MLP on the flattened event (DCM)."""

    def __init__(self, event_shape: tuple[int, ...], cond_dim: int = 0, hidden: int = 128,
                 num_layers: int = 3, time_embedding: str = "scalar",
                 num_train_timesteps: int = 1000) -> None:
        dim = math.prod(event_shape)
        super().__init__(dim, cond_dim, dim, hidden, num_layers, time_embedding, num_train_timesteps)
        self.event_shape = tuple(event_shape)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.net(self._features(x, t, cond)).reshape(x.shape)


class MLPPredictor(_TimeMLP):
    """``(x_t, t) -> (n, out_dim)`` predictor heads from the flattened event."""

    def __init__(self, event_shape: tuple[int, ...], out_dim: int, hidden: int = 128,
                 num_layers: int = 3, time_embedding: str = "sinusoidal",
                 num_train_timesteps: int = 1000) -> None:
        super().__init__(math.prod(event_shape), 0, out_dim, hidden, num_layers, time_embedding,
                         num_train_timesteps)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(self._features(x, t, None))


# ============================================================================= UNet
class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the embedding applied as scale and shift after the second norm."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, num_groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch, num_groups), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch, num_groups), out_ch)
        self.drop = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over pixels, residual, zero-initialised output projection."""

    def __init__(self, ch: int, num_heads: int, num_groups: int) -> None:
        super().__init__()
        self.heads = num_heads if ch % num_heads == 0 else 1
        self.norm = nn.GroupNorm(_groups(ch, num_groups), ch)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.proj = _zero(nn.Conv1d(ch, ch, 1))

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        n, c, h, w = x.shape
        qkv = self.qkv(self.norm(x).reshape(n, c, h * w))
        q, k, v = qkv.reshape(n, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (n, heads, hw, c/heads)
        out = out.transpose(-1, -2).reshape(n, c, h * w)
        return x + self.proj(out).reshape(n, c, h, w)


class _Level(nn.ModuleList):
    """Residual blocks (each optionally followed by attention) applied in sequence."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for block in self:
            x = block(x, emb)
        return x


class UNet(nn.Module):
    """``eps(x_t, t, cond)`` for images ``(n, C, H, W)``."""

    def __init__(self, in_channels: int, cond_dim: int = 0, base_channels: int = 64,
                 channel_mult: tuple[int, ...] = (1, 2, 4), num_res_blocks: int = 1,
                 attention_levels: tuple[int, ...] = (), mid_attention: bool = True,
                 num_heads: int = 4, num_groups: int = 32, dropout: float = 0.0,
                 out_channels: int | None = None) -> None:
        super().__init__()
        if not channel_mult:
            raise ValueError("channel_mult must name at least one level")
        bad = [lv for lv in attention_levels if not 0 <= lv < len(channel_mult)]
        if bad:
            raise ValueError(f"attention_levels {bad} outside 0..{len(channel_mult) - 1}")
        self.factor = 2 ** (len(channel_mult) - 1)
        emb_dim = 4 * base_channels
        self.embed = _TimeCondEmbedding(base_channels, emb_dim, cond_dim)
        self.inp = nn.Conv2d(in_channels, base_channels, 3, padding=1)

        def res(i: int, o: int) -> ResBlock:
            return ResBlock(i, o, emb_dim, num_groups, dropout)

        def attn(c: int) -> AttentionBlock:
            return AttentionBlock(c, num_heads, num_groups)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips, ch = [base_channels], base_channels
        for level, mult in enumerate(channel_mult):
            out = base_channels * mult
            for _ in range(num_res_blocks):
                blocks = [res(ch, out)] + ([attn(out)] if level in attention_levels else [])
                self.down.append(_Level(blocks))
                ch = out
                skips.append(ch)
            if level < len(channel_mult) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid = _Level([res(ch, ch)] + ([attn(ch)] if mid_attention else []) + [res(ch, ch)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            out = base_channels * mult
            for _ in range(num_res_blocks + 1):
                blocks = [res(ch + skips.pop(), out)] + ([attn(out)] if level in attention_levels else [])
                self.up.append(_Level(blocks))
                ch = out
            if level > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.out = nn.Sequential(nn.GroupNorm(_groups(ch, num_groups), ch), nn.SiLU(),
                                 _zero(nn.Conv2d(ch, out_channels or in_channels, 3, padding=1)))
        self.num_res_blocks, self.levels = num_res_blocks, len(channel_mult)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        if x.dim() != 4 or x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ValueError(f"UNet needs (n, C, H, W) with H, W divisible by {self.factor}, "
                             f"got {tuple(x.shape)}")
        emb = self.embed(t, cond, x)
        h = self.inp(x)
        hs = [h]
        blocks = iter(self.down)
        for level in range(self.levels):
            for _ in range(self.num_res_blocks):
                h = next(blocks)(h, emb)
                hs.append(h)
            if level < self.levels - 1:
                h = self.downsample[level](h)
                hs.append(h)
        h = self.mid(h, emb)
        blocks = iter(self.up)
        for level in reversed(range(self.levels)):
            for _ in range(self.num_res_blocks + 1):
                h = next(blocks)(torch.cat([h, hs.pop()], dim=1), emb)
            if level > 0:
                h = self.upsample[self.levels - 1 - level](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h)


class ImagePredictor(nn.Module):
    """``(x_t, t) -> (n, out_dim)``: the UNet's down path, GroupNorm-SiLU, mean-pooled, linear head."""

    def __init__(self, in_channels: int, out_dim: int, base_channels: int = 32,
                 channel_mult: tuple[int, ...] = (1, 2, 2), num_res_blocks: int = 1,
                 attention: bool = False, num_heads: int = 4, num_groups: int = 32,
                 dropout: float = 0.0) -> None:
        super().__init__()
        emb_dim = 4 * base_channels
        self.factor = 2 ** (len(channel_mult) - 1)
        self.embed = _TimeCondEmbedding(base_channels, emb_dim, 0)
        self.inp = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        layers: list[nn.Module] = []
        ch = base_channels
        for level, mult in enumerate(channel_mult):
            out = base_channels * mult
            for _ in range(num_res_blocks):
                layers.append(ResBlock(ch, out, emb_dim, num_groups, dropout))
                ch = out
            if attention and level == len(channel_mult) - 1:
                layers.append(AttentionBlock(ch, num_heads, num_groups))
            if level < len(channel_mult) - 1:
                layers.append(_Downsample(ch))
        self.layers = _Level(layers)
        self.head = nn.Sequential(nn.GroupNorm(_groups(ch, num_groups), ch), nn.SiLU())
        self.fc = nn.Linear(ch, out_dim)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ValueError(f"ImagePredictor needs (n, C, H, W) with H, W divisible by "
                             f"{self.factor}, got {tuple(x.shape)}")
        emb = self.embed(t, None, x)
        h = self.layers(self.inp(x), emb)
        return self.fc(self.head(h).mean(dim=(-1, -2)))


class _Downsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.conv(x)


# ============================================================================= DiT
def _sincos_2d(h: int, w: int, dim: int) -> Tensor:
    """Fixed 2-D sine-cosine position embedding ``(h*w, dim)``: half the features per axis."""
    half = dim // 2
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    emb = torch.cat([timestep_embedding(ys.flatten(), half), timestep_embedding(xs.flatten(), dim - half)], 1)
    return emb


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-Zero (shift, scale, gate for attention and MLP)."""

    def __init__(self, hidden: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = num_heads
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        mlp = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp), nn.GELU(approximate="tanh"), nn.Linear(mlp, hidden))
        self.ada = nn.Sequential(nn.SiLU(), _zero(nn.Linear(hidden, 6 * hidden)))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        n, length, d = x.shape
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(c).chunk(6, dim=1)
        q, k, v = self.qkv(_modulate(self.norm1(x), sh1, sc1)).reshape(
            n, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, length, d)
        x = x + g1[:, None] * self.proj(a)
        return x + g2[:, None] * self.mlp(_modulate(self.norm2(x), sh2, sc2))


#: the parents' layout in a conditioning vector: ``(width, categorical)`` per parent, in order
CondLayout = tuple[tuple[int, bool], ...]


class ParentEmbedding(nn.Module):
    """The parents' embedding ``y`` of DiT's ``c = emb(t) + y`` (Peebles & Xie 2023, Sec. 3.2), from a
    conditioning vector ``[parent features, present flag]``: each categorical parent's one-hot picks
    a row of its class table, whose last row is the learned null class taken by rows whose flag is 0
    (classifier-free guidance's dropped rows, all zeros); continuous features go through an MLP
    (zero on null rows)."""

    def __init__(self, layout: CondLayout, hidden: int) -> None:
        super().__init__()
        self.layout, self.hidden = tuple((int(w), bool(cat)) for w, cat in layout), hidden
        # a bias-free linear map of [one-hot, null] is a class table whose last row is the null class
        self.tables = nn.ModuleList(nn.Linear(w + 1, hidden, bias=False) for w, cat in self.layout if cat)
        cont = sum(w for w, cat in self.layout if not cat)
        self.mlp = nn.Sequential(nn.Linear(cont, hidden), nn.SiLU(), nn.Linear(hidden, hidden)) if cont else None

    @property
    def width(self) -> int:
        return sum(w for w, _ in self.layout) + 1

    def forward(self, cond: Tensor) -> Tensor:
        present = cond[:, -1:]
        parts = cond[:, :-1].split([w for w, _ in self.layout], dim=1)
        tables = iter(self.tables)
        y = cond.new_zeros(cond.shape[0], self.hidden)
        for part, (_, cat) in zip(parts, self.layout):
            if cat:
                y = y + next(tables)(torch.cat([part, 1.0 - present], dim=1))
        if self.mlp is not None:
            y = y + present * self.mlp(torch.cat([p for p, (_, cat) in zip(parts, self.layout) if not cat], 1))
        return y


class DiT(nn.Module):
    """``eps(x_t, t, cond)`` for images: patchify, transformer blocks conditioned by adaLN-Zero on
    ``c = emb(t) + y`` (``y``: :class:`ParentEmbedding` when ``layout`` describes ``cond``, else
    ``Linear(cond)``), final modulated linear layer, unpatchify."""

    def __init__(self, in_channels: int, image_size: tuple[int, int], cond_dim: int = 0,
                 patch_size: int = 2, hidden: int = 256, depth: int = 6, num_heads: int = 4,
                 mlp_ratio: float = 4.0, layout: CondLayout = ()) -> None:
        super().__init__()
        if layout and sum(w for w, _ in layout) + 1 != cond_dim:
            raise ValueError(f"DiT parent layout {layout} does not describe cond_dim={cond_dim} (features + flag)")
        h, w = image_size
        if h % patch_size or w % patch_size:
            raise ValueError(f"DiT image size {image_size} is not divisible by patch_size={patch_size}")
        if hidden % num_heads:
            raise ValueError(f"DiT hidden={hidden} is not divisible by num_heads={num_heads}")
        self.c, self.p, self.grid = in_channels, patch_size, (h // patch_size, w // patch_size)
        self.patch = nn.Conv2d(in_channels, hidden, patch_size, stride=patch_size)
        self.register_buffer("pos", _sincos_2d(*self.grid, hidden)[None], persistent=False)
        self.embed = _TimeCondEmbedding(hidden, hidden, 0 if layout else cond_dim)
        self.parents = ParentEmbedding(layout, hidden) if layout else None
        self.blocks = nn.ModuleList(DiTBlock(hidden, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), _zero(nn.Linear(hidden, 2 * hidden)))
        self.final = _zero(nn.Linear(hidden, patch_size * patch_size * in_channels))

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        n = x.shape[0]
        gh, gw = self.grid
        if x.shape[1:] != (self.c, gh * self.p, gw * self.p):
            raise ValueError(f"DiT built for {(self.c, gh * self.p, gw * self.p)}, got {tuple(x.shape[1:])}")
        c = self.embed(t, None if self.parents else cond, x)
        if self.parents is not None:
            c = c + self.parents(_cond_or_zeros(cond, n, self.parents.width, x))
        tokens = self.patch(x).flatten(2).transpose(1, 2) + self.pos.to(x.dtype)
        for block in self.blocks:
            tokens = block(tokens, c)
        shift, scale = self.ada(c).chunk(2, dim=1)
        out = self.final(_modulate(self.norm(tokens), shift, scale))  # (n, L, p*p*C)
        out = out.reshape(n, gh, gw, self.p, self.p, self.c).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(n, self.c, gh * self.p, gw * self.p)


# ============================================================================= builders
def _image_channels(what: str, event_shape: tuple[int, ...]) -> int:
    """The channel count of a ``(C, H, W)`` event (``what`` names the network in the error)."""
    if len(event_shape) != 3:
        raise ValueError(f"{what} needs a (C, H, W) event, got {event_shape}")
    return event_shape[0]


def build_denoiser(config: MLPConfig | UNetConfig | DiTConfig, event_shape: tuple[int, ...],
                   cond_dim: int, num_train_timesteps: int, layout: CondLayout = ()) -> nn.Module:
    """Instantiate the denoiser described by ``config`` for one node's event shape; ``layout``
    describes the conditioning vector to a DiT (its class embeddings and MLP)."""
    c = config
    if isinstance(c, MLPConfig):
        return MLPDenoiser(event_shape, cond_dim, c.hidden, c.num_layers, c.time_embedding, num_train_timesteps)
    channels = _image_channels(f"a {c.kind} denoiser", event_shape)
    if isinstance(c, UNetConfig):
        return UNet(channels, cond_dim, c.base_channels, c.channel_mult, c.num_res_blocks, c.attention_levels,
                    c.mid_attention, c.num_heads, c.num_groups, c.dropout)
    return DiT(channels, (event_shape[1], event_shape[2]), cond_dim, c.patch_size, c.hidden, c.depth,
               c.num_heads, c.mlp_ratio, layout)


def build_predictor(config: MLPPredictorConfig | ImagePredictorConfig, event_shape: tuple[int, ...],
                    out_dim: int, num_train_timesteps: int) -> nn.Module:
    """Instantiate the anti-causal predictor described by ``config``."""
    c = config
    if isinstance(c, MLPPredictorConfig):
        return MLPPredictor(event_shape, out_dim, c.hidden, c.num_layers, c.time_embedding, num_train_timesteps)
    return ImagePredictor(_image_channels("an image predictor", event_shape), out_dim, c.base_channels,
                          c.channel_mult, c.num_res_blocks, c.attention, c.num_heads, c.num_groups, c.dropout)
