"""Declare a custom SCM with Pyro mechanisms and ask interventional and counterfactual questions.

Graph: smoking -> tar -> cancer, and smoking -> cancer (a Bernoulli outcome).
"""

import networkx as nx
import pyro.distributions as dist
import torch

import causaldiff as cd

g = nx.DiGraph([("smoking", "tar"), ("tar", "cancer"), ("smoking", "cancer")])
g.nodes["smoking"]["mechanism"] = dist.Normal(0.0, 1.0)                       # a root
g.nodes["tar"]["mechanism"] = lambda smoking: dist.Normal(1.5 * smoking, 0.5)  # parents by name
g.nodes["cancer"]["mechanism"] = lambda smoking, tar: dist.Bernoulli(logits=tar + 0.5 * smoking - 1.0)
scm = cd.SCM(g)

data = scm.sample(1000, seed=0)
print(data)

# Interventional: what if everybody smoked one standard deviation more than average?
inter = scm.interventional_samples(1000, do={"smoking": 1.0}, seed=1)
print(f"P(cancer)            = {data['cancer'].mean():.3f}")
print(f"P(cancer | do(s=1))  = {inter['cancer'].mean():.3f}")

# Counterfactual: for these very people, what if their tar had been halved?
cf = scm.counterfactual(data, do={"tar": lambda tar: tar / 2}, seed=2)
assert torch.equal(cf["smoking"], data["smoking"])      # non-descendants are untouched
print(f"cancer cases: factual {int(data['cancer'].sum())}, had tar been halved {int(cf['cancer'].sum())}")

# Several nodes at once, and a shift
cf2 = scm.counterfactual(data, do={"smoking": cd.Shift(-1.0), "tar": 0.0}, seed=2)
print(f"with smoking shifted by -1 and tar = 0: {int(cf2['cancer'].sum())} cases")
