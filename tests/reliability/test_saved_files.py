"""Saved files: every field and tensor is checked at load, one error type (SerializationError) that
names the file and the node or field; the files are never changed by a refused load; keys cannot
collide; nothing pickled ever runs."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import networkx as nx
import pyro.distributions as dist
import pytest
import torch
from safetensors.torch import load_file, save_file

import causaldiff as cd
import storage_models as sm
from causaldiff.runs import load_run
from causaldiff.serialization import CONFIG_FILE, FORMAT_1, WEIGHTS_FILE


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = tmp_path_factory.mktemp("pristine") / "model"
    sm.full_scm().save(path)
    return path


@pytest.fixture
def model(pristine, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(pristine, path)
    return path


def _key(path, node, key):
    return f"{sm.index_of(path, node)}/{key}"


def _set(path, node, key, value):
    return lambda t: t.__setitem__(_key(path, node, key), value)


def _node(cfg, name):
    return next(n for n in cfg["nodes"] if n["name"] == name)


# (id, edit(path), regex naming the node or field); `rewrite` keeps the checksum valid
CASES = [
    ("stats-wrong-shape-file-only", lambda p: sm.rewrite(p, edit_tensors=_set(p, "y", "stats.in_mean", torch.zeros(7))),
     r"weights.safetensors: node 'y': tensor 'stats.in_mean' is float32 \(7,\), scm.json records float32 \(4,\)"),
    ("stats-wrong-shape-recorded", lambda p: sm.rewrite(p, edit_tensors=_set(p, "y", "stats.in_mean", torch.zeros(7)),
                                                        record=True),
     r"node 'y': saved statistics: statistic 'in_mean' has shape \(7,\), expected \(4,\)"),
    ("sigma-wrong-shape", lambda p: sm.rewrite(p, edit_tensors=_set(p, "x", "stats.sigma", torch.ones(2)), record=True),
     r"node 'x': saved statistics: statistic 'sigma' has shape \(2,\), expected \(1,\)"),
    ("integer-logits", lambda p: sm.rewrite(p, edit_tensors=_set(p, "c", "logits", torch.tensor([1, 2, 3])), record=True),
     r"node 'c': logits are torch.int64 \(3,\); expected floating \(3,\)"),
    ("integer-logits-file-only", lambda p: sm.rewrite(p, edit_tensors=_set(p, "c", "logits", torch.tensor([1, 2, 3]))),
     r"node 'c': tensor 'logits' is int64 \(3,\), scm.json records float32 \(3,\)"),
    ("logits-wrong-length", lambda p: sm.rewrite(p, edit_tensors=_set(p, "c", "logits", torch.zeros(5)), record=True),
     r"node 'c': logits are torch.float32 \(5,\); expected floating \(3,\)"),
    ("nan-logits", lambda p: sm.rewrite(p, edit_tensors=_set(p, "c", "logits", torch.tensor([0.0, float("nan"), 0.0])),
                                        record=True),
     r"node 'c': logits .* without NaN"),
    ("missing-tensor-file-only", lambda p: sm.rewrite(p, edit_tensors=lambda t: t.pop(_key(p, "y", "stats.sigma"))),
     r"node 'y': the file lacks tensor\(s\) \['stats.sigma'\]"),
    ("missing-tensor-recorded", lambda p: sm.rewrite(p, edit_tensors=lambda t: t.pop(_key(p, "y", "stats.sigma")),
                                                     record=True),
     r"node 'y': saved statistics: missing statistics \['sigma'\]"),
    ("missing-network-recorded", lambda p: sm.rewrite(p, edit_tensors=lambda t: t.pop(_key(p, "y", "net.0.weight")),
                                                      record=True),
     r"node 'y': saved network: missing weight\(s\) \['0.weight'\]"),
    ("extra-tensor-file-only", lambda p: sm.rewrite(p, edit_tensors=_set(p, "y", "stats.extra", torch.zeros(1))),
     r"node 'y': the file holds tensor\(s\) \['stats.extra'\] that scm.json does not record"),
    ("extra-statistic-recorded", lambda p: sm.rewrite(p, edit_tensors=_set(p, "y", "stats.extra", torch.zeros(1)),
                                                      record=True),
     r"node 'y': saved statistics: unexpected statistics \['extra'\]"),
    ("foreign-tensor-recorded", lambda p: sm.rewrite(p, edit_tensors=_set(p, "y", "evil.x", torch.zeros(1)), record=True),
     r"node 'y': unexpected tensor 'evil.x' in a saved AdditiveNoiseMechanism"),
    ("tensor-of-no-node", lambda p: sm.rewrite(p, edit_tensors=lambda t: t.__setitem__("99/stats.x", torch.zeros(1))),
     r"weights.safetensors: unexpected tensor '99/stats.x' \(no saved node owns it\)"),
    ("old-style-key", lambda p: sm.rewrite(p, edit_tensors=lambda t: t.__setitem__("y::stats.x", torch.zeros(1))),
     r"unexpected tensor 'y::stats.x'"),
    ("nan-statistic", lambda p: sm.rewrite(p, edit_tensors=_set(p, "y", "stats.sigma", torch.tensor([float("nan")]))),
     r"node 'y': saved statistics: statistic 'sigma' holds NaN, Inf or values <= 0"),
    ("negative-std", lambda p: sm.rewrite(p, edit_tensors=_set(p, "y", "stats.out_std", torch.tensor([-1.0]))),
     r"node 'y': saved statistics: statistic 'out_std' holds NaN, Inf or values <= 0"),
    ("integer-statistic", lambda p: sm.rewrite(p, edit_tensors=_set(p, "y", "stats.out_mean", torch.tensor([1])),
                                               record=True),
     r"node 'y': saved statistics: statistic 'out_mean' has dtype torch.int64, expected a floating dtype"),
    ("integer-weights", lambda p: sm.rewrite(p, edit_tensors=_set(p, "y", "net.0.bias", torch.zeros(4, dtype=torch.long)),
                                             record=True),
     r"node 'y': saved network: weight '0.bias' has dtype torch.int64, expected a floating dtype"),
    ("diffusion-stats-wrong-shape", lambda p: sm.rewrite(p, edit_tensors=_set(p, "d", "stats.x_mean", torch.zeros(3)),
                                                         record=True),
     r"node 'd': saved DiffusionMechanism: statistic 'x_mean' has shape \(3,\), expected \(1,\)"),
    ("diffusion-missing-stats", lambda p: sm.rewrite(p, edit_tensors=lambda t: t.pop(_key(p, "d", "stats.x_std")),
                                                     record=True),
     r"node 'd': saved DiffusionMechanism: missing statistics \['x_std'\]"),
    ("diffusion-parent-stats-wrong-shape", lambda p: sm.rewrite(
        p, edit_tensors=_set(p, "d", "stats.parent.y.mean", torch.zeros(2)), record=True),
     r"node 'd': saved parent statistics: statistic 'y.mean' has shape \(2,\), expected \(1,\)"),
    ("diffusion-missing-denoiser-weight", lambda p: sm.rewrite(
        p, edit_tensors=lambda t: t.pop(next(k for k in t if k.startswith(f"{sm.index_of(p, 'd')}/denoiser."))), record=True),
     r"node 'd': saved denoiser: missing weight\(s\)"),
    ("diffusion-denoiser-wrong-shape", lambda p: sm.rewrite(p, edit_tensors=lambda t: t.update(
        {k: torch.zeros(3, 3) for k in [next(k for k in t if k.startswith(f"{sm.index_of(p, 'd')}/denoiser.")
                                             and k.endswith("weight"))]}), record=True),
     r"node 'd': saved denoiser: weight '.*weight' has shape \(3, 3\), its config builds"),
    ("pyro-integer-parameter", lambda p: sm.rewrite(p, edit_tensors=_set(p, "p", "loc", torch.tensor(1)), record=True),
     r"node 'p': Normal: parameter\(s\) \['loc'\] are not floating tensors"),
    ("pyro-parameter-off-constraint", lambda p: sm.rewrite(p, edit_tensors=_set(p, "p", "scale", torch.tensor(-1.0))),
     r"node 'p': saved pyro mechanism does not match its weights: ValueError: .*scale"),
    ("pyro-params-field-differs", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "p")["config"].update(
        params=["loc"])), r"node 'p': Normal: field params \['loc'\] differs from the saved tensors"),
    ("unknown-parent", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "y")["parents"].append("ghost")),
     r"scm.json: node 'y': field parents \['c', 'x', 'ghost'\] names unknown parent\(s\) \['ghost'\]"),
    ("repeated-parent", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "y")["parents"].append("x")),
     r"scm.json: node 'y': field parents .* names a repeated parent"),
    ("self-parent", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "p")["parents"].append("p")),
     r"scm.json: node 'p': field parents \['p'\] names a repeated parent or itself"),
    ("cycle", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "x")["parents"].append("d")),
     r"scm.json: the saved parents form a cycle"),
    ("parents-differ-from-fit", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "y")["parents"].remove("c")),
     r"scm.json: node 'y': its mechanism was fitted with parents \['c', 'x'\] but field parents gives \['x'\]"),
    ("duplicate-node", lambda p: sm.rewrite(p, edit_config=lambda c: c["nodes"].append(dict(_node(c, "p")))),
     r"scm.json: node 'p' is saved twice"),
    ("empty-node-name", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "p").update(name="")),
     r"scm.json: not a valid causaldiff SCM config: field nodes.\d.name"),
    ("missing-field", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "y").pop("parents")),
     r"scm.json: not a valid causaldiff SCM config: field nodes.\d.parents: Field required"),
    ("wrong-field-type", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "y").update(parents="x")),
     r"scm.json: not a valid causaldiff SCM config: field nodes.\d.parents"),
    ("unknown-field", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "y").update(code="import os")),
     r"scm.json: not a valid causaldiff SCM config: field nodes.\d.code: Extra inputs are not permitted"),
    ("bad-tensor-record", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "y")["tensors"]["stats.sigma"].update(
        shape="big")), r"scm.json: not a valid causaldiff SCM config: field nodes.\d.tensors.stats.sigma.shape"),
    ("no-tensor-record", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "y").pop("tensors")),
     r"scm.json: node 'y': field tensors is missing"),
    ("unknown-mechanism", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "y").update(mechanism="pickle")),
     r"scm.json: node 'y': unknown mechanism type 'pickle'"),
    ("unknown-format", lambda p: sm.rewrite(p, edit_config=lambda c: c.update(format="causaldiff-scm/9")),
     r"scm.json: format 'causaldiff-scm/9', this causaldiff reads 'causaldiff-scm/2'"),
    ("bad-mechanism-config", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "y")["config"]["config"].update(
        hidden="wide")), r"node 'y': saved additive_noise mechanism does not match its weights: ValidationError"),
    ("shape-field-wrong", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "y")["config"].update(shape=[3])),
     r"node 'y': field shape \[3\] does not hold out_dim = 1 values"),
    ("huge-hidden-never-allocated", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "y")["config"]["config"].update(
        hidden=[10 ** 9])), r"(?s)node 'y': saved additive_noise mechanism does not match its weights.*hidden"),
    ("huge-diffusion-width-never-allocated", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "d")["config"]["state"][
        "net"].update(hidden=10 ** 8)), r"(?s)node 'd': not a saved DiffusionMechanism state.*hidden"),
    ("categorical-classes-missing", lambda p: sm.rewrite(p, edit_config=lambda c: _node(c, "c")["config"].update(
        num_classes=None)), r"node 'c': field num_classes is missing"),
    ("checksum-mismatch", lambda p: (p / WEIGHTS_FILE).write_bytes((p / WEIGHTS_FILE).read_bytes()[:-1] + b"\x00"),
     r"weights.safetensors: checksum mismatch"),
    ("truncated-weights", lambda p: (p / WEIGHTS_FILE).write_bytes((p / WEIGHTS_FILE).read_bytes()[:40]),
     r"weights.safetensors: checksum mismatch"),
    ("truncated-config", lambda p: (p / CONFIG_FILE).write_text((p / CONFIG_FILE).read_text()[:200]),
     r"scm.json: not a valid causaldiff SCM config \(not JSON in UTF-8\)"),
    ("config-not-utf8", lambda p: (p / CONFIG_FILE).write_bytes(b"\xff\xfe{}"),
     r"scm.json: not a valid causaldiff SCM config \(not JSON in UTF-8\)"),
    ("config-not-an-object", lambda p: (p / CONFIG_FILE).write_text("[1, 2]"),
     r"scm.json: not a valid causaldiff SCM config: field the top level"),
    ("empty-config", lambda p: (p / CONFIG_FILE).write_text(""), r"scm.json: not a valid causaldiff SCM config"),
    ("weights-missing", lambda p: (p / WEIGHTS_FILE).unlink(), r"missing weights.safetensors"),
    ("weights-a-directory", lambda p: ((p / WEIGHTS_FILE).unlink(), (p / WEIGHTS_FILE).mkdir()),
     r"missing weights.safetensors"),
]


@pytest.mark.parametrize("edit, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_saved_file_is_refused_naming_the_file_and_node(model, edit, match):
    edit(model)
    before = sm.files(model)
    with pytest.raises(cd.SerializationError, match=match) as e:
        cd.load(model)
    assert os.path.realpath(model) in str(e.value)
    assert sm.files(model) == before  # a refused load changes nothing


def test_unreadable_weights_with_a_valid_checksum(model):
    (model / WEIGHTS_FILE).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    sm.rewrite(model)
    with pytest.raises(cd.SerializationError, match=r"weights.safetensors: unreadable weights"):
        cd.load(model)


class Boom:
    """A pickle that would leave a file behind if it ever ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("where", [WEIGHTS_FILE, CONFIG_FILE])
