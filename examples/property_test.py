"""Property-test the counterfactual laws on your own SCM: in one line, over random models and
interventions with hypothesis, and as parametrised pytest tests."""

import networkx as nx
import pyro.distributions as dist
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import causaldiff as cd
from causaldiff.testing import LawViolation, check_counterfactual_laws, interventions, law_tests, scms

torch.set_default_dtype(torch.float64)


def my_scm() -> cd.SCM:
    g = nx.DiGraph([("a", "b"), ("b", "c"), ("a", "c"), ("a", "k")])
    g.nodes["a"]["mechanism"] = dist.Laplace(0.0, 1.0)
    g.nodes["b"]["mechanism"] = lambda a: dist.Normal(torch.tanh(a), 0.3)
    g.nodes["c"]["mechanism"] = lambda a, b: dist.Gumbel(a * b, 0.5)
    g.nodes["k"]["mechanism"] = lambda a: dist.Categorical(logits=torch.stack([a, -a, 0 * a], -1))  # discrete
    return cd.SCM(g)


# One line: every law under hard, Shift and callable interventions, with the largest error each
# measured and its tolerance (float precision here; 1e-2 by default on a diffusion node).
print(check_counterfactual_laws(my_scm()))

# A wrong model fails, naming the law, the node and the query.
class OffRoot(cd.PyroMechanism):
    def abduct(self, x, parents, generator=None):
        return super().abduct(x, parents, generator) + 0.1


broken = cd.SCM(nx.DiGraph([("a", "b")]), {"a": OffRoot(dist.Normal(0.0, 1.0)), "b": lambda a: dist.Normal(a, 1.0)})
try:
    check_counterfactual_laws(broken)
except LawViolation as e:
    print("caught:", str(e).splitlines()[0])


# The same laws over random SCMs (continuous, vector and discrete nodes) and random interventions:
@settings(max_examples=10, deadline=None, derandomize=True)
@given(data=st.data())
def test_random_scms_obey_the_laws(data):
    scm = data.draw(scms(max_nodes=4))
    check_counterfactual_laws(scm, n=4, interventions=[data.draw(interventions(scm))])


test_random_scms_obey_the_laws()
print("10 random SCMs obey the counterfactual laws")

# In a test module, one line gives one pytest test per law (and seed):
test_my_scm = law_tests(my_scm, seeds=(0, 1))
print("law_tests:", [f"{m.args[0]}={len(m.args[1])}" for m in test_my_scm.pytestmark])
