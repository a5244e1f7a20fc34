"""The parent codec shared by the neural and diffusion mechanisms, and the noise-codec dispatch."""

from __future__ import annotations

import json

import pyro.distributions as dist
import pytest
import torch

import causaldiff as cd
from causaldiff.mechanisms import Abduction, ParentCodec, codec_for
from causaldiff.mechanisms.codecs import _GumbelMax, _LocScale, _MultivariateNormal


def _parents(n=6):
    g = torch.Generator().manual_seed(0)
    return {"a": torch.randn(n, 2, generator=g), "c": torch.tensor([0, 2, 1, 2, 0, 1])[:n]}


def test_encodes_in_the_recorded_order_with_one_hot_classes():
    pa = _parents()
    codec = ParentCodec.fit(pa, ("c", "a"), 6)
    assert codec.order == ("c", "a") and codec.width == 3 + 2
    feats, targets = codec.encode(pa, 6)
    assert torch.equal(feats[:, :3], torch.nn.functional.one_hot(pa["c"], 3).float())
    assert torch.equal(feats[:, 3:], pa["a"]) and torch.equal(targets[0], pa["c"])


def test_a_categorical_parent_has_at_least_two_classes():
    """One rule for both mechanisms: max(2, max + 1) (the neural mechanism counted max + 1)."""
    codec = ParentCodec.fit({"c": torch.zeros(4, dtype=torch.long)}, ("c",), 4)
    assert codec.parents[0].num_classes == 2 and codec.encode({"c": torch.zeros(4, dtype=torch.long)}, 4)[0].shape == (4, 2)


def test_standardisation_statistics_and_round_trip():
    pa = _parents()
    codec = ParentCodec.fit(pa, ("a", "c"), 6, standardize=True)
    feats, targets = codec.encode(pa, 6)
    torch.testing.assert_close(feats[:, :2].mean(0), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(feats[:, :2].std(0), torch.ones(2))
    assert torch.equal(targets[0], feats[:, :2])
    again = ParentCodec.from_saved(json.loads(json.dumps(codec.get_config())), codec.state_tensors())
    assert torch.equal(again.encode(pa, 6)[0], feats)
    with pytest.raises(cd.SerializationError, match="statistics"):
        ParentCodec.from_saved(codec.get_config(), {})


def test_errors_name_the_node_and_the_parent():
    pa = _parents()
    codec = ParentCodec.fit(pa, ("a", "c"), 6)
    with pytest.raises(cd.DataError, match="node 'y': parent 'c' takes categories outside 0..2"):
        codec.encode({**pa, "c": pa["c"] + 1}, 6, node="y")
    with pytest.raises(cd.DataError, match="node 'y': categorical parent 'c' needs integer"):
        codec.encode({**pa, "c": pa["c"].float()}, 6, node="y")
    with pytest.raises(cd.DataError, match="node 'y': parent 'a' has shape"):
        codec.encode({**pa, "a": pa["a"][:, :1]}, 6, node="y")
    with pytest.raises(cd.DataError, match="node 'y': missing parent"):
        codec.encode({"a": pa["a"]}, 6, node="y")
    with pytest.raises(cd.DataError, match="node 'y': parent 'a' contains NaN"):
        ParentCodec.fit({**pa, "a": torch.full((6, 2), float("nan"))}, ("a", "c"), 6, node="y")
    with pytest.raises(cd.DataError, match="node 'y': categorical parent 'c' needs non-negative"):
        ParentCodec.fit({**pa, "c": pa["c"] - 1}, ("a", "c"), 6, node="y")


def test_no_parents_encode_to_zero_columns():
    codec = ParentCodec.fit({}, (), 3)
    feats, targets = codec.encode({}, 3)
    assert feats.shape == (3, 0) and targets == ()


def test_noise_codec_dispatch():
    assert isinstance(codec_for(dist.Normal(torch.zeros(3), 1.0)), _LocScale)
    assert isinstance(codec_for(dist.MultivariateNormal(torch.zeros(3, 2), torch.eye(2))), _MultivariateNormal)
    assert isinstance(codec_for(dist.Bernoulli(logits=torch.zeros(3))), _GumbelMax)
    assert codec_for(dist.Poisson(torch.ones(3))).capability is Abduction.IMPOSSIBLE