def test_a_hostile_pickle_never_runs(model, tmp_path, where):
    marker = tmp_path / "pwned"
    (model / where).write_bytes(pickle.dumps(Boom(str(marker))))
    if where == WEIGHTS_FILE:
        sm.rewrite(model)
    with pytest.raises(cd.SerializationError, match=r"unreadable weights|not JSON"):
        cd.load(model)
    assert not marker.exists()


@pytest.mark.parametrize("names", [("y", "y::a"), ("0/x", "0"), ("a::b::c", "a::b"), ("ü/::", "ü")],
                         ids=["y-and-y::a", "slash-and-digit", "nested-colons", "unicode"])
def test_node_names_whose_old_keys_would_collide_save_and_load(tmp_path, names):
    a, b = names
    g = nx.DiGraph([(a, b)])
    data = {a: torch.randn(80), b: torch.randn(80)}
    scm = cd.SCM(g, mechanisms={a: cd.AdditiveNoiseMechanism(steps=3), b: cd.AdditiveNoiseMechanism(steps=3, hidden=(3,))})
    scm.fit(data)
    scm.save(tmp_path / "m")
    loaded = cd.load(tmp_path / "m")
    assert sm.same_weights(scm, loaded)
    x, y = scm.counterfactual(data, do={a: 0.5}), loaded.counterfactual(data, do={a: 0.5})
    assert all(torch.equal(x[k], y[k]) for k in x)


