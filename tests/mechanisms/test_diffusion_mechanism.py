"""DiffusionMechanism through the SCM engine: trained toy nodes on CPU (seconds), guided and
conditional counterfactuals, save/load, errors, images."""

from __future__ import annotations

import json
import warnings

import networkx as nx
import pyro.distributions as dist
import pytest
import torch
from pydantic import ValidationError

import causaldiff as cd
from causaldiff.diffusion.ddim import DDIMConfig
from causaldiff.diffusion.nets import DiTConfig, ImagePredictorConfig, UNetConfig
from causaldiff.diffusion.schedule import ScheduleConfig
from causaldiff.training import TrainConfig
from causaldiff.errors import DataError, GraphError, NotFittedError, SerializationError
from causaldiff.mechanisms import Abduction
from causaldiff.registry import MECHANISMS
from causaldiff.mechanisms.categorical import CategoricalMechanism
from causaldiff.mechanisms.diffusion import DiffusionConfig, DiffusionMechanism

# DCM's tabular schedule (T = 100, betas 1e-4 .. 0.1), 20 DDIM steps: cheap on a CPU
TAB = dict(schedule=ScheduleConfig(kind="linear", num_train_timesteps=100, beta_end=0.1),
           sampler=DDIMConfig(num_inference_steps=20, inversion_fixed_point_iters=3))


def _with(m: DiffusionMechanism, **changes) -> DiffusionMechanism:
    """The same trained weights under other hyperparameters (through a save; inference settings
    change with ``with_inference``)."""
    cfg = m.get_config()
    cfg["config"] = {**cfg["config"], **changes}
    return DiffusionMechanism.from_saved(cfg, m.state_tensors())


# ----------------------------------------------------------------------------- anti-causal guidance
@pytest.fixture(scope="module")
def two_class():
    """y ~ Bernoulli(1/2); x | y ~ N(+-2 (1, 1), 0.5^2 I). An unconditional denoiser of x plus a
    noisy classifier of y, fitted by scm.fit (~3 s)."""
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    n = 2000
    y = torch.randint(0, 2, (n,), generator=g)
    x = (4.0 * y - 2.0)[:, None] * torch.ones(1, 2) + 0.5 * torch.randn(n, 2, generator=g)
    mech = DiffusionMechanism(guidance="anticausal", guidance_scale=1.0, guide_abduction=True, **TAB,
                              train=TrainConfig(steps=600, batch_size=256, lr=3e-3, ema_decay=0.99),
                              predictor_train=TrainConfig(steps=250, batch_size=256, lr=3e-3, ema_decay=0.99))
    scm = cd.SCM(nx.DiGraph([("y", "x")]), {"y": CategoricalMechanism(), "x": mech})
    scm.fit({"y": y, "x": x})
    return scm, {"y": y[:400], "x": x[:400]}


def _cls(x):
    return (x.sum(1) > 0).long()  # the Bayes classifier of the two classes


def test_guided_counterfactuals_null_error_and_effectiveness(two_class):
    scm, rows = two_class
    mech = scm.mechanisms["x"]
    assert mech.abduction() is Abduction.APPROXIMATE and mech.event_shape() == (2,)
    # composition: a null intervention returns the factual rows (|error| < 0.01 on average,
    # < 0.1 worst; data std 2): abduction inverts exactly the map prediction applies
    cf0 = scm.counterfactual(rows, do={"y": rows["y"]})
    err = (cf0["x"] - rows["x"]).abs()
    assert err.mean() < 0.01 and err.max() < 0.1
    # effectiveness: do(y = 1 - y) moves >= 95% of the rows to the other class
    cf = scm.counterfactual(rows, do={"y": 1 - rows["y"]})
    assert (_cls(cf["x"]) == 1 - rows["y"]).float().mean() >= 0.95
    assert torch.equal(cf["y"], 1 - rows["y"])
    # observational samples respect the mechanism: x's class agrees with y in >= 95% of rows
    s = scm.sample(1000, seed=1)
    assert (_cls(s["x"]) == s["y"]).float().mean() >= 0.95
    # interventional: do(y = 1) puts >= 95% of x in class 1
    s1 = scm.interventional_samples(500, do={"y": 1}, seed=2)
    assert (_cls(s1["x"]) == 1).float().mean() >= 0.95


