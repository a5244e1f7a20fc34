"""Shared by the bad-input tests (tests/test_bad_input.py and the reliability catalogue, part B): a
small SCM and the check that a refusal changed nothing (the SCM, the caller's data, the global RNG,
the files under a folder)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import networkx as nx
import pyro.distributions as dist
import pytest
import torch

import causaldiff as cd

F64 = torch.float64


def t(v):
    return torch.tensor(v, dtype=F64)


def make_scm(categorical_root: bool = True) -> cd.SCM:
    """x -> y -> z, x -> b (Bernoulli), x -> c (3-class Categorical), c -> w; with
    ``categorical_root``, also r, a 3-class root."""
    g = nx.DiGraph([("x", "y"), ("y", "z"), ("x", "b"), ("x", "c"), ("c", "w")])
    g.nodes["x"]["mechanism"] = dist.Normal(t(0.0), t(1.0))
    g.nodes["y"]["mechanism"] = lambda x: dist.Normal(2.0 * x, t(0.5))
    g.nodes["z"]["mechanism"] = lambda y: dist.Laplace(y, t(0.5))
    g.nodes["b"]["mechanism"] = lambda x: dist.Bernoulli(logits=x)
    g.nodes["c"]["mechanism"] = lambda x: dist.Categorical(logits=torch.stack([x, -x, 0 * x], -1))
    g.nodes["w"]["mechanism"] = lambda c: dist.Normal(c.to(F64), t(1.0))
    if categorical_root:
        g.add_node("r", mechanism=dist.Categorical(logits=torch.zeros(3, dtype=F64)))
    return cd.SCM(g)


def files_under(folder: Path | None) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes."""
    if folder is None or not Path(folder).exists():
        return {}
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            p = Path(root) / name
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def state(scm: cd.SCM | None, data: dict | None, folder: Path | None) -> dict:
    """What a refusal must leave as it was: the global RNG, the files under ``folder``, the SCM
    (graph, interventions, device, mechanism objects) and ``data`` (its keys, value objects, values)."""
    s = {"rng": torch.get_rng_state().clone(), "files": files_under(folder)}
    if scm is not None:
        s["scm"] = (sorted(scm.graph.edges), scm.nodes, dict(scm.interventions), scm.device,
                    {k: id(m) for k, m in scm.mechanisms.items()})
    if data is not None:
        s["data"] = {k: (id(v), v.clone() if isinstance(v, torch.Tensor) else v) for k, v in data.items()}
    return s


def assert_same(before: dict, after: dict) -> None:
    assert torch.equal(before["rng"], after["rng"]), "the global RNG changed"
    assert before["files"] == after["files"], "files changed"
    assert before.get("scm") == after.get("scm"), "the SCM changed"
    if "data" not in before:
        return
    assert list(before["data"]) == list(after["data"]), "the data's keys changed"
    for k, (i, v) in before["data"].items():
        j, w = after["data"][k]
        assert i == j, f"{k}: the data's value was replaced"
        if not isinstance(v, torch.Tensor):
            assert v == w, k
            continue
        assert v.dtype == w.dtype and v.shape == w.shape, k
        if v.device.type != "meta":  # (meta tensors hold no values)
            assert torch.equal(v.isnan(), w.isnan()) and torch.equal(torch.nan_to_num(v), torch.nan_to_num(w)), k


def refuse(error, match: str, call, scm=None, data=None, folder=None, rng: bool = True):
    """``call()`` raises ``error`` with a message matching ``match`` (which names the node or
    field), and leaves the SCM, the data, the files under ``folder`` and (``rng``) the global RNG as
    they were. ``rng=False`` only for an unseeded query refused part-way, after it drew from the
    global RNG as unseeded queries do."""
    before = state(scm, data, folder)
    with pytest.raises(error, match=match) as info:
        call()
    after = state(scm, data, folder)
    if not rng:
        after["rng"] = before["rng"]
    assert_same(before, after)
    return info.value