def test_format_1_files_are_still_read(model):
    """A format-1 save (keys "<node>::<key>", no tensor record) loads to the same model."""
    cfg = json.loads((model / CONFIG_FILE).read_text())
    tensors = load_file(str(model / WEIGHTS_FILE))
    old = {f"{cfg['nodes'][int(k.partition('/')[0])]['name']}::{k.partition('/')[2]}": v for k, v in tensors.items()}
    save_file(old, str(model / WEIGHTS_FILE))
    sm.rewrite(model, edit_config=lambda c: [c.update(format=FORMAT_1)] + [n.pop("tensors") for n in c["nodes"]])
    new = cd.load(model)
    assert {k: v.shape for k, v in sm.weights(new).items()} == {(n, k.partition("::")[2]): v.shape
                                                                for k, v in old.items() for n in [k.rpartition("::")[0]]}


def test_a_leftover_temporary_is_never_read_as_the_model(model, tmp_path):
    shutil.copytree(model, tmp_path / ".model.tmp-1-deadbeef")
    (tmp_path / ".model.tmp-1-deadbeef" / CONFIG_FILE).write_text("garbage")
    assert cd.load(model).nodes  # the model, not the temporary
    shutil.rmtree(model)
    with pytest.raises(cd.SerializationError, match=r"missing scm.json"):
        cd.load(model)


