"""The counterfactual laws over 200+ generated SCMs, and proof that every law check can fail."""

from __future__ import annotations

import itertools

import networkx as nx
import pyro.distributions as dist
import pytest
import torch
from hypothesis import HealthCheck, given, settings

import causaldiff as cd
from causaldiff.testing import (LawViolation, check_batch_invariance, check_commutation,
                                check_composition, check_counterfactual_laws, check_effectiveness,
                                check_idempotence, check_non_descendants, check_reversibility, dags,
                                scms)

F64 = torch.float64
GENERATED: list[int] = []



@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scm=scms(max_nodes=5))
def test_counterfactual_laws_hold_on_generated_scms(scm):
    report = check_counterfactual_laws(scm, n=4, seed=len(GENERATED))
    GENERATED.append(len(scm.nodes))
    k = len(scm.nodes)
    assert len(report.checked) >= 6 * k + (k - 1)  # every law, on every node


def test_at_least_200_scms_were_checked():
    # runs after the property test in file order; guards against a silently shrunken suite
    if not GENERATED:
        pytest.skip("the property test did not run in this session")
    assert len(GENERATED) >= 200
    assert max(GENERATED) >= 4 and min(GENERATED) == 1


@settings(max_examples=50, deadline=None, derandomize=True)
@given(g=dags(min_nodes=2, max_nodes=7))
def test_generated_dags_are_acyclic_and_named(g):
    assert nx.is_directed_acyclic_graph(g)
    assert all(isinstance(v, str) for v in g.nodes)


# ============================================================================ laws can fail
def t(v):
    return torch.tensor(v, dtype=F64)


def chain(y_mechanism) -> cd.SCM:
    g = nx.DiGraph([("x", "y"), ("y", "z")])
    g.nodes["x"]["mechanism"] = dist.Normal(t(0.0), t(1.0))
    g.nodes["y"]["mechanism"] = y_mechanism
    g.nodes["z"]["mechanism"] = lambda y: dist.Normal(y, t(0.5))
    return cd.SCM(g)


class WrongAbduction(cd.PyroMechanism):
    """``y ~ N(2x, 1)`` whose abduction is off by 1 %: forward(abduct(y)) != y."""

    def __init__(self):
        super().__init__(lambda x: dist.Normal(2.0 * x, t(1.0)))

    def abduct(self, x, parents):
        return 1.01 * super().abduct(x, parents)


class BatchDependent(cd.PyroMechanism):
    """``y = x - mean(x) + u``: depends on the rest of the batch (like batch norm in train mode)."""

    def __init__(self):
        super().__init__(lambda x: dist.Normal(x - x.mean(), t(1.0)))


class Unseeded(cd.PyroMechanism):
    """``y ~ N(x, 1)`` whose noise draws shift by a call counter, so a seed does not fix them."""

    def __init__(self):
        super().__init__(lambda x: dist.Normal(x, t(1.0)))
        self.count = 0

    def sample_noise(self, n, parents):
        self.count += 1
        return super().sample_noise(n, parents) + self.count


class DropsHardValues(cd.SCM):
    """An engine that forgets to apply hard values to the intervened node itself."""

    def counterfactual(self, factual, do, *, seed=None):
        out = super().counterfactual(factual, do, seed=seed)
        for k in do:
            out[k] = factual[k]
        return out


class TouchesEverything(cd.SCM):
    """An engine that recomputes (and perturbs) every node, ancestors included."""

    def counterfactual(self, factual, do, *, seed=None):
        out = super().counterfactual(factual, do, seed=seed)
        return {k: v + 1e-12 if v.is_floating_point() and k not in do else v for k, v in out.items()}


def test_the_laws_hold_on_the_correct_chain():
    check_counterfactual_laws(chain(lambda x: dist.Normal(2.0 * x, t(1.0))), n=8)


def test_effectiveness_check_can_fail():
    scm = chain(lambda x: dist.Normal(2.0 * x, t(1.0)))
    broken = DropsHardValues(scm.graph)
    d = scm.sample(5, seed=0)
    check_effectiveness(scm, d, {"y": 1.0})
    with pytest.raises(LawViolation, match=r"effectiveness: node 'y' is not its intervention value"):
        check_effectiveness(broken, d, {"y": 1.0})


def test_non_descendant_check_can_fail():
    scm = chain(lambda x: dist.Normal(2.0 * x, t(1.0)))
    broken = TouchesEverything(scm.graph)
    d = scm.sample(5, seed=0)
    check_non_descendants(scm, d, {"y": 1.0})
    with pytest.raises(LawViolation, match=r"non-descendants: node 'x' changed"):
        check_non_descendants(broken, d, {"y": 1.0})


def test_composition_check_can_fail():
    scm = chain(WrongAbduction())
    d = scm.sample(5, seed=0)
    with pytest.raises(LawViolation, match=r"composition: null intervention on 'x' changed node 'y'"):
        check_composition(scm, d, "x")


def test_reversibility_check_can_fail():
    scm = chain(WrongAbduction())
    d = scm.sample(5, seed=0)
    with pytest.raises(LawViolation, match=r"reversibility: node 'y' does not return"):
        check_reversibility(scm, d, {"x": d["x"] + 1.0})


def test_batch_invariance_check_can_fail():
    scm = chain(BatchDependent())
    d = scm.sample(6, seed=0)
    with pytest.raises(LawViolation, match=r"batch invariance: row \d of node 'y' differs"):
        check_batch_invariance(scm, d, {"x": d["x"].flip(0)})


def test_idempotence_check_can_fail():
    scm = chain(Unseeded())
    with pytest.raises(LawViolation, match=r"idempotence: do\(\['z'\]\) applied twice differs from once"):
        check_idempotence(scm, {"z": 0.0})


def test_commutation_check_can_fail():
    scm = chain(Unseeded())
    with pytest.raises(LawViolation, match=r"commutation: do\(\['x'\]\) and do\(\['z'\]\) do not commute"):
        check_commutation(scm, {"x": 0.0}, {"z": 0.0})
    with pytest.raises(ValueError, match=r"disjoint"):
        check_commutation(scm, {"x": 0.0}, {"x": 1.0})


def test_the_one_line_check_catches_a_broken_mechanism():
    with pytest.raises(LawViolation):
        check_counterfactual_laws(chain(WrongAbduction()), n=8)
    with pytest.raises(LawViolation, match=r"batch invariance"):
        check_counterfactual_laws(chain(BatchDependent()), n=8)


def test_commutation_and_idempotence_on_all_pairs_of_a_diamond():
    g = nx.DiGraph([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
    g.nodes["a"]["mechanism"] = dist.Laplace(t(0.0), t(1.0))
    g.nodes["b"]["mechanism"] = lambda a: dist.Normal(torch.tanh(a), t(0.5))
    g.nodes["c"]["mechanism"] = lambda a: dist.Gumbel(a ** 2, t(0.3))
    g.nodes["d"]["mechanism"] = lambda b, c: dist.Logistic(b - c, t(0.2))
    scm = cd.SCM(g)
    vals = {"a": 0.5, "b": cd.Shift(1.0), "c": torch.sin, "d": -1.0}
    for u, v in itertools.combinations("abcd", 2):
        check_commutation(scm, {u: vals[u]}, {v: vals[v]})
    for u in "abcd":
        check_idempotence(scm, {u: vals[u]})