def test_unguided_abduction_is_the_diff_scm_variant(two_class):
    """Diff-SCM's Algorithm 1 inverts without guidance: still effective, but a null intervention
    no longer returns the factual rows (guided generation is not the inverse of unguided
    inversion), which is why guided abduction is the default."""
    scm, rows = two_class
    mech = scm.mechanisms["x"]
    plain = _with(mech, guide_abduction=False)
    cond = {"y": rows["y"]}
    null_guided = (mech.forward(mech.abduct(rows["x"], cond), cond) - rows["x"]).abs().mean()
    null_plain = (plain.forward(plain.abduct(rows["x"], cond), cond) - rows["x"]).abs().mean()
    assert null_plain > 10 * null_guided
    flipped = plain.forward(plain.abduct(rows["x"], cond), {"y": 1 - rows["y"]})
    assert (_cls(flipped) == 1 - rows["y"]).float().mean() >= 0.95


def test_save_load_round_trips_give_identical_counterfactuals(two_class, tmp_path):
    scm, rows = two_class
    mech = scm.mechanisms["x"]
    cfg = mech.get_config()
    json.dumps(cfg)  # JSON-able
    assert cfg["format"] == 2 and "parents" not in cfg["config"]  # hyperparameters apart from the state
    assert cfg["state"]["parent_codec"]["parents"][0] == {"name": "y", "kind": "categorical", "shape": [],
                                                          "num_classes": 2}
    assert MECHANISMS.get("diffusion") is DiffusionMechanism
    again = DiffusionMechanism.from_saved(json.loads(json.dumps(cfg)), mech.state_tensors())
    assert again.fitted_parents == ("y",)
    u = mech.abduct(rows["x"], {"y": rows["y"]})
    assert torch.equal(again.abduct(rows["x"], {"y": rows["y"]}), u)
    assert torch.equal(again.forward(u, {"y": 1 - rows["y"]}), mech.forward(u, {"y": 1 - rows["y"]}))

    scm.save(tmp_path / "m")
    loaded = cd.load(tmp_path / "m")
    do = {"y": 1 - rows["y"]}
    a, b = scm.counterfactual(rows, do=do), loaded.counterfactual(rows, do=do)
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"])
    # a truncated weights file is refused
    w = tmp_path / "m" / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(SerializationError):
        cd.load(tmp_path / "m")


def test_from_saved_refuses_mismatched_tensors(two_class):
    mech = two_class[0].mechanisms["x"]
    cfg, tensors = mech.get_config(), mech.state_tensors()
    with pytest.raises(SerializationError, match="statistics"):
        DiffusionMechanism.from_saved(cfg, {k: v for k, v in tensors.items() if k != "stats.x_mean"})
    bad = dict(tensors)
    key = next(k for k in tensors if k.startswith("denoiser."))
    bad[key] = torch.zeros(3, 3)
    with pytest.raises(SerializationError, match="denoiser"):
        DiffusionMechanism.from_saved(cfg, bad)
    with pytest.raises(SerializationError, match="unexpected"):
        DiffusionMechanism.from_saved(cfg, {**tensors, "junk.w": torch.zeros(1)})
    with pytest.raises(SerializationError, match="config"):
        DiffusionMechanism.from_saved({"config": {"guidance": "bogus"}}, tensors)


def test_query_errors_name_the_node(two_class):
    scm, rows = two_class
    mech = scm.mechanisms["x"]
    with pytest.raises(DataError, match="'x'.*outside 0..1"):
        mech.forward(torch.randn(3, 2), {"y": torch.tensor([0, 1, 2])})
    with pytest.raises(DataError, match="'x'"):
        scm.counterfactual({"y": rows["y"], "x": rows["x"][:, :1]}, do={"y": 0})
    with pytest.raises(DataError, match="categorical parent 'y' needs integer"):
        mech.forward(torch.randn(3, 2), {"y": torch.zeros(3)})
    with pytest.raises(DataError, match="'x'.*missing parent"):
        mech.forward(torch.randn(3, 2), {})


# ----------------------------------------------------------------------------- conditional (DCM)
@pytest.fixture(scope="module")
def dcm():
    """x ~ N(0, 1); y = x^2/2 + x + 0.3 u. A conditional DCM-style MLP denoiser for y (~2 s)."""
    torch.set_num_threads(1)
    g = nx.DiGraph([("x", "y")])
    g.nodes["x"]["mechanism"] = dist.Normal(0.0, 1.0)
    g.nodes["y"]["mechanism"] = lambda x: dist.Normal(0.5 * x ** 2 + x, 0.3)
    truth = cd.SCM(g)
    data = truth.sample(2000, seed=0)
    mech = DiffusionMechanism(**TAB, train=TrainConfig(steps=600, batch_size=256, lr=3e-3, ema_decay=0.995))
    model = cd.SCM(nx.DiGraph([("x", "y")]), {"x": dist.Normal(0.0, 1.0), "y": mech}).fit(data)
    return truth, model, {k: v[:400] for k, v in data.items()}


