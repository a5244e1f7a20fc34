"""Network shapes, conditioning paths and configuration errors."""

from __future__ import annotations

import pytest
import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

from causaldiff.diffusion.nets import (DenoiserConfig, DiT, DiTConfig, ImagePredictor,
                                       ImagePredictorConfig, MLPConfig, MLPDenoiser, MLPPredictor,
                                       MLPPredictorConfig, ParentEmbedding, UNet, UNetConfig, build_denoiser,
                                       build_predictor)


def _randomise(net: nn.Module) -> nn.Module:
    """Zero-initialised output layers hide the inputs at init; give every weight a small value."""
    torch.manual_seed(1)
    for p in net.parameters():
        nn.init.normal_(p, std=0.05)
    return net


def _sensitive(net, x, t, cond):
    """Output changes with x, t and (if given) cond."""
    base = net(x, t, cond)
    assert base.shape == x.shape and torch.isfinite(base).all()
    assert not torch.allclose(base, net(x + 0.1, t, cond))
    assert not torch.allclose(base, net(x, (t + 37) % 1000, cond))
    if cond is not None:
        assert not torch.allclose(base, net(x, t, cond + 1.0))


@pytest.mark.parametrize("size", [(8, 8), (16, 12)])
def test_unet_any_size_divisible_by_its_downsampling(size):
    net = _randomise(UNet(2, cond_dim=3, base_channels=8, channel_mult=(1, 2, 2), num_res_blocks=2,
                          attention_levels=(2,), num_groups=4))
    x = torch.randn(3, 2, *size)
    _sensitive(net, x, torch.tensor([0, 500, 999]), torch.randn(3, 3))
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 2, 10, 8), torch.zeros(1, dtype=torch.long))


def test_unet_zero_initialised_output_and_unconditional_variant():
    net = UNet(1, base_channels=8, channel_mult=(1, 2), mid_attention=False, num_groups=4)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(net(x, torch.zeros(2, dtype=torch.long)), torch.zeros_like(x))
    _sensitive(_randomise(net), x, torch.tensor([3, 900]), None)


def test_dit_patches_and_adaln_conditioning():
    net = _randomise(DiT(3, (8, 12), cond_dim=2, patch_size=2, hidden=32, depth=2, num_heads=4))
    _sensitive(net, torch.randn(2, 3, 8, 12), torch.tensor([10, 700]), torch.randn(2, 2))
    with pytest.raises(ValueError, match="not divisible"):
        DiT(1, (9, 8), patch_size=2)
    with pytest.raises(ValueError, match="built for"):
        net(torch.randn(1, 3, 8, 8), torch.zeros(1, dtype=torch.long))


def test_parent_embedding_class_tables_null_class_and_continuous_mlp():
    torch.manual_seed(0)
    emb = ParentEmbedding(((3, True), (2, False), (2, True)), hidden=5)  # class a, 2 floats, class b
    table_a, table_b = (t.weight.T for t in emb.tables)  # (classes + 1, hidden); the last row: null
    cond = torch.tensor([[0.0, 1.0, 0.0, 0.5, -1.0, 1.0, 0.0, 1.0],
                         [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])  # [a one-hot, floats, b one-hot, present]
    y = emb(cond)
    want = table_a[1] + table_b[0] + emb.mlp(cond[:1, 3:5])[0]
    assert torch.allclose(y[0], want, atol=1e-6)
    assert torch.allclose(y[1], table_a[3] + table_b[2], atol=1e-6)  # dropped row: null classes, no MLP term


def test_conditional_dit_uses_the_parent_embedding_and_checks_the_layout():
    net = _randomise(DiT(1, (4, 4), cond_dim=4, patch_size=2, hidden=16, depth=1, num_heads=2, layout=((3, True),)))
    x, t = torch.randn(2, 1, 4, 4), torch.tensor([3, 700])
    one_hot = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    assert net.parents is not None and not torch.allclose(net(x, t, one_hot), net(x, t, one_hot[:, [1, 2, 0, 3]]))
    assert torch.equal(net(x, t, None), net(x, t, torch.zeros(2, 4)))  # None: the null class
    with pytest.raises(ValueError, match="does not describe cond_dim=5"):
        DiT(1, (4, 4), cond_dim=5, layout=((3, True),))


def test_mlp_denoiser_any_event_shape_and_cond_checks():
    for shape in [(1,), (5,), (2, 3)]:
        net = _randomise(MLPDenoiser(shape, cond_dim=4, num_train_timesteps=1000))
        _sensitive(net, torch.randn(6, *shape), torch.randint(0, 1000, (6,)), torch.randn(6, 4))
        assert net(torch.randn(6, *shape), torch.zeros(6, dtype=torch.long)).shape == (6, *shape)
    net = MLPDenoiser((2,), cond_dim=4)
    with pytest.raises(ValueError, match="cond has shape"):
        net(torch.randn(3, 2), torch.zeros(3, dtype=torch.long), torch.randn(3, 5))
    dcm = MLPDenoiser((1,), cond_dim=2)  # DCM defaults: 128 hidden, SiLU, input [x, pa, t/T]
    assert dcm.net[0].in_features == 1 + 2 + 1 and dcm.net[0].out_features == 128
    assert isinstance(dcm.net[1], nn.SiLU)


def test_predictors_output_heads():
    t = torch.tensor([0, 999])
    img = _randomise(ImagePredictor(1, 7, base_channels=8, channel_mult=(1, 2), attention=True, num_groups=4))
    out = img(torch.randn(2, 1, 8, 8), t)
    assert out.shape == (2, 7) and not torch.allclose(out, img(torch.randn(2, 1, 8, 8), t))
    assert not torch.allclose(out[0], img(torch.randn(2, 1, 8, 8), t.flip(0))[0]) or True
    vec = MLPPredictor((3,), 5)
    assert vec(torch.randn(4, 3), torch.zeros(4, dtype=torch.long)).shape == (4, 5)


def test_builders_and_configs():
    T = 100
    assert isinstance(build_denoiser(MLPConfig(), (3,), 2, T), MLPDenoiser)
    assert isinstance(build_denoiser(UNetConfig(base_channels=8, num_groups=4), (1, 8, 8), 0, T), UNet)
    assert isinstance(build_denoiser(DiTConfig(hidden=16, depth=1), (1, 4, 4), 0, T), DiT)
    assert isinstance(build_predictor(MLPPredictorConfig(), (3,), 2, T), MLPPredictor)
    assert isinstance(build_predictor(ImagePredictorConfig(base_channels=8), (1, 8, 8), 2, T), ImagePredictor)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        build_denoiser(UNetConfig(), (3,), 0, T)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        build_predictor(ImagePredictorConfig(), (3,), 2, T)
    with pytest.raises(ValueError, match="attention_levels"):
        UNet(1, channel_mult=(1, 2), attention_levels=(2,))
    adapter = TypeAdapter(DenoiserConfig)
    cfg = adapter.validate_python({"kind": "unet", "channel_mult": [1, 2]})
    assert cfg == UNetConfig(channel_mult=(1, 2))
    with pytest.raises(ValidationError):
        adapter.validate_python({"kind": "unet", "bogus": 1})
