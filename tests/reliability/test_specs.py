"""Reliability catalogue, specs (issue 14, point 7): every option validated when the spec is loaded,
one :class:`SpecError` naming the file and the key for any problem, checkpoints confined to the run
folder and separate per training."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
from bad_inputs import files_under, refuse

from causaldiff.errors import SpecError
from causaldiff.spec import load_spec, parse_spec

ANM = {"name": "a", "dataset": {"kind": "tabular", "name": "chain-nonlinear", "n_train": 50, "n_test": 10},
       "nodes": {"x1": {"mechanism": "additive_noise"}, "x2": {"parents": ["x1"], "mechanism": "additive_noise"}}}
DIFF = {"mechanism": "diffusion", "parents": ["x1"],
        "options": {"net": {"kind": "mlp", "hidden": 8, "num_layers": 1}, "train": {"steps": 4, "batch_size": 8},
                    "schedule": {"kind": "linear", "num_train_timesteps": 10, "beta_end": 0.1},
                    "sampler": {"num_inference_steps": 2}}}


def spec_with(**changes):
    """ANM with ``a__b__c=value`` set (``None`` deletes)."""
    raw = copy.deepcopy(ANM)
    for path, value in changes.items():
        *keys, last = path.split("__")
        d = raw
        for k in keys:
            d = d.setdefault(k, {})
        if value is None:
            d.pop(last, None)
        else:
            d[last] = value
    return raw


def ckpt(train="ck", predictor=None, node="x2"):
    raw = spec_with(nodes__x2=copy.deepcopy(DIFF))
    raw["nodes"]["x2"]["options"]["train"]["checkpoint_dir"] = train
    raw["nodes"]["x2"]["options"]["train"]["checkpoint_every"] = 2
    if predictor is not None:
        raw["nodes"]["x2"]["options"].update(guidance="anticausal", predictor_train={"steps": 2, "checkpoint_dir": predictor})
    return raw


CASES = {
    # key named in the message -> spec
    "nodes.x1.options.bogus": spec_with(nodes__x1__options={"bogus": 1}),
    "nodes.x2.options.hidden.0": spec_with(nodes__x2__options={"hidden": [10 ** 9]}),
    "nodes.x2.options.hidden": spec_with(nodes__x2__options={"hidden": [8] * 1000}),
    "nodes.x2.options.steps": spec_with(nodes__x2__options={"steps": -1}),
    "nodes.x2.options.lr": spec_with(nodes__x2__options={"lr": float("nan")}),
    "nodes.x1.options.steps ": spec_with(nodes__x1__options={"steps": 10 ** 12}),
    "nodes.x2.options.train.steps": spec_with(nodes__x2={**DIFF, "options": {**DIFF["options"], "train": {"steps": -1}}}),
    "nodes.x2.options.net.mlp.hidden": spec_with(nodes__x2={**DIFF, "options": {**DIFF["options"], "net": {"kind": "mlp", "hidden": 10 ** 9}}}),
    "nodes.x2.options.sampler.num_inference_steps": spec_with(
        nodes__x2={**DIFF, "options": {**DIFF["options"], "sampler": {"num_inference_steps": 0}}}),
    "dataset.n_train": spec_with(dataset__n_train=10 ** 12),
    "dataset.n_test": spec_with(dataset__n_test=0),
    "dataset.seed": spec_with(dataset__seed=-1),
    "dataset.seed ": spec_with(dataset__seed=2 ** 70),
    "dataset.options.name": spec_with(dataset__name="nope"),
    "dataset.options.foo": spec_with(dataset__foo=3),
    "dataset.options": spec_with(dataset__options=5, dataset__foo=1),
    "dataset: unknown dataset": spec_with(dataset__kind="nope"),
    "nodes.x2: .*lists a parent twice": spec_with(nodes__x2__parents=["x1", "x1"]),
    "nodes.x2.parents: unknown parent": spec_with(nodes__x2__parents=["q"]),
    "nodes.x1.options": spec_with(nodes__x1__options=5),
    "nodes.x1.mechanism": spec_with(nodes__x1__mechanism=3),
    "nodes.x1: unknown mechanism": spec_with(nodes__x1__mechanism="nope"),
    "nodes: a spec needs at least one node": spec_with(nodes={}),
    "nodes..*at least 1 character": spec_with(nodes__={"mechanism": "normal"}),
    "nodes.x2.options.train.checkpoint_dir: '/tmp/evil' must be a relative path": ckpt("/tmp/evil"),
    "nodes.x2.options.train.checkpoint_dir: '../up' must be a relative path": ckpt("../up"),
    "nodes.x2.options.train.checkpoint_dir: 'a/../../b' must be": ckpt("a/../../b"),
    r"nodes.x2.options.train.checkpoint_dir: 'C:\\\\x' must be": ckpt("C:\\x"),
    "nodes.x2.options.train.checkpoint_dir: '' must be": ckpt(""),
    "nodes.x2.options.predictor_train.checkpoint_dir: 'ck' is also the checkpoint_dir of nodes.x2.options.train": ckpt("ck", "ck"),
    "nodes.x2.options.predictor_train.checkpoint_dir: './ck/' is also": ckpt("ck", "./ck/"),
    "nodes.x2.options.train.checkpoint_dir: 'scm' names the run folder's own 'scm'": ckpt("scm"),
    "nodes.x2.options.train.checkpoint_dir: 'spec.json' names": ckpt("spec.json"),
    "nodes.x2.options.train.checkpoint_dir: './fit.json/ck' names the run folder's own 'fit.json'": ckpt("./fit.json/ck"),
    "nodes.x2.options.train.checkpoint_dir: 'scm/x' names": ckpt("scm/x"),
    "nodes.x2.options.predictor_train.checkpoint_dir: 'metrics.json' names": ckpt("ck", "metrics.json"),
    "name": spec_with(name=None),
    "dataset.kind": spec_with(dataset__kind=["tabular"]),
}


@pytest.mark.parametrize("key", list(CASES))
def test_every_bad_option_is_one_spec_error_naming_the_key(key, tmp_path):
    refuse(SpecError, rf"^where: invalid spec:\n(.|\n)*{key.strip()}", lambda: parse_spec(CASES[key], "where"),
           folder=tmp_path)


def test_two_nodes_sharing_a_checkpoint_dir_are_refused():
    raw = ckpt("ck/shared")
    raw["nodes"]["x3"] = copy.deepcopy(raw["nodes"]["x2"])
    raw["nodes"]["x3"]["parents"] = ["x2"]
    refuse(SpecError, r"nodes.x3.options.train.checkpoint_dir: 'ck/shared' is also the checkpoint_dir of "
                      r"nodes.x2.options.train", lambda: parse_spec(raw))
    raw["nodes"]["x3"]["options"]["train"]["checkpoint_dir"] = "ck/x3"
    assert parse_spec(raw).nodes["x3"].options["train"]["checkpoint_dir"] == "ck/x3"


def test_a_raw_spec_that_is_not_a_table():
    refuse(SpecError, r"spec: invalid spec:\n  Input should be a valid dictionary", lambda: parse_spec([1]))


FILES = {
    "not UTF-8": (b'name = "\xff\xfe"\n', r"spec.toml: not a UTF-8 text file"),
    "bad TOML": (b'name = "x\n[[', r"spec.toml: invalid TOML"),
    "empty": (b"", r"spec.toml: invalid spec:\n  name: Field required"),
    "unknown option": (b'name = "a"\n[dataset]\nkind = "tabular"\nname = "chain-nonlinear"\n[nodes.x]\nmechanism = "normal"\n'
                       b'options = { bogus = 1 }\n', r"spec.toml: invalid spec:\n  nodes.x.options.bogus: Extra inputs"),
    "nan option": (b'name = "a"\n[dataset]\nkind = "tabular"\nname = "chain-nonlinear"\n[nodes.x]\nmechanism = "normal"\n'
                   b'options = { scale = nan }\n', r"spec.toml: invalid spec:\n  nodes.x.options.scale"),
    "unknown data set": (b'name = "a"\n[dataset]\nkind = "tabular"\nname = "nope"\n[nodes.x]\nmechanism = "normal"\n',
                         r"spec.toml: invalid spec:\n  dataset.options.name: .*unknown tabular SCM 'nope'"),
}


@pytest.mark.parametrize("case", list(FILES))
def test_file_problems_are_one_spec_error_naming_the_file(tmp_path, case):
    path = tmp_path / "spec.toml"
    path.write_bytes(FILES[case][0])
    refuse(SpecError, FILES[case][1], lambda: load_spec(path), folder=tmp_path)


def test_a_missing_file_or_a_folder(tmp_path):
    refuse(SpecError, r"no spec file at .*missing.toml", lambda: load_spec(tmp_path / "missing.toml"))
    refuse(SpecError, r"no spec file at .* \(it is a directory\)", lambda: load_spec(tmp_path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text('name = "a"\n')
    path.chmod(0)
    refuse(SpecError, r"spec.toml: cannot read the spec", lambda: load_spec(path))


def test_checkpoints_are_written_inside_the_run_folder(tmp_path, monkeypatch):
    """A spec's relative checkpoint_dir lands in the run folder, not in the current folder."""
    from causaldiff.evaluation.report import write_text
    from causaldiff.runs import fit_run

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    spec = tmp_path / "spec.toml"
    raw = ckpt("ck/x2")
    raw["nodes"]["x1"]["options"] = {"steps": 3}
    raw["nodes"]["x3"] = {"mechanism": "additive_noise", "parents": ["x2"], "options": {"steps": 3}}
    write_text(spec, _toml(raw))
    fit_run(spec, tmp_path / "run")
    assert files_under(cwd) == {}
    assert any(Path(k).parts[:2] == ("ck", "x2") for k in files_under(tmp_path / "run"))