def test_conditional_counterfactuals_match_the_true_scm(dcm):
    """Counterfactual MSE against the true SCM below 0.02 (the noise variance is 0.09, var(y) ~2.3);
    null-intervention error below 0.01 on average."""
    truth, model, rows = dcm
    cf0 = model.counterfactual(rows, do={"x": rows["x"]})
    assert (cf0["y"] - rows["y"]).abs().mean() < 0.01
    for v in (-1.0, 0.5):
        cf, ct = model.counterfactual(rows, do={"x": v}), truth.counterfactual(rows, do={"x": v})
        assert ((cf["y"] - ct["y"]) ** 2).mean() < 0.02
        assert torch.equal(cf["x"], torch.full_like(rows["x"], v))
    s = model.sample(2000, seed=3)
    resid = s["y"] - 0.5 * s["x"] ** 2 - s["x"]
    assert abs(resid.mean()) < 0.05 and abs(resid.std() - 0.3) < 0.05


def test_partial_trajectory_abduction(dcm):
    """Abduct to half the trajectory (Diff-SCM's later revision); sampling then runs the upper
    half of the chain in sample_noise, and the null intervention still returns the rows."""
    _, model, rows = dcm
    half = model.mechanisms["y"].with_inference(abduction_fraction=0.5)
    assert half.config.abduction_steps == 10
    pa = {"x": rows["x"]}
    u = half.abduct(rows["y"], pa)
    assert (half.forward(u, pa) - rows["y"]).abs().mean() < 0.01
    torch.manual_seed(0)
    y = half.forward(half.sample_noise(2000, {"x": torch.zeros(2000)}), {"x": torch.zeros(2000)})
    assert abs(y.mean()) < 0.05 and abs(y.std() - 0.3) < 0.05


def test_with_inference_shares_the_networks_and_leaves_the_original(dcm):
    _, model, rows = dcm
    m = model.mechanisms["y"]
    before = m.config
    fast = m.with_inference(num_inference_steps=10, abduction_fraction=0.5)
    assert m.config == before and m.sampler.num_steps == 20  # the original is untouched
    assert fast.denoiser is m.denoiser and fast.state is m.state and fast.fitted_parents == m.fitted_parents
    assert fast.config.sampler.num_inference_steps == 10 and fast.config.abduction_steps == 5
    assert fast.config.sampler.inversion_fixed_point_iters == 3  # the rest of the sampler is kept
    pa = {"x": rows["x"][:50]}
    # the same as rebuilding the mechanism from its saved weights under those settings
    rebuilt = _with(m, abduction_fraction=0.5, sampler={**before.sampler.model_dump(), "num_inference_steps": 10})
    assert torch.equal(fast.abduct(rows["y"][:50], pa), rebuilt.abduct(rows["y"][:50], pa))
    with pytest.raises(ValueError, match="abduction_fraction"):
        m.with_inference(abduction_fraction=1.5)
    with pytest.raises(ValueError, match="sampler.num_inference_steps"):
        m.with_inference(num_inference_steps=0)
    with pytest.raises(ValueError, match="cond_dropout"):
        m.with_inference(cfg_scale=2.0)  # this denoiser was trained without parent dropout
    with pytest.raises(ValueError, match="node 'y'.*guidance_scale .*guidance='anticausal' only"):
        m.with_inference(guidance_scale=3.0)  # a conditional denoiser: s would change nothing
    with pytest.raises(ValueError, match="sampler.bogus"):
        m.with_inference(sampler={"bogus": 1})
    clipped = m.with_inference(sampler={"clip_sample": 3.0, "inversion_fixed_point_iters": 0}, guide_abduction=False)
    assert clipped.config.sampler.clip_sample == 3.0 and clipped.sampler.config.inversion_fixed_point_iters == 0
    assert clipped.config.sampler.num_inference_steps == 20 and not clipped.config.guide_abduction


