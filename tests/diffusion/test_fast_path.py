"""The fast path of the DDIM loops against eager float32: the guidance gradient under every
precision / compile / layout / padding setting, counterfactuals of a fitted image node, the
settings saved with the run, and (on CUDA) the captured guided loop with no host sync."""

from __future__ import annotations

import json

import networkx as nx
import pytest
import torch

import causaldiff as cd
from causaldiff.diffusion import (AntiCausalGuidance, DDIMConfig, DDIMSampler, FastNet, FixedRows, ImagePredictor,
                                  ImagePredictorConfig, InferenceConfig, NoiseSchedule, ParentHead,
                                  PredictorLikelihood, ScheduleConfig, UNet, UNetConfig, fast_eps,
                                  fast_net, guidance_gradient)
from causaldiff.mechanisms.categorical import CategoricalMechanism
from causaldiff.mechanisms.diffusion import DiffusionMechanism
from causaldiff.training import TrainConfig

HEADS = [ParentHead("digit", "categorical", 10, scale=2.0)]
#: relative L2 error of the guidance gradient allowed per precision (measured: bf16 ~6e-3, fp16 ~1e-3)
GRAD_TOL = {"fp32": 1e-5, "bf16": 3e-2, "fp16": 1e-2}


def _nets(device="cpu"):
    torch.manual_seed(0)
    unet = UNet(1, base_channels=16, channel_mult=(1, 2), num_groups=8).to(device).eval()
    pred = ImagePredictor(1, 10, base_channels=16, num_groups=8).to(device).eval()
    return unet, pred


def _batch(n=6, device="cpu"):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 28, 28, generator=g).to(device)
    return x, torch.full((n,), 400, device=device), [torch.arange(n, device=device) % 10]


SETTINGS = [InferenceConfig(precision="bf16"), InferenceConfig(precision="fp16"),
            InferenceConfig(channels_last=True), InferenceConfig(fixed_batch=8),
            InferenceConfig(precision="bf16", channels_last=True, fixed_batch=4),
            InferenceConfig(compile=True, compile_backend="aot_eager")]


@pytest.mark.parametrize("config", SETTINGS, ids=lambda c: "-".join(
    f"{k}={v}" for k, v in c.model_dump().items() if v != InferenceConfig.model_fields[k].default))
def test_guidance_gradient_and_guided_eps_match_eager_fp32(config):
    unet, pred = _nets()
    x, t, y = _batch()
    sched = NoiseSchedule(kind="linear", num_train_timesteps=1000)
    ref_grad = guidance_gradient(PredictorLikelihood(pred, HEADS), x, t, y)
    fast_pred = FastNet(pred, config) if (config.precision != "fp32" or config.compile or config.channels_last) else pred
    grad_fn = lambda a, b, c: guidance_gradient(PredictorLikelihood(fast_pred, HEADS), a, b, c)  # noqa: E731
    grad = fast_eps(grad_fn, config)(x, t, y)
    rel = ((grad - ref_grad).norm() / ref_grad.norm()).item()
    assert grad.dtype == torch.float32 and rel < GRAD_TOL[config.precision], rel
    assert ref_grad.abs().max() > 1e-3  # the gradient is not trivially zero
    ref_eps = AntiCausalGuidance(unet, PredictorLikelihood(pred, HEADS), sched)(x, t, y)
    fast_unet = FastNet(unet, config)
    eps = fast_eps(AntiCausalGuidance(fast_unet, PredictorLikelihood(fast_pred, HEADS), sched), config)(x, t, y)
    assert eps.shape == ref_eps.shape and eps.dtype == torch.float32
    assert (eps - ref_eps).abs().max() < (5e-2 if config.precision != "fp32" else 1e-4)


def test_fixed_rows_pads_the_last_piece_and_returns_exactly_the_rows():
    seen = []

    def eps(x, t, cond):
        seen.append(x.shape[0])
        return 2.0 * x + t[:, None] + cond[0][:, None].float()

    x, t, c = torch.randn(13, 3), torch.arange(13.0), [torch.arange(13)]
    out = FixedRows(eps, 5)(x, t, c)
    assert torch.equal(out, 2.0 * x + t[:, None] + c[0][:, None].float()) and seen == [5, 5, 5]


