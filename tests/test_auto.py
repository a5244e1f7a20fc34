"""cd.auto.assign_mechanisms: the documented rule, the printed table, and fitted SCMs whose
counterfactual error against the ground truth is reported (printed with -s, asserted below a baseline)."""

from __future__ import annotations

import networkx as nx
import pyro.distributions as dist
import pytest
import torch

import causaldiff as cd
from causaldiff import auto
from causaldiff.datasets import ShapesConfig, ShapesSCM, TabularConfig, TabularSCM
from causaldiff.diffusion.ddim import DDIMConfig
from causaldiff.diffusion.nets import UNetConfig
from causaldiff.mechanisms import AdditiveNoiseMechanism, CategoricalMechanism, DiffusionConfig, DiffusionMechanism
from causaldiff.metrics import counterfactual_error
from causaldiff.training import TrainConfig

N = 256


def _errors(model, truth, draw, node: str, value: float, descendants):
    """Mean counterfactual error of ``model`` and of the no-change baseline (the factual rows)."""
    rows = {k: v[:64] for k, v in draw.values.items()}
    sub = type(draw)(rows, {k: v[:64] for k, v in draw.exogenous.items()})
    do = {node: torch.full_like(rows[node], value)}
    true = truth.counterfactual(sub, do)
    cf = model.counterfactual(rows, do=do)
    cf = {k: v.to(true[k].dtype) for k, v in cf.items()}
    return (counterfactual_error(cf, true, descendants).mean().item(),
            counterfactual_error(rows, true, descendants).mean().item())


@pytest.mark.parametrize("name", ["chain-nonlinear", "triangle-nonadditive", "y-nonlinear", "diamond-nonlinear"])
def test_dcm_tabular_scms(name, capsys):
    truth = TabularSCM(TabularConfig(name=name))
    draw = truth.sample(N, torch.Generator().manual_seed(0))
    model = auto.assign_mechanisms(truth.graph(), draw.values, quick=True)
    table = capsys.readouterr().out
    assert all(f" {v} " in f" {line} " for v, line in zip(model.nodes, table.splitlines()[1:]))
    assert all(isinstance(m, AdditiveNoiseMechanism) for m in model.mechanisms.values())
    model.fit(draw.values)
    node = truth.intervention_nodes[0]
    desc = [v for v in model.nodes if v in nx.descendants(truth.graph(), node)]
    err, baseline = _errors(model, truth, draw, node, 1.0, desc)
    print(f"{name} do({node}=1): counterfactual MSE {err:.4f} (factual baseline {baseline:.4f})")
    assert err < 0.5 * baseline


#: 800 steps of 256 rows per node (about a minute on one CPU core): the error the test asserts
LADDER_TRAINED = DiffusionConfig(train=TrainConfig(steps=800, batch_size=256, lr=3e-3),
                                 sampler=DDIMConfig(num_inference_steps=20, spacing="leading",
                                                    inversion_fixed_point_iters=3))


@pytest.mark.parametrize("setting", ["quick", pytest.param("trained", marks=pytest.mark.slow)])
def test_ladder_vector_nodes_get_diffusion(setting):
    truth = TabularSCM(TabularConfig(name="ladder-nonlinear"))
    draw = truth.sample(4 * N, torch.Generator().manual_seed(0))
    choices = auto.choose(truth.graph(), draw.values)
    assert {c.mechanism for c in choices} == {"diffusion"} and {c.kind for c in choices} == {"vector"}
    configs = {"diffusion": LADDER_TRAINED} if setting == "trained" else {}
    model = auto.assign_mechanisms(truth.graph(), draw.values, quick=setting == "quick", configs=configs,
                                   show=False).fit(draw.values)
    desc = [v for v in model.nodes if v in nx.descendants(truth.graph(), "x1")]
    err, baseline = _errors(model, truth, draw, "x1", 1.0, desc)
    print(f"ladder-nonlinear do(x1=1), {setting}: counterfactual MSE {err:.4f} (factual baseline {baseline:.4f})")
    assert err < (0.3 * baseline if setting == "trained" else float("inf"))  # quick: 30 steps, finite only


def test_shapes_scm(capsys):
    truth = ShapesSCM(ShapesConfig(resolution=16))
    draw = truth.sample(N, torch.Generator().manual_seed(0))
    small = DiffusionConfig(net=UNetConfig(base_channels=8, channel_mult=(1, 2), num_groups=4, mid_attention=False))
    model = auto.assign_mechanisms(truth.graph(), draw.values, quick=True, configs={"diffusion": small})
    assert capsys.readouterr().out.splitlines()[-1].split() == ["image", "image", "intensity,", "shape,", "size", "diffusion"]
    kinds = {v: type(m) for v, m in model.mechanisms.items()}
    assert kinds == {"shape": CategoricalMechanism, "size": AdditiveNoiseMechanism,
                     "intensity": AdditiveNoiseMechanism, "image": DiffusionMechanism}
    model.fit(draw.values)
    size = float(draw.values["size"].mean())
    err, baseline = _errors(model, truth, draw, "size", size, ["intensity"])
    img, img_baseline = _errors(model, truth, draw, "size", size, ["image"])
    print(f"shapes do(size={size:.3f}): intensity MSE {err:.5f} (baseline {baseline:.5f}); "
          f"image MSE {img:.4f} (baseline {img_baseline:.4f}; quick setting)")
    assert err < 0.5 * baseline and torch.isfinite(torch.tensor(img))


def test_the_rule_and_bound_nodes_and_frames():
    pd = pytest.importorskip("pandas", reason="needs the optional extra causaldiff[pandas]")
    g = nx.DiGraph([("c", "y"), ("x", "y")])
    df = pd.DataFrame({"c": pd.Categorical(["a", "b"] * 8), "x": torch.randn(16).numpy(), "y": torch.randn(16).numpy()})
    choices = auto.choose(g, df, mechanisms={"x": dist.Normal(0.0, 1.0)})
    assert [(c.node, c.kind, c.mechanism) for c in choices] == [
        ("c", "categorical", "categorical"), ("x", "given", "Normal"), ("y", "continuous", "additive_noise")]
    model = auto.assign_mechanisms(g, df, mechanisms={"x": dist.Normal(0.0, 1.0)}, quick=True, show=False)
    assert isinstance(model.fit(df).counterfactual(df, do={"c": "b"}), pd.DataFrame)


def test_refusals_name_the_node():
    g = nx.DiGraph([("x", "c")])
    with pytest.raises(cd.DataError, match="node 'c' has no column"):
        auto.choose(g, {"x": torch.randn(4)})
    with pytest.raises(cd.DataError, match="node 'x': values of shape"):
        auto.choose(g, {"x": torch.randn(4, 2, 2), "c": torch.randn(4)})
    with pytest.raises(cd.GraphError, match="unknown mechanism kinds"):
        auto.assign_mechanisms(g, {"x": torch.randn(4), "c": torch.randn(4)}, configs={"nope": None})