def test_with_inference_guidance_scale(two_class):
    scm, rows = two_class
    m = scm.mechanisms["x"]
    strong = m.with_inference(guidance_scale={"y": 3.0})
    assert strong.predictor is m.predictor and m.config.guidance_scale == 1.0
    u = m.abduct(rows["x"][:50], {"y": rows["y"][:50]})
    do = {"y": 1 - rows["y"][:50]}
    assert torch.equal(strong.forward(u, do), _with(m, guidance_scale={"y": 3.0}).forward(u, do))
    swept = cd.SCM(nx.DiGraph([("y", "x")]), {**scm.mechanisms, "x": strong})  # how a sweep rebinds it
    cf = swept.counterfactual({k: v[:50] for k, v in rows.items()}, do=do, seed=0)
    u_strong = strong.abduct(rows["x"][:50], {"y": rows["y"][:50]})  # guided abduction uses the scale too
    assert torch.equal(cf["x"], strong.forward(u_strong, do)) and scm.mechanisms["x"] is m
    with pytest.raises(ValueError, match="node 'x'.*guidance_scale.*unknown parents \\['z'\\]"):
        m.with_inference(guidance_scale={"z": 1.0})


def test_scalar_node_shapes_and_device_moves(dcm):
    _, model, rows = dcm
    m = model.mechanisms["y"]
    assert m.event_shape() == () and m.value_dtype() == torch.float32
    assert m.sample_noise(5, {"x": rows["x"][:5]}).shape == (5,)
    assert m.abduct(rows["y"][:5], {"x": rows["x"][:5]}).shape == (5,)
    assert m.to("cpu") is m and m.device == torch.device("cpu")
    assert "DiffusionMechanism(mlp, conditional" in repr(m)


# ----------------------------------------------------------------------------- configuration
def test_config_validation_and_unfitted_use():
    with pytest.raises(ValidationError, match="cond_dropout"):
        DiffusionMechanism(cfg_scale=1.0)
    with pytest.raises(ValidationError, match="guidance='conditional'"):
        DiffusionMechanism(guidance="anticausal", cfg_scale=1.0, cond_dropout=0.1)
    for scale in (3.0, {"y": 2.0}):  # it would change nothing: refused, naming the mode that uses it
        with pytest.raises(ValidationError, match="guidance_scale .*guidance='anticausal' only"):
            DiffusionMechanism(guidance="conditional", guidance_scale=scale)
    with pytest.raises(ValidationError):
        DiffusionMechanism(bogus=1)
    m = DiffusionMechanism()
    assert isinstance(m.config, DiffusionConfig) and m.config.sampler.inversion_fixed_point_iters == 1
    assert m.event_shape() is None and m.state_tensors() == {} and not m.is_fitted
    again = DiffusionMechanism.from_saved(json.loads(json.dumps(m.get_config())), {})
    assert again.config == m.config
    scm = cd.SCM(nx.DiGraph([("a", "b")]), {"a": dist.Normal(0.0, 1.0), "b": m})
    with pytest.raises(NotFittedError, match="'b'"):
        scm.sample(3)
    with pytest.raises(DataError, match="'b'.*parents"):
        m.fit(torch.randn(10), {"a": torch.randn(10)}, parent_order=("c",))
    with pytest.raises(DataError, match="NaN"):
        m.fit(torch.full((10,), float("nan")), {"a": torch.randn(10)}, parent_order=("a",))


def test_refitting_under_other_parents_is_caught(dcm):
    _, model, _ = dcm
    mech = _with(model.mechanisms["y"])
    g = nx.DiGraph([("z", "y")])
    with pytest.raises(GraphError, match="fitted with parents"):
        cd.SCM(g, {"z": dist.Normal(0.0, 1.0), "y": mech})


# ----------------------------------------------------------------------------- images
def _images(n, gen):
    """8x8 one-channel images: class 0 bright on the left half, class 1 on the right."""
    c = torch.randint(0, 2, (n,), generator=gen)
    img = -torch.ones(n, 1, 8, 8)
    cols = torch.arange(8)
    bright = (cols < 4)[None] ^ c.bool()[:, None]  # (n, 8)
    img[:, 0] = torch.where(bright[:, None, :], 1.0, -1.0).expand(n, 8, 8)
    return c, img + 0.1 * torch.randn(n, 1, 8, 8, generator=gen)