@pytest.mark.parametrize("where", ["cuda:99", "meta", "cpu:3", "nowhere"])
def test_a_bad_map_location_is_refused_before_reading(model, where):
    (model / CONFIG_FILE).write_text("garbage")  # never read
    with pytest.raises(cd.CausalDiffError, match=r"map_location"):
        cd.load(model, map_location=where)


def test_rebinding_an_unknown_node(model):
    with pytest.raises(cd.SerializationError, match=r"unknown node\(s\) \['ghost'\]"):
        cd.load(model, mechanisms={"ghost": dist.Normal(0.0, 1.0)})


# ------------------------------------------------------------------------------- run folders
@pytest.mark.parametrize("text, match", [
    (b"\xff\xfe", r"spec.json: not a JSON file written by `causaldiff fit`"),
    (b"{not json", r"spec.json: not a JSON file written by `causaldiff fit`"),
    (b"[]", r"spec.json"),
    (b'{"name": "x", "bogus": 1}', r"(?s)spec.json: invalid spec.*bogus: Extra inputs"),
], ids=["not-utf8", "not-json", "a-list", "unknown-field"])
def test_a_garbage_spec_json_in_a_run_is_one_clear_error(tmp_path, text, match):
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.json").write_bytes(text)
    with pytest.raises(cd.SerializationError, match=match) as e:
        load_run(run)
    assert str(run / "spec.json") in str(e.value)
    assert (run / "spec.json").read_bytes() == text


