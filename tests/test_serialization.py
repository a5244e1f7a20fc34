"""Save / load: learnable mechanisms and raw root distributions round-trip; code must be passed
again; corrupted files are refused; nothing pickled is read."""

from __future__ import annotations

import json

import networkx as nx
import pyro.distributions as dist
import pytest
import torch

import causaldiff as cd
from causaldiff.serialization import CONFIG_FILE, WEIGHTS_FILE

F64 = torch.float64



def data_xyz(n=300, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=gen)
    c = torch.randint(0, 3, (n,), generator=gen)
    y = torch.sin(2 * x) + c.float() + 0.2 * torch.randn(n, generator=gen)
    return {"x": x, "c": c, "y": y}


def fitted_scm():
    g = nx.DiGraph([("x", "y"), ("c", "y")])
    scm = cd.SCM(g, mechanisms={"x": cd.AdditiveNoiseMechanism(steps=5),
                                "c": dist.Categorical(logits=torch.tensor([0.0, 0.5, -0.5])),
                                "y": cd.AdditiveNoiseMechanism(steps=60, hidden=(16,))})
    return scm.fit(data_xyz())


def test_learnable_scm_round_trips_to_identical_counterfactuals(tmp_path):
    scm = fitted_scm()
    scm.save(tmp_path / "model")
    assert {p.name for p in (tmp_path / "model").iterdir()} == {CONFIG_FILE, WEIGHTS_FILE}
    loaded = cd.load(tmp_path / "model")
    assert set(loaded.graph.edges) == set(scm.graph.edges) and loaded.nodes == scm.nodes
    assert loaded.mechanisms["y"].fitted_parents == ("c", "x")
    d = data_xyz(50, seed=1)
    for do in ({"x": 0.5}, {"c": 2}, {"y": cd.Shift(1.0)}):
        a, b = scm.counterfactual(d, do=do), loaded.counterfactual(d, do=do)
        assert all(torch.equal(a[k], b[k]) for k in a), do
    a, b = scm.sample(20, seed=3), loaded.sample(20, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the saved weights are safetensors and the config is plain JSON naming registry keys
    meta = json.loads((tmp_path / "model" / CONFIG_FILE).read_text())
    assert [n["mechanism"] for n in meta["nodes"]] == ["additive_noise" if n["name"] != "c" else "pyro"
                                                        for n in meta["nodes"]]


def test_raw_root_distributions_round_trip(tmp_path):
    g = nx.DiGraph()
    roots = {"n": dist.Normal(torch.tensor(1.5, dtype=F64), torch.tensor(0.5, dtype=F64)),
             "b": dist.Bernoulli(probs=torch.tensor(0.3)),
             "k": dist.Categorical(logits=torch.tensor([1.0, 0.0, -1.0, 2.0])),
             "g": dist.Gamma(torch.tensor(2.0), torch.tensor(3.0)),
             "m": dist.MultivariateNormal(torch.zeros(2), scale_tril=torch.tensor([[1.0, 0.0], [0.5, 2.0]]))}
    g.add_nodes_from(roots)
    scm = cd.SCM(g, mechanisms=roots)
    scm.save(tmp_path)
    loaded = cd.load(tmp_path)
    a, b = scm.sample(30, seed=4), loaded.sample(30, seed=4)
    for k in roots:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert loaded.mechanisms["n"].spec.loc.dtype == F64


def test_pyro_callable_must_be_passed_again(tmp_path):
    g = nx.DiGraph([("x", "y")])
    g.nodes["x"]["mechanism"] = cd.AdditiveNoiseMechanism(steps=5)
    g.nodes["y"]["mechanism"] = lambda x: dist.Normal(2.0 * x, 0.5)
    scm = cd.SCM(g).fit({"x": torch.randn(100), "y": torch.randn(100)})
    scm.save(tmp_path)
    with pytest.raises(cd.SerializationError, match=r"node 'y' was bound to code .* pass it again: "
                                                     r"cd.load\(path, mechanisms=\{'y': \.\.\.\}\)"):
        cd.load(tmp_path)
    loaded = cd.load(tmp_path, mechanisms={"y": lambda x: dist.Normal(2.0 * x, 0.5)})
    d = scm.sample(10, seed=0)
    a, b = scm.counterfactual(d, do={"x": 1.0}), loaded.counterfactual(d, do={"x": 1.0})
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(cd.GraphError, match=r"node 'y': its callable takes \['z'\]"):
        cd.load(tmp_path, mechanisms={"y": lambda z: dist.Normal(z, 1.0)})
    with pytest.raises(cd.SerializationError, match=r"unknown node\(s\) \['q'\]"):
        cd.load(tmp_path, mechanisms={"y": lambda x: dist.Normal(x, 1.0), "q": dist.Normal(0.0, 1.0)})


def test_composite_raw_distribution_and_custom_module_are_code(tmp_path):
    g = nx.DiGraph([("x", "y")])
    net = torch.nn.Linear(1, 1)
    scm = cd.SCM(g, mechanisms={"x": dist.LogNormal(0.0, 1.0),
                                "y": cd.AdditiveNoiseMechanism(net=net, steps=5)})
    scm.fit({"x": torch.rand(50) + 0.1, "y": torch.randn(50)})
    scm.save(tmp_path)
    with pytest.raises(cd.SerializationError, match=r"nodes \['x', 'y'\] were bound to code .*"
                                                     r"mechanisms=\{'x': \.\.\., 'y': \.\.\.\}"):
        cd.load(tmp_path)  # every missing node named at once
    with pytest.raises(cd.SerializationError, match=r"node 'y' was bound to code"):
        cd.load(tmp_path, mechanisms={"x": dist.LogNormal(0.0, 1.0)})
    loaded = cd.load(tmp_path, mechanisms={"x": dist.LogNormal(0.0, 1.0), "y": scm.mechanisms["y"]})
    assert loaded.mechanisms["y"] is scm.mechanisms["y"]


def _saved(tmp_path):
    fitted_scm().save(tmp_path)
    return tmp_path / WEIGHTS_FILE


def test_corrupted_weights_are_refused(tmp_path):
    weights = _saved(tmp_path)
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(cd.SerializationError, match=r"checksum mismatch"):
        cd.load(tmp_path)


def test_truncated_weights_are_refused(tmp_path):
    weights = _saved(tmp_path)
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(cd.SerializationError, match=r"checksum mismatch"):
        cd.load(tmp_path)


def test_unreadable_weights_with_a_matching_checksum_are_refused(tmp_path):
    """Even if someone rewrites the checksum, a broken safetensors file is refused, not crashed on."""
    import hashlib

    weights = _saved(tmp_path)
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    cfg = json.loads((tmp_path / CONFIG_FILE).read_text())
    cfg["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (tmp_path / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(cd.SerializationError, match=r"unreadable weights"):
        cd.load(tmp_path)


def test_weights_that_do_not_match_the_config_are_refused(tmp_path):
    """A valid safetensors file whose tensors do not fit the saved network."""
    import hashlib

    from safetensors.torch import load_file, save_file

    weights = _saved(tmp_path)
    tensors = load_file(str(weights))
    cfg = json.loads((tmp_path / CONFIG_FILE).read_text())
    y = [n["name"] for n in cfg["nodes"]].index("y")  # format 2 keys: "<node index>/<key>"
    bad = {k: (v[:1] if k.startswith(f"{y}/net.") else v) for k, v in tensors.items()}
    save_file(bad, str(weights))
    cfg["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (tmp_path / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(cd.SerializationError, match=r"node 'y': tensor 'net\.0\.bias' is float32 \(1,\), "
                                                    r"scm.json records float32 \(16,\)"):
        cd.load(tmp_path)
    # the record edited to match: the mechanism itself refuses the weights
    for k, v in bad.items():
        if k.startswith(f"{y}/net."):
            cfg["nodes"][y]["tensors"][k.partition("/")[2]]["shape"] = list(v.shape)
    (tmp_path / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(cd.SerializationError, match=r"node 'y': saved network: weight '0\.weight' has shape \(1, 4\), "
                                                    r"its config builds \(16, 4\)"):
        cd.load(tmp_path)


def test_broken_or_foreign_config_is_refused(tmp_path):
    _saved(tmp_path)
    cfg_file = tmp_path / CONFIG_FILE
    good = cfg_file.read_text()
    cfg_file.write_text(good[: len(good) // 2])
    with pytest.raises(cd.SerializationError, match=r"not a valid causaldiff SCM config"):
        cd.load(tmp_path)
    cfg = json.loads(good)
    cfg["format"] = "something-else/9"
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(cd.SerializationError, match=r"format 'something-else/9'"):
        cd.load(tmp_path)
    cfg = json.loads(good)
    cfg["nodes"][0]["mechanism"] = "pickle"
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(cd.SerializationError, match=r"unknown mechanism type 'pickle'"):
        cd.load(tmp_path)
    cfg = json.loads(good)
    cfg["extra"] = 1
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(cd.SerializationError, match=r"not a valid causaldiff SCM config"):
        cd.load(tmp_path)


def test_missing_files_are_refused(tmp_path):
    with pytest.raises(cd.SerializationError, match=r"missing scm.json"):
        cd.load(tmp_path)


def test_intervened_or_unfitted_scms_are_not_saved(tmp_path):
    scm = fitted_scm()
    with pytest.raises(cd.SerializationError, match=r"save the SCM before intervening"):
        scm.do({"x": 0.0}).save(tmp_path)
    unfitted = cd.SCM(nx.DiGraph([("x", "y")]), mechanisms={"x": dist.Normal(0.0, 1.0),
                                                            "y": cd.AdditiveNoiseMechanism()})
    with pytest.raises(cd.NotFittedError, match=r"node 'y'"):
        unfitted.save(tmp_path)


def test_loaded_learnable_mechanism_refuses_an_edited_graph(tmp_path):
    fitted_scm().save(tmp_path)
    loaded = cd.load(tmp_path)
    g = nx.DiGraph(loaded.graph)
    g.remove_edge("c", "y")
    with pytest.raises(cd.GraphError, match=r"node 'y' was fitted with parents \['c', 'x'\] but the graph now gives it \['x'\]"):
        cd.SCM(g, mechanisms=loaded.mechanisms)