@pytest.mark.parametrize("kind", ["unet-anticausal", "dit-conditional"])
def test_image_nodes_run_end_to_end_and_round_trip(kind, tmp_path):
    """Plumbing on images (a few training steps, not quality): shapes through the SCM, null
    counterfactual close to the factual under exact (fixed-point) abduction, save/load identical."""
    gen = torch.Generator().manual_seed(0)
    c, img = _images(64, gen)
    short = TrainConfig(steps=15, batch_size=16, lr=1e-3)
    common = dict(schedule=ScheduleConfig(kind="cosine", num_train_timesteps=100),
                  sampler=DDIMConfig(num_inference_steps=5, inversion_fixed_point_iters=3), train=short)
    if kind == "unet-anticausal":
        mech = DiffusionMechanism(guidance="anticausal", guidance_scale={"c": 2.0}, **common,
                                  net=UNetConfig(base_channels=8, channel_mult=(1, 2), num_groups=4),
                                  predictor=ImagePredictorConfig(base_channels=8, channel_mult=(1, 2), num_groups=4),
                                  predictor_train=short)
    else:
        mech = DiffusionMechanism(net=DiTConfig(patch_size=4, hidden=16, depth=1, num_heads=2),
                                  cond_dropout=0.2, cfg_scale=1.0, **common)
    scm = cd.SCM(nx.DiGraph([("c", "img")]), {"c": CategoricalMechanism(), "img": mech}).fit({"c": c, "img": img})
    assert mech.state.stats == {}  # images are not standardised (and the parent is categorical)
    rows = {"c": c[:6], "img": img[:6]}
    s = scm.sample(4, seed=0)
    assert s["img"].shape == (4, 1, 8, 8) and torch.isfinite(s["img"]).all()
    cf0 = scm.counterfactual(rows, do={"c": rows["c"]})
    assert (cf0["img"] - rows["img"]).abs().mean() < 0.05
    cf = scm.counterfactual(rows, do={"c": 1 - rows["c"]})
    assert cf["img"].shape == rows["img"].shape
    scm.save(tmp_path / "img")
    again = cd.load(tmp_path / "img")
    assert torch.equal(again.counterfactual(rows, do={"c": 1 - rows["c"]})["img"], cf["img"])


# ----------------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_cuda_fit_and_counterfactual_without_host_syncs_in_the_loop():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (512,), generator=g)
    x = (4.0 * y - 2.0)[:, None] * torch.ones(1, 2) + 0.5 * torch.randn(512, 2, generator=g)
    mech = DiffusionMechanism(guidance="anticausal", **TAB, train=TrainConfig(steps=50, batch_size=64),
                              predictor_train=TrainConfig(steps=50, batch_size=64))
    scm = cd.SCM(nx.DiGraph([("y", "x")]), {"y": CategoricalMechanism(), "x": mech}).to("cuda")
    scm.fit({"y": y.cuda(), "x": x.cuda()})
    assert next(mech.denoiser.parameters()).is_cuda
    rows = {"y": y[:64].cuda(), "x": x[:64].cuda()}
    u = mech.abduct(rows["x"], {"y": rows["y"]})
    eps, target = mech._eps({"y": 1 - rows["y"]}, 64, guided=True)  # validates parents (one sync)
    torch.cuda.synchronize()
    try:
        with warnings.catch_warnings():  # torch warns that the debug mode is a prototype
            warnings.filterwarnings("ignore", message="Synchronization debug mode is a prototype")
            torch.cuda.set_sync_debug_mode("error")  # any host-device sync in the guided loop raises
        out = mech.sampler.generate(eps, u, target)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.sample.is_cuda
    cf = scm.counterfactual(rows, do={"y": 1 - rows["y"]})
    assert cf["x"].is_cuda


def test_counterfactual_laws_hold_on_the_dcm_model(dcm):
    """The library's law suite (effectiveness, non-descendants, composition, idempotence,
    reversibility, batch invariance, commutation) with tolerance 1e-2 (the abduction is exact
    only to the fixed-point solver and float32)."""
    from causaldiff.testing import check_counterfactual_laws

    _, model, rows = dcm
    report = check_counterfactual_laws(model, {k: v[:6] for k, v in rows.items()}, atol=1e-2, rtol=0.0)
    assert any("batch invariance" in c for c in report.checked)