def test_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(cd.SerializationError, match=r"is not a run directory \(no spec.json\)"):
        load_run(tmp_path)


# ------------------------------------------------------------------------------- pretrained UNets
@pytest.fixture
def pretrained_model(tmp_path):
    diffusers = pytest.importorskip("diffusers", reason="needs the optional extra causaldiff[diffusers]")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 8), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    g = nx.DiGraph()
    g.add_node("img")
    cd.SCM(g, mechanisms={"img": cd.DiffusionMechanism.from_diffusers(unet)}).save(tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.parametrize("edit, match", [
    ({"block_out_channels": [100_000, 100_000], "norm_num_groups": 4},
     r"node 'img': saved pretrained denoiser config: block_out_channels=\[100000, 100000\] must be a positive integer"),
    ({"in_channels": 3}, r"node 'img': saved denoiser: weight 'unet.conv_in.weight' has shape \(8, 1, 3, 3\), its config builds \(8, 3, 3, 3\)"),
    ({"down_block_types": ["NoSuchBlock2D", "DownBlock2D"]},
     r"node 'img': saved pretrained denoiser config: not a valid UNet2DModel config \(ValueError: NoSuchBlock2D"),
    ({"block_out_channels": [60_000, 60_000], "norm_num_groups": 4},
     r"node 'img': saved pretrained denoiser config: a UNet2DModel of [\d,]+ parameters is more than MAX_PARAMETERS"),
    ({"in_channels": -3}, r"node 'img': saved pretrained denoiser config: in_channels=-3"),
], ids=["huge-channels-never-allocated", "other-channels", "unknown-block", "too-many-parameters",
                            "negative-channels"])
def test_a_bad_pretrained_unet_config_is_refused_before_allocating(pretrained_model, edit, match):
    sm.rewrite(pretrained_model, edit_config=lambda c: _node(c, "img")["config"]["pretrained"]["unet"].update(edit))
    before = sm.files(pretrained_model)
    with pytest.raises(cd.SerializationError, match=match):
        cd.load(pretrained_model)
    assert sm.files(pretrained_model) == before