def _toml(raw) -> str:
    import json

    lines = [f"name = {json.dumps(raw['name'])}", "[dataset]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in raw["dataset"].items()]
    for node, ns in raw["nodes"].items():
        lines += [f"[nodes.{node}]", f"mechanism = {json.dumps(ns['mechanism'])}", f"parents = {json.dumps(ns.get('parents', []))}"]
        for k, v in ns.get("options", {}).items():
            lines.append(f"options.{k} = {_inline(v)}")
    return "\n".join(lines) + "\n"


def _inline(v) -> str:
    import json

    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_inline(x)}" for k, x in v.items()) + " }"
    return json.dumps(v)


# ============================================================================ issue 25
DEEP = {
    "arrays": "a = " + "[" * 3000 + "]" * 3000,
    "inline tables": "a = " + "{ b = " * 3000 + "1" + " }" * 3000,
    "arrays of tables": 'name = "a"\nx = ' + "[{ y = " * 3000 + "1" + " }]" * 3000,
}


@pytest.mark.parametrize("case", list(DEEP))
def test_a_deeply_nested_toml_is_one_spec_error(tmp_path, case):
    path = tmp_path / "spec.toml"
    path.write_text(DEEP[case])
    refuse(SpecError, r"spec.toml: invalid TOML: nested too deeply", lambda: load_spec(path), folder=tmp_path)


