"""Specs are validated against the registries when they are loaded, every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

import causaldiff as cd
from causaldiff.build import build_dataset, build_scm, load_rows
from causaldiff.spec import load_spec, parse_spec

GOOD = {
    "name": "chain",
    "dataset": {"kind": "tabular", "name": "chain-nonlinear", "n_train": 50, "n_test": 10},
    "nodes": {"x1": {"mechanism": "normal", "options": {"loc": 0.0, "scale": 1.0}},
              "x2": {"parents": ["x1"], "mechanism": "additive_noise", "options": {"steps": 5}},
              "x3": {"parents": ["x2"], "mechanism": "truth"}},
}


def _with(**changes):
    raw = {**GOOD, "dataset": dict(GOOD["dataset"]), "nodes": {k: dict(v) for k, v in GOOD["nodes"].items()}}
    for path, value in changes.items():
        where, *keys = path.split("__")
        target = raw[where]
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return raw


def test_a_good_spec_builds_an_scm_that_fits():
    spec = parse_spec(GOOD)
    rows = load_rows(spec.dataset, "train")
    scm = build_scm(spec, rows.dataset).fit(rows.values)
    cf = scm.counterfactual(load_rows(spec.dataset, "test").values, do={"x1": 0.5})
    assert set(cf) == {"x1", "x2", "x3"} and bool((cf["x1"] == 0.5).all())


def test_every_problem_is_reported_at_once_naming_node_and_key():
    raw = _with(nodes__x1__mechanism="nope", nodes__x2__options={"steps": -1, "colour": "red"},
                dataset__name="no-such-scm")
    with pytest.raises(cd.GraphError) as info:
        parse_spec(raw, "my.toml")
    text = str(info.value)
    assert text.startswith("my.toml: invalid spec:")
    assert "nodes.x1: unknown mechanism 'nope'; registered:" in text
    assert "nodes.x2.options.steps" in text and "nodes.x2.options.colour" in text
    assert "dataset.options.name" in text
    assert "Traceback" not in text


def test_unknown_dataset_kind_lists_the_registered_ones():
    with pytest.raises(cd.GraphError, match=r"dataset: unknown dataset 'nope'; registered: .*tabular"):
        parse_spec(_with(dataset__kind="nope"))


def test_truth_takes_no_options_and_needs_a_true_mechanism():
    with pytest.raises(cd.GraphError, match=r"nodes.x3.options: mechanism 'truth' takes no options"):
        parse_spec(_with(nodes__x3__options={"a": 1}))
    spec = parse_spec(_with(dataset__name="chain-nonadditive"))
    with pytest.raises(cd.GraphError, match=r"node 'x3': mechanism 'truth' needs a true mechanism"):
        build_scm(spec, build_dataset(spec.dataset))


def test_files_that_are_not_specs_give_one_line(tmp_path: Path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('name = "caf\xe9"'.encode("latin-1"))
    with pytest.raises(cd.GraphError, match="not a UTF-8 text file"):
        load_spec(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("name = ")
    with pytest.raises(cd.GraphError, match="invalid TOML"):
        load_spec(broken)
    with pytest.raises(cd.GraphError, match="no spec file"):
        load_spec(tmp_path / "missing.toml")


def test_quick_keeps_a_valid_spec_with_smaller_data():
    quick = parse_spec(_with(nodes__x2__options={"steps": 5000})).quick()
    assert quick.dataset.n_train <= 300 and quick.nodes["x2"].options["steps"] <= 100
    assert quick.nodes["x3"].mechanism == "truth"


def test_the_module_docstring_example_validates_builds_and_fits():
    import tomllib

    import causaldiff.spec as spec_module

    doc = spec_module.__doc__
    block = doc[doc.index('    name = "chain"'):doc.index("``mechanism = \"truth\"``")]
    spec = parse_spec(tomllib.loads("\n".join(line[4:] for line in block.splitlines())))
    quick = spec.quick()
    rows = load_rows(quick.dataset, "train")
    scm = build_scm(quick, rows.dataset).fit(rows.values)
    assert set(scm.counterfactual(rows.values, do={"x1": 0.0})) == {"x1", "x2", "x3"}


SETTINGS_SPEC = {
    "name": "chain", "dataset": {"kind": "tabular", "name": "chain-nonlinear", "n_train": 500},
    "nodes": {"x1": {"mechanism": "normal"},
              "x2": {"parents": ["x1"], "mechanism": "additive_noise", "options": {"hidden": [8], "steps": 30}}},
    "settings": {"small": {"dataset": {"n_train": 100},
                           "nodes": {"x2": {"options": {"steps": 5}}}}},
}


def test_a_declared_setting_overlays_the_data_set_and_nodes_key_by_key():
    from causaldiff.runs import with_setting

    spec = parse_spec(SETTINGS_SPEC)
    small = with_setting(spec, "small")
    assert small.dataset.n_train == 100 and small.dataset.options == spec.dataset.options
    assert small.nodes["x2"].options == {"hidden": [8], "steps": 5} and small.nodes["x2"].parents == ("x1",)
    assert small.settings == {} and spec.nodes["x2"].options["steps"] == 30  # the spec itself unchanged
    assert with_setting(spec, "quick") == spec.quick()  # quick for every spec
    with pytest.raises(cd.GraphError, match=r"--setting big: not declared by this spec \(declared: quick, small\)"):
        with_setting(spec, "big")


def test_settings_are_validated_when_the_spec_is_loaded():
    bad = {**SETTINGS_SPEC, "settings": {"small": {"nodes": {"x2": {"options": {"stepz": 5}}}},
                                         "odd": {"train": {"steps": 1}}}}
    with pytest.raises(cd.SpecError) as e:
        parse_spec(bad)
    assert "settings.small" in str(e.value) and "stepz" in str(e.value)
    assert "settings.odd: unknown key(s) ['train']" in str(e.value)

