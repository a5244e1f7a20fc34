"""Declarative SCM specs (``graphs/*.toml``): validated, frozen, and unable to run code.

A spec names its data set and its nodes with their parents; each node names a mechanism kind
registered in :data:`causaldiff.registry.MECHANISMS` and gives its options, which are validated
against that kind's ``Config`` *when the spec is loaded*; the data set's kind and options are
validated against :data:`causaldiff.registry.DATASETS` the same way. Every problem is reported at
once, naming the node (or the data set) and the key::

    name = "chain"
    [dataset]
    kind = "tabular"          # a registered data set; keys other than kind / n_train /
    name = "chain-nonlinear"  # n_test / seed are that data set's options
    n_train = 5000
    [nodes.x1]
    mechanism = "normal"
    [nodes.x2]
    parents = ["x1"]
    mechanism = "diffusion"
    options = { net = { kind = "mlp", hidden = 64 }, train = { steps = 2000 } }
    [nodes.x3]
    parents = ["x2"]
    mechanism = "truth"

``mechanism = "truth"`` (reserved) binds the node to the data set's own true mechanism, for data
sets with ground truth that know one. Nothing in a spec is imported or evaluated.

A spec may declare named settings (``causaldiff fit --setting NAME``): tables overlaid on its
``dataset`` and ``nodes`` (nested tables merged key by key), each validated when the spec is loaded::

    [settings.cpu]
    dataset = { n_test = 100 }
    [settings.cpu.nodes.x2.options]
    train = { steps = 500 }

Sizes are bounded (:mod:`causaldiff.limits`: ``n_train``, widths, steps...). A training's
``checkpoint_dir`` is a relative path inside the run folder (``causaldiff fit --out``), without
``..``, and no two trainings of a spec share one. Every problem raises one
:class:`~causaldiff.errors.SpecError` naming the file and the key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import datasets as _datasets  # noqa: F401  (registers the built-in data sets)
from . import mechanisms as _mechanisms  # noqa: F401  (registers the built-in mechanisms)
from .errors import SpecError
from .limits import DatasetRows, Seed
from .registry import DATASETS, MECHANISMS
from .training import TrainConfig

#: the reserved mechanism name: the data set's own true mechanism of the node
TRUTH = "truth"
#: dataset keys common to every data set (the others are the data set's options)
DATASET_KEYS = ("kind", "n_train", "n_test", "seed", "options")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _errors(exc: ValidationError, where: str) -> list[str]:
    """One readable line per pydantic error, prefixed by where the options live."""
    out = []
    for err in exc.errors():
        key = ".".join(str(x) for x in err["loc"])
        out.append(f"{where}{'.' + key if key else ''}: {err['msg']}")
    return out


def validate_options(registry: Any, kind: str, options: dict[str, Any], where: str) -> list[str]:
    """The problems of ``options`` for the registered ``kind`` (empty when they are valid)."""
    if kind not in registry:
        return [f"{where}: unknown {registry.kind} {kind!r}; registered: {', '.join(registry.names())}"]
    try:
        registry.get(kind).Config.model_validate(options)
    except ValidationError as e:
        return _errors(e, f"{where}.options")
    return []


class DatasetSpec(_Frozen):
    """Where the rows come from: a registered data set, its options, split sizes and seed."""

    kind: str
    n_train: DatasetRows = 5000
    n_test: DatasetRows = 1000
    seed: Seed = 0
    #: the data set's options (validated against its registered Config)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather_options(cls, raw: Any) -> Any:
        """Keys other than the common ones are the data set's options (the flat TOML form)."""
        if not isinstance(raw, dict):
            return raw
        extra = {k: v for k, v in raw.items() if k not in DATASET_KEYS}
        if not extra or not isinstance(raw.get("options") or {}, dict):
            return raw  # (options that are not a table: refused by the field's own validation)
        common = {k: v for k, v in raw.items() if k in DATASET_KEYS}
        return {**common, "options": {**dict(common.get("options") or {}), **extra}}

    def config(self) -> BaseModel:
        """The validated Config of the data set."""
        return DATASETS.get(self.kind).Config.model_validate(self.options)


class NodeSpec(_Frozen):
    parents: tuple[str, ...] = ()
    mechanism: str
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _distinct_parents(self) -> "NodeSpec":
        if len(set(self.parents)) != len(self.parents):
            raise ValueError(f"parents: {list(self.parents)} lists a parent twice")
        return self


def train_fields(config: BaseModel) -> dict[str, TrainConfig]:
    """The config's trainings: its fields holding a :class:`~causaldiff.training.TrainConfig`."""
    return {f: v for f in type(config).model_fields if isinstance(v := getattr(config, f), TrainConfig)}


#: what ``causaldiff fit`` and the commands on a run write in the run folder (no checkpoint_dir there)
RUN_ENTRIES = frozenset({"scm", "spec.json", "fit.json", "metrics.json", "counterfactual.json", "sweep.json", "sweep.png"})


def _checkpoint_problems(configs: dict[str, BaseModel]) -> list[str]:
    """``checkpoint_dir``: relative, inside the run folder, one per training (``where`` -> config)."""
    problems, owner = [], {}
    for where, config in configs.items():
        for field, train in train_fields(config).items():
            if train.checkpoint_dir is None:
                continue
            key, raw = f"{where}.options.{field}.checkpoint_dir", train.checkpoint_dir
            parts = PurePosixPath(raw.replace("\\", "/")).parts
            if not raw or PurePosixPath(raw).is_absolute() or PureWindowsPath(raw).drive or ".." in parts:
                problems.append(f"{key}: {raw!r} must be a relative path inside the run folder (no '..')")
                continue
            norm = "/".join(p for p in parts if p != ".")
            if norm.split("/")[0] in RUN_ENTRIES:
                problems.append(f"{key}: {raw!r} names the run folder's own {norm.split('/')[0]!r}; give another folder")
                continue
            if norm in owner:
                problems.append(f"{key}: {raw!r} is also the checkpoint_dir of {owner[norm]}; give each its own")
            owner.setdefault(norm, key)
    return problems