@pytest.mark.parametrize("depth", [3000, 10000])
def test_a_deeply_nested_dict_is_one_spec_error(depth):
    raw = spec_with()
    inner = raw["nodes"]["x1"]["options"] = {}
    for _ in range(depth):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(SpecError, match="where: (nested too deeply|invalid spec)"):
        parse_spec(raw, "where")


def _run_folder(tmp_path, make):
    """A run folder in which ``make(run)`` prepared ``ck`` (the spec's checkpoint_dir), and the
    call that builds the spec's SCM rooted there."""
    from causaldiff.build import build_scm

    run = tmp_path / "run"
    run.mkdir()
    make(run)
    return lambda: build_scm(parse_spec(ckpt("ck/x2")), run=run)


FOLDERS = {
    "a symlink to outside": (lambda run: (run / "ck").symlink_to(run.parent), r"run/ck is a symlink"),
    "a symlink below": (lambda run: ((run / "ck").mkdir(), (run / "ck" / "x2").symlink_to("/tmp")), r"ck/x2 is a symlink"),
    "a dangling symlink": (lambda run: (run / "ck").symlink_to(run / "nowhere"), r"run/ck is a symlink"),
    "a symlinked checkpoint": (lambda run: ((run / "ck" / "x2").mkdir(parents=True),
                                            (run / "ck" / "x2" / "checkpoint.pt").symlink_to("/etc/passwd")),
                               r"checkpoint.pt is a symlink"),
    "a file in the way": (lambda run: (run / "ck").write_text("x"), r"run/ck is a file, not a folder"),
    "another run": (lambda run: ((run / "ck" / "x2").mkdir(parents=True), (run / "ck" / "x2" / "spec.json").write_text("{}")),
                    r"ck/x2 holds another run"),
    "another run's model": (lambda run: (run / "ck" / "x2" / "scm").mkdir(parents=True), r"ck/x2 holds another run"),
}


@pytest.mark.parametrize("case", list(FOLDERS))
def test_a_checkpoint_dir_that_leaves_the_run_or_holds_another_is_refused_before_training(tmp_path, case):
    make, match = FOLDERS[case]
    build = _run_folder(tmp_path, make)
    before = sorted(tmp_path.rglob("*"))  # (symlinks listed, not followed)
    with pytest.raises(SpecError, match=r"nodes.x2.options.train.checkpoint_dir: .*" + match):
        build()
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("make", [lambda run: None, lambda run: (run / "ck" / "x2").mkdir(parents=True),
                                  lambda run: (run / "spec.json").write_text("{}")], ids=["new", "existing", "run's own spec"])
def test_a_checkpoint_dir_inside_the_run_is_accepted(tmp_path, make):
    scm = _run_folder(tmp_path, make)()
    assert scm.mechanisms["x2"].config.train.checkpoint_dir == str(tmp_path / "run" / "ck" / "x2")