@pytest.fixture(scope="module")
def image_scm():
    gen = torch.Generator().manual_seed(0)
    n = 48
    c = torch.randint(0, 2, (n,), generator=gen)
    img = -torch.ones(n, 1, 8, 8)
    bright = (torch.arange(8) < 4)[None] ^ c.bool()[:, None]
    img[:, 0] = torch.where(bright[:, None, :], 1.0, -1.0).expand(n, 8, 8)
    img = img + 0.1 * torch.randn(n, 1, 8, 8, generator=gen)
    short = TrainConfig(steps=10, batch_size=16, lr=1e-3)
    mech = DiffusionMechanism(guidance="anticausal", guidance_scale=2.0, train=short, predictor_train=short,
                              schedule=ScheduleConfig(kind="cosine", num_train_timesteps=100),
                              sampler=DDIMConfig(num_inference_steps=4, inversion_fixed_point_iters=1),
                              net=UNetConfig(base_channels=8, channel_mult=(1, 2), num_groups=4),
                              predictor=ImagePredictorConfig(base_channels=8, channel_mult=(1, 2), num_groups=4))
    scm = cd.SCM(nx.DiGraph([("c", "img")]), {"c": CategoricalMechanism(), "img": mech}).fit({"c": c, "img": img})
    return scm, {"c": c[:10], "img": img[:10]}


def test_counterfactuals_under_fast_settings_agree_with_fp32(image_scm):
    scm, rows = image_scm
    do = {"c": 1 - rows["c"]}
    ref = scm.counterfactual(rows, do=do)
    mech = scm.mechanisms["img"]
    same = scm.with_mechanisms({"img": mech.with_inference(inference={})})
    assert torch.equal(same.counterfactual(rows, do=do)["img"], ref["img"])  # the default is eager fp32
    for setting, tol in (({"precision": "bf16"}, 0.1), ({"fixed_batch": 4}, 1e-4), ({"channels_last": True}, 1e-4),
                         ({"precision": "fp16", "fixed_batch": 16}, 0.05)):
        fast = scm.with_mechanisms({"img": mech.with_inference(inference=setting)})
        diff = (fast.counterfactual(rows, do=do, batch_size=4)["img"] - ref["img"]).abs().max().item()
        assert diff < tol, (setting, diff)
    assert (ref["img"] - rows["img"]).abs().max() > 1e-2  # the counterfactual changed the images


def test_inference_settings_are_validated_and_saved_with_the_run(image_scm, tmp_path):
    scm, rows = image_scm
    mech = scm.mechanisms["img"]
    fast = mech.with_inference(inference={"precision": "bf16", "fixed_batch": 8})
    assert mech.config.inference == InferenceConfig() and fast.config.inference.precision == "bf16"
    assert fast.denoiser is mech.denoiser  # the networks are shared, not copied
    with pytest.raises(ValueError, match="inference.precision"):
        mech.with_inference(inference={"precision": "fp8"})
    with pytest.raises(ValueError, match="inference"):
        mech.with_inference(inference={"bogus": 1})
    saved = json.loads(json.dumps(fast.get_config()))
    assert saved["config"]["inference"]["precision"] == "bf16"
    fast_scm = scm.with_mechanisms({"img": fast})
    fast_scm.save(tmp_path / "scm")
    again = cd.load(tmp_path / "scm")
    assert again.mechanisms["img"].config.inference == fast.config.inference
    graphs = scm.with_mechanisms({"img": mech.with_inference(inference={"cuda_graphs": True, "fixed_batch": 4})})
    with pytest.raises(ValueError, match="inference.cuda_graphs needs a CUDA device"):
        graphs.counterfactual(rows, do={"c": 1 - rows["c"]})


@pytest.mark.gpu
def test_captured_bf16_guided_loop_makes_no_host_sync_and_matches_eager():
    unet, pred = _nets("cuda")
    x, t, y = _batch(16, "cuda")
    sched = NoiseSchedule(kind="linear", num_train_timesteps=1000)
    sampler = DDIMSampler(sched, DDIMConfig(num_inference_steps=10))
    eager = AntiCausalGuidance(unet, PredictorLikelihood(pred, HEADS), sched)
    config = InferenceConfig(precision="bf16", fixed_batch=16, cuda_graphs=True)
    fast = fast_eps(AntiCausalGuidance(FastNet(unet, config), PredictorLikelihood(FastNet(pred, config), HEADS),
                                       sched), config)
    ref = sampler.generate(eager, x, y).sample
    sampler.generate(fast, x, y)  # captures the graph (warm-up syncs are allowed here)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = sampler.generate(fast, x, y).sample
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert (out - ref).abs().max().item() < 0.1


def test_a_channels_last_copy_follows_its_network_to_another_device():
    """The FastNet cache holds a channels_last copy of the network: once ``to()`` has moved the
    network (in place, as a mechanism's move does), the next call builds a copy on the new device
    instead of serving the one left on the old device."""
    net = ImagePredictor(1, 2, base_channels=8, num_groups=4)
    cache, config = {}, InferenceConfig(channels_last=True)
    first = fast_net(net, config, cache)
    assert fast_net(net, config, cache) is first  # cached while the network stays where it is
    net.to("meta")
    moved = fast_net(net, config, cache)
    assert {p.device.type for p in moved.net.parameters()} == {"meta"}
    assert len(cache) == 1  # the copy on the old device is dropped