def overlay(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in: nested tables key by key, any other value replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = overlay(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class GraphSpec(_Frozen):
    """A whole declarative SCM."""

    name: str
    description: str = ""
    dataset: DatasetSpec
    nodes: dict[Annotated[str, Field(min_length=1)], NodeSpec]
    #: named settings: overlays of ``dataset`` and ``nodes`` (:meth:`in_setting`)
    settings: dict[Annotated[str, Field(min_length=1)], dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> "GraphSpec":
        problems = validate_options(DATASETS, self.dataset.kind, self.dataset.options, "dataset")
        configs = {}
        if not self.nodes:
            problems.append("nodes: a spec needs at least one node")
        for node, ns in self.nodes.items():
            unknown = [p for p in ns.parents if p not in self.nodes]
            if unknown:
                problems.append(f"nodes.{node}.parents: unknown parent(s) {unknown}")
            if node in ns.parents:
                problems.append(f"nodes.{node}.parents: the node lists itself as a parent")
            if ns.mechanism == TRUTH:
                if ns.options:
                    problems.append(f"nodes.{node}.options: mechanism 'truth' takes no options")
            else:
                found = validate_options(MECHANISMS, ns.mechanism, ns.options, f"nodes.{node}")
                problems += found
                if not found:
                    configs[f"nodes.{node}"] = MECHANISMS.get(ns.mechanism).Config.model_validate(ns.options)
        problems += _checkpoint_problems(configs)
        if not problems and not nx.is_directed_acyclic_graph(self.graph()):
            problems.append(f"nodes: the graph has a cycle: {nx.find_cycle(self.graph())}")
        if not problems:
            problems += self._setting_problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _setting_problems(self) -> list[str]:
        """Each declared setting overlays only ``dataset`` and ``nodes`` and gives a valid spec."""
        problems = []
        for name, over in self.settings.items():
            if unknown := sorted(set(over) - {"dataset", "nodes"}):
                problems.append(f"settings.{name}: unknown key(s) {unknown}; a setting overlays dataset and nodes")
                continue
            try:
                self.in_setting(name)
            except ValidationError as e:
                problems += _errors(e, f"settings.{name}")
        return problems

    def in_setting(self, name: str) -> "GraphSpec":
        """This spec with the declared setting ``name`` overlaid (the result declares no settings)."""
        raw = self.model_dump(mode="json", exclude={"settings"})
        return GraphSpec.model_validate(overlay(raw, self.settings[name]))

    def graph(self) -> nx.DiGraph:
        """The DAG (no mechanisms bound)."""
        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        for node, ns in self.nodes.items():
            g.add_edges_from((p, node) for p in ns.parents if p in self.nodes)
        return g

    def quick(self, n_train: int = 300, n_test: int = 64) -> "GraphSpec":
        """A seconds-long version (small data; each registered kind's ``quick`` setting)."""
        ds = self.dataset
        ds_cls = DATASETS.get(ds.kind)
        config = ds_cls.quick(ds.config())
        sizes = {split: min(n_ds, n_quick, ds_cls.rows_available(config, split) or n_quick)
                 for split, n_ds, n_quick in (("train", ds.n_train, n_train), ("test", ds.n_test, n_test))}
        dataset = {"kind": ds.kind, "n_train": sizes["train"], "n_test": sizes["test"],
                   "seed": ds.seed, "options": _dump(config)}
        nodes = {}
        for node, ns in self.nodes.items():
            options = ns.options
            if ns.mechanism != TRUTH:
                cls = MECHANISMS.get(ns.mechanism)
                options = _dump(cls.quick(cls.Config.model_validate(options)))
            nodes[node] = {"parents": ns.parents, "mechanism": ns.mechanism, "options": options}
        return GraphSpec.model_validate({"name": self.name, "description": self.description,
                                         "dataset": dataset, "nodes": nodes})


def _dump(config: BaseModel) -> dict[str, Any]:
    """A Config as the options dict a spec holds."""
    return config.model_dump(mode="json")


def format_validation_error(exc: ValidationError, where: str) -> str:
    """A ValidationError of a spec as one block: a line per problem."""
    lines = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        loc = ".".join(str(x) for x in err["loc"])
        lines += [f"  {loc + ': ' if loc else ''}{line}" for line in msg.splitlines()]
    return f"{where}: invalid spec:\n" + "\n".join(lines)


def parse_spec(raw: Any, where: str = "spec") -> GraphSpec:
    """Validate a spec given as a dict (a parsed TOML or JSON file)."""
    try:
        return GraphSpec.model_validate(raw)
    except ValidationError as e:
        raise SpecError(format_validation_error(e, where)) from None
    except RecursionError:
        raise SpecError(f"{where}: nested too deeply to be a spec") from None


def load_spec(path: str | Path) -> GraphSpec:
    """Read and validate a ``.toml`` spec; errors name the file, the node or field, and the problem."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"no spec file at {path}" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: invalid TOML: {e}") from None
    except RecursionError:
        raise SpecError(f"{path}: invalid TOML: nested too deeply to be a spec") from None
    except OSError as e:
        raise SpecError(f"{path}: cannot read the spec: {e.strerror}") from None
    return parse_spec(raw, str(path))


__all__ = ["TRUTH", "DatasetSpec", "NodeSpec", "GraphSpec", "load_spec", "parse_spec", "validate_options",
           "train_fields"]
