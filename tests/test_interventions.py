"""Interventions: the kinds, the generic ``intervene`` / ``natural_value`` they register with, and
their use on vector nodes."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pyro.distributions as dist
import pytest
import torch

import causaldiff as cd
from dataclasses import dataclass

from causaldiff.interventions import (Hard, Shift, Transform, _Kind, as_intervention, broadcast_value,
                                      intervene, invertible, natural_value)

F64 = torch.float64
CPU = torch.device("cpu")


@pytest.mark.parametrize("value,kind", [(1.0, Hard), (3, Hard), (torch.zeros(4), Hard),
                                        (np.array([1.0, 2.0]), Hard), (torch.sin, Transform),
                                        (lambda v: v + 1, Transform), (Shift(2.0), Shift),
                                        (Hard(1.0), Hard), (Transform(torch.cos), Transform)])
def test_as_intervention_normalises_user_values(value, kind):
    iv = as_intervention("x", value)
    assert isinstance(iv, kind)
    assert iv.cuts_edges == (kind is Hard)
    assert invertible(iv) == (kind is Shift)


def test_kinds_register_their_inverse():
    x = torch.tensor([1.0, 2.0], dtype=F64)
    assert torch.equal(natural_value(Shift(0.5), "x", x), x - 0.5)
    with pytest.raises(cd.AbductionError, match="node 'x': cannot abduct through the callable intervention"):
        natural_value(Transform(torch.sin), "x", x)
    with pytest.raises(cd.AbductionError, match="hard"):
        natural_value(Hard(1.0), "x", x)


@dataclass(frozen=True)
class Scale(_Kind, cuts_edges=False, label="scale"):
    """A kind of intervention of the test's own: ``do(X = factor * X)``."""

    factor: float


@intervene.register
def _scale(iv: Scale, node, natural, n, event_shape, dtype, device):
    return iv.factor * natural


def test_a_new_kind_of_intervention_is_one_registration():
    g = nx.DiGraph([("x", "y")])
    scm = cd.SCM(g, mechanisms={"x": dist.Normal(torch.tensor(0.0, dtype=F64), 1.0),
                                "y": lambda x: dist.Normal(2 * x, 0.5)})
    rows = scm.sample(6, seed=0)
    cf = scm.counterfactual(rows, do={"x": Scale(3.0)})
    assert torch.equal(cf["x"], 3 * rows["x"])
    torch.testing.assert_close(cf["y"], rows["y"] + 2 * (cf["x"] - rows["x"]))
    drawn = scm.do({"x": Scale(0.0)}).sample(4, seed=1)
    assert bool((drawn["x"] == 0).all())
    with pytest.raises(cd.AbductionError, match="node 'y': cannot abduct through the scale intervention"):
        scm.do({"y": Scale(2.0)}).counterfactual(rows, do={"x": 1.0})


def test_reprs_are_short():
    assert repr(Hard(1.0)) == "Hard(1.0)"
    assert repr(Shift(torch.tensor([1.0, 2.0]))) == "Shift([1.0, 2.0])"
    assert repr(Hard(torch.zeros(100))) == "Hard(tensor(100,))"
    assert repr(Transform(torch.sin)) == "Transform(sin)"


@pytest.mark.parametrize("shape,value", [((), 2.0), ((), torch.tensor(2.0)), ((3,), torch.tensor([1.0, 2.0, 3.0])),
                                         ((3,), torch.arange(15.0).reshape(5, 3)), ((), torch.arange(5.0))])
def test_broadcast_value_accepts_scalar_one_row_or_the_batch(shape, value):
    out = broadcast_value("x", value, 5, shape, F64, CPU)
    assert out.shape == (5, *shape) and out.dtype == F64
    v = torch.as_tensor(value, dtype=F64)
    assert torch.equal(out, v.expand(5, *shape))


@pytest.mark.parametrize("shape,value", [((), torch.zeros(4)), ((3,), torch.zeros(2)), ((3,), torch.zeros(5, 2)),
                                         ((2, 2), torch.zeros(4))])
def test_broadcast_value_rejects_other_shapes(shape, value):
    with pytest.raises(cd.InterventionError, match=r"node 'x': intervention value of shape .* fits neither one row"):
        broadcast_value("x", value, 5, shape, F64, CPU)