def test_regressor_guidance_for_a_continuous_parent():
    """a ~ N(0, 1); y | a ~ N(1.5 (a, -a), 0.3^2 I). Unconditional denoiser + a Gaussian noisy
    regressor of a (learned mean and log-variance), s = 1 (~2 s). Counterfactual MSE against
    the true SCM below 0.03 (noise variance 0.09, the intervention moves y by 1.5 per unit);
    do(a = 1) samples have mean within 0.15 and std within 0.1 of the truth."""
    g = nx.DiGraph([("a", "y")])
    g.nodes["a"]["mechanism"] = dist.Normal(0.0, 1.0)
    g.nodes["y"]["mechanism"] = lambda a: dist.Normal(1.5 * torch.stack([a, -a], -1), 0.3).to_event(1)
    truth = cd.SCM(g)
    data = truth.sample(2000, seed=0)
    mech = DiffusionMechanism(guidance="anticausal", guide_abduction=True, **TAB,
                              train=TrainConfig(steps=500, batch_size=256, lr=3e-3, ema_decay=0.99),
                              predictor_train=TrainConfig(steps=250, batch_size=256, lr=3e-3, ema_decay=0.99))
    model = cd.SCM(nx.DiGraph([("a", "y")]), {"a": dist.Normal(0.0, 1.0), "y": mech}).fit(data)
    assert mech.state.parent_codec.parents[0].kind == "continuous" and "stats.parent.a.mean" in mech.state_tensors()
    rows = {k: v[:300] for k, v in data.items()}
    assert (model.counterfactual(rows, do={"a": rows["a"]})["y"] - rows["y"]).abs().mean() < 0.01
    for v in (-1.0, 1.0):
        cf, ct = model.counterfactual(rows, do={"a": v}), truth.counterfactual(rows, do={"a": v})
        assert ((cf["y"] - ct["y"]) ** 2).mean() < 0.03
    s = model.interventional_samples(1000, do={"a": 1.0}, seed=1)["y"]
    assert ((s.mean(0) - torch.tensor([1.5, -1.5])).abs() < 0.15).all()
    assert ((s.std(0) - 0.3).abs() < 0.1).all()


def test_a_diverging_guided_loop_is_refused_naming_the_node(two_class):
    """An unbounded guidance term leaves non-finite rows: abduction and generation raise
    DivergenceError naming the node, instead of returning NaN."""
    scm, rows = two_class
    wild = scm.mechanisms["x"].with_inference(guidance_scale=1e38)
    pa = {"y": rows["y"][:16]}
    with pytest.raises(cd.DivergenceError, match=r"node 'x': DDIM inversion \(abduction\) diverged.*guide_abduction"):
        wild.abduct(rows["x"][:16], pa)
    with pytest.raises(cd.DivergenceError, match=r"node 'x': DDIM generation diverged on 16 of 16"):
        scm.mechanisms["x"].forward(torch.full((16, 2), 3e38), pa)  # finite noise that overflows float32
    u = scm.mechanisms["x"].abduct(rows["x"][:16], pa)  # the mechanism itself is unchanged and finite
    assert torch.isfinite(u).all()


# ----------------------------------------------------------------------------- anchored guidance
def test_anchored_counterfactuals_keep_unchanged_rows_and_push_changed_ones(dcm):
    """``anchor_scale = w``: rows whose parent keeps its value decode as at w = 1 (the predictions
    of their inversion), rows whose parent moves go w times as far, roughly (the node is nearly
    affine in its parent over a small move)."""
    _, model, rows = dcm
    anchored = model.with_mechanisms({"y": model.mechanisms["y"].with_inference(anchor_scale=3.0)})
    assert "anchor w=3.0" in repr(anchored.mechanisms["y"])
    x_new = rows["x"].clone()
    x_new[::2] += 0.2  # even rows move, odd rows keep their parent
    plain = model.counterfactual(rows, do={"x": x_new})["y"]
    pushed = anchored.counterfactual(rows, do={"x": x_new})["y"]
    assert (pushed[1::2] - plain[1::2]).abs().max() < 1e-5
    d1, d3 = plain[::2] - rows["y"][::2], pushed[::2] - rows["y"][::2]
    ratio = (d3 * d1.sign()).mean() / d1.abs().mean()
    assert 2.7 < ratio < 3.3, ratio  # 2.98 measured


def test_anchor_scale_is_validated_when_the_mechanism_is_built():
    with pytest.raises(ValidationError, match="anchor_scale"):
        DiffusionMechanism(guidance="anticausal", anchor_scale=2.0)
    with pytest.raises(ValidationError, match="anchor_scale"):
        DiffusionMechanism(anchor_scale=-1.0)