def test_intervene_shift_and_transform_are_vectorised():
    natural = torch.arange(6.0, dtype=F64).reshape(3, 2)
    assert torch.equal(intervene(Shift(1.0), "x", natural, 3, (2,), F64, CPU), natural + 1)
    per_row = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]], dtype=F64)
    assert torch.equal(intervene(Shift(per_row), "x", natural, 3, (2,), F64, CPU), natural + per_row)
    assert torch.equal(intervene(Transform(torch.square), "x", natural, 3, (2,), F64, CPU), natural ** 2)
    with pytest.raises(cd.InterventionError, match=r"node 'x': Shift\(1.0\) needs the node's natural value"):
        intervene(Shift(1.0), "x", None, 3, (2,), F64, CPU)
    with pytest.raises(cd.InterventionError, match=r"node 'x': callable intervention returned shape \(3,\), expected \(3, 2\)"):
        intervene(Transform(lambda v: v.sum(-1)), "x", natural, 3, (2,), F64, CPU)


def test_hard_integer_value_on_a_float_node_becomes_float():
    out = intervene(Hard(2), "x", None, 4, (), F64, CPU)
    assert out.dtype == F64 and torch.equal(out, torch.full((4,), 2.0, dtype=F64))


# ============================================================================ vector nodes
def vector_scm():
    """x in R^2 -> y in R^2, y = A x + 0.1 u."""
    A = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=F64)
    g = nx.DiGraph([("x", "y")])
    g.nodes["x"]["mechanism"] = dist.Normal(torch.zeros(2, dtype=F64), torch.ones(2, dtype=F64)).to_event(1)
    g.nodes["y"]["mechanism"] = lambda x: dist.Normal(x @ A.T, torch.tensor(0.1, dtype=F64)).to_event(1)
    return cd.SCM(g), A


def test_vector_node_interventions():
    scm, A = vector_scm()
    d = scm.sample(8, seed=0)
    u = (d["y"] - d["x"] @ A.T) / 0.1
    one_row = torch.tensor([1.0, -1.0], dtype=F64)
    per_row = torch.randn(8, 2, dtype=F64)
    cases = {
        "one row": ({"x": one_row}, one_row.expand(8, 2)),
        "per row": ({"x": per_row}, per_row),
        "scalar": ({"x": 3.0}, torch.full((8, 2), 3.0, dtype=F64)),
        "shift": ({"x": Shift(one_row)}, d["x"] + one_row),
        "callable": ({"x": lambda v: v.flip(-1)}, d["x"].flip(-1)),
    }
    for name, (do, x_cf) in cases.items():
        cf = scm.counterfactual(d, do=do)
        torch.testing.assert_close(cf["x"], x_cf, rtol=0, atol=0, msg=name)
        torch.testing.assert_close(cf["y"], x_cf @ A.T + 0.1 * u, rtol=0, atol=1e-10, msg=name)


def test_vector_node_intervention_of_the_wrong_shape():
    scm, _ = vector_scm()
    d = scm.sample(8, seed=0)
    with pytest.raises(cd.InterventionError, match=r"node 'x': intervention value of shape \(3,\) fits neither one row \(2,\) nor the batch \(8, 2\)"):
        scm.counterfactual(d, do={"x": torch.zeros(3, dtype=F64)})
    with pytest.raises(cd.InterventionError, match=r"node 'x'.*\(8, 3\)"):
        scm.do({"x": torch.zeros(8, 3, dtype=F64)}).sample(8)


def test_image_shaped_node():
    """Nodes may be images: (n, C, H, W) values, hard values of one image, shifts of brightness."""
    g = nx.DiGraph([("b", "img")])
    g.nodes["b"]["mechanism"] = dist.Normal(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64))
    g.nodes["img"]["mechanism"] = lambda b: dist.Normal(b[:, None, None, None].expand(-1, 1, 4, 4),
                                                       torch.tensor(0.1, dtype=F64)).to_event(3)
    scm = cd.SCM(g)
    d = scm.sample(3, seed=0)
    assert d["img"].shape == (3, 1, 4, 4)
    cf = scm.counterfactual(d, do={"b": cd.Shift(2.0)})
    torch.testing.assert_close(cf["img"], d["img"] + 2.0, rtol=0, atol=1e-10)
    blank = torch.zeros(1, 4, 4, dtype=F64)
    cf = scm.counterfactual(d, do={"img": blank})
    assert torch.equal(cf["img"], blank.expand(3, 1, 4, 4)) and torch.equal(cf["b"], d["b"])


def test_interventions_do_not_alias_user_tensors():
    """Mutating the value passed to do() afterwards, or the counterfactual, does not reach the other."""
    scm, A = vector_scm()
    d = scm.sample(4, seed=0)
    value = torch.ones(4, 2, dtype=F64)
    cf = scm.counterfactual(d, do={"x": value})
    cf["x"].add_(5.0)
    assert torch.equal(value, torch.ones(4, 2, dtype=F64))
