"""Save and load SCMs: ``scm.json`` (a validated config, no code) + ``weights.safetensors``.

Nothing pickled is read: weights through safetensors, configs through pydantic, mechanism types
through :data:`~causaldiff.registry.MECHANISMS`; a node bound to code is recorded by name only and
passed again to :func:`read_scm`. Format 2 keys node ``i``'s tensor ``k`` ``"<i>/<k>"`` (no
collisions whatever the names) and records each tensor's dtype and shape; format 1 (``"<node>::<k>"``)
is still read. Saves are atomic (:mod:`causaldiff.storage`). Loading checks the checksum, every
field, the graph and each tensor before building a mechanism; any problem is a
:class:`~causaldiff.errors.SerializationError` naming the file and the node or field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import networkx as nx
import torch
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .devices import check_device
from .errors import SerializationError
from .registry import MECHANISMS
from .storage import atomic_directory, read_bytes, saved_location, storage_error, write_file

FORMAT, FORMAT_1 = "causaldiff-scm/2", "causaldiff-scm/1"
CONFIG_FILE, WEIGHTS_FILE = "scm.json", "weights.safetensors"
#: saved files are readable by the group and others (a run shared on a cluster): rw-r--r--
FILE_MODE = 0o644


class SavedTensor(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    dtype: str
    shape: tuple[int, ...] = Field(..., max_length=16)


class SavedNode(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., min_length=1)
    parents: list[str]
    mechanism: str | None  # registry key, or None for code that was not saved
    config: dict[str, Any] | None = None
    description: str = ""
    #: format 2: each saved tensor's dtype and shape, by the mechanism's own key
    tensors: dict[str, SavedTensor] | None = None


class SavedSCM(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str
    causaldiff_version: str
    nodes: list[SavedNode]
    weights_sha256: str
    #: each categorical column's labels in code order, as recorded by a fit on a DataFrame
    categories: dict[str, list[StrictStr | StrictInt | StrictFloat | StrictBool]] = Field(default_factory=dict)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _collect(scm: Any) -> tuple[list[SavedNode], dict[str, torch.Tensor]]:
    """The saved record of every node and the flat tensors, keyed ``"<index>/<key>"``."""
    nodes, tensors = [], {}
    for i, node in enumerate(scm.nodes):
        m = scm.mechanisms[node]
        try:
            config = m.get_config() if m.name else None
        except NotImplementedError:
            config = None
        own = {k: v.detach().to("cpu").contiguous().clone() for k, v in sorted(m.state_tensors().items())} if (
            config is not None) else {}  # sorted: the same model always gives the same bytes
        tensors.update({f"{i}/{k}": v for k, v in own.items()})
        nodes.append(SavedNode(name=node, parents=list(scm.parents(node)),
                               mechanism=m.name if config is not None else None, config=config,
                               description=repr(m), tensors={k: SavedTensor(dtype=_dtype_name(v.dtype),
                                                                            shape=tuple(v.shape))
                                                             for k, v in own.items()}))
    return nodes, tensors


def is_saved_model(path: Path) -> bool:
    """Whether the directory ``path`` holds a model saved here (and nothing else)."""
    names = {p.name for p in path.iterdir()}
    return CONFIG_FILE in names and names <= {CONFIG_FILE, WEIGHTS_FILE}


def save_scm(scm: Any, path: str | Path) -> None:
    """Write ``scm`` to the directory ``path`` atomically (:func:`~causaldiff.storage.atomic_directory`:
    an existing model there is replaced whole; the directory is 0755, its files 0644)."""
    if scm.interventions:
        raise SerializationError("save the SCM before intervening: intervened copies are not saved "
                                 f"(interventions on {sorted(scm.interventions)})")
    nodes, tensors = _collect(scm)
    blob = save_safetensors(tensors, metadata={"format": FORMAT})
    try:
        meta = SavedSCM(format=FORMAT, causaldiff_version=_version(), nodes=nodes, categories=scm.categories,
                        weights_sha256=hashlib.sha256(blob).hexdigest())
    except ValidationError as e:  # (labels are the only field a user's data gives)
        raise SerializationError(f"cannot save the category labels {e.errors()[0]['loc'][1]!r} recorded at fit: "
                                 "labels must be strings or numbers") from None
    with atomic_directory(path, is_saved_model) as tmp:
        write_file(tmp / WEIGHTS_FILE, blob, FILE_MODE)
        write_file(tmp / CONFIG_FILE, meta.model_dump_json(indent=2).encode(), FILE_MODE)


def _version() -> str:
    try:
        return version("causaldiff")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def _field_error(file: Path, e: ValidationError) -> SerializationError:
    err = e.errors()[0]
    field = ".".join(str(x) for x in err["loc"]) or "the top level"
    return SerializationError(f"{file}: not a valid causaldiff SCM config: field {field}: {err['msg']}")


def _read_config(root: Path) -> SavedSCM:
    cfg_file = root / CONFIG_FILE
    for f in (cfg_file, root / WEIGHTS_FILE):
        try:
            present = f.is_file()
        except OSError as e:  # a folder this user may not read
            raise storage_error(root, "read the saved model", e) from None
        if not present:
            raise SerializationError(f"{root}: missing {f.name}; is this a directory written by scm.save?")
    raw = read_bytes(cfg_file)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise SerializationError(f"{cfg_file}: not a valid causaldiff SCM config (not JSON in UTF-8): {e}") from None
    if isinstance(data, dict) and data.get("format") not in (FORMAT, FORMAT_1) and isinstance(data.get("format"), str):
        raise SerializationError(f"{cfg_file}: format {data['format']!r}, this causaldiff reads {FORMAT!r} "
                                 f"(and {FORMAT_1!r})")
    try:
        meta = SavedSCM.model_validate(data)
    except ValidationError as e:
        raise _field_error(cfg_file, e) from None
    if meta.format == FORMAT and any(n.tensors is None for n in meta.nodes):
        bad = next(n.name for n in meta.nodes if n.tensors is None)
        raise SerializationError(f"{cfg_file}: node {bad!r}: field tensors is missing (format {FORMAT} records them)")
    _check_graph(cfg_file, meta)
    return meta


def _check_graph(cfg_file: Path, meta: SavedSCM) -> None:
    """Unique names, parents that are saved nodes (each once, never the node itself), no cycle."""
    names = [n.name for n in meta.nodes]
    dup = next((x for x in names if names.count(x) > 1), None)
    if dup is not None:
        raise SerializationError(f"{cfg_file}: node {dup!r} is saved twice")
    for n in meta.nodes:
        unknown = sorted(set(n.parents) - set(names))
        if unknown or len(set(n.parents)) != len(n.parents) or n.name in n.parents:
            why = f"unknown parent(s) {unknown}" if unknown else "a repeated parent or itself as parent"
            raise SerializationError(f"{cfg_file}: node {n.name!r}: field parents {n.parents} names {why}")
        if n.mechanism is not None and n.mechanism not in MECHANISMS:
            raise SerializationError(f"{cfg_file}: node {n.name!r}: unknown mechanism type {n.mechanism!r} "
                                     f"(known: {list(MECHANISMS.names())})")
    if not nx.is_directed_acyclic_graph(_graph(meta)):
        raise SerializationError(f"{cfg_file}: the saved parents form a cycle")


def _graph(meta: SavedSCM) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(n.name for n in meta.nodes)
    g.add_edges_from((p, n.name) for n in meta.nodes for p in n.parents)
    return g


def _read_weights(root: Path, meta: SavedSCM) -> dict[str, dict[str, torch.Tensor]]:
    """Each node's tensors (by its own keys), checked against the checksum and the config."""
    weights = root / WEIGHTS_FILE
    blob = read_bytes(weights)
    if hashlib.sha256(blob).hexdigest() != meta.weights_sha256:
        raise SerializationError(f"{weights}: checksum mismatch (file corrupted, truncated or from another save)")
    try:
        flat = load_safetensors(blob)
    except Exception as e:  # safetensors raises its own error types on a malformed header
        raise SerializationError(f"{weights}: unreadable weights: {e}") from None
    own: dict[str, dict[str, torch.Tensor]] = {n.name: {} for n in meta.nodes}
    for key, value in sorted(flat.items()):  # safetensors gives no fixed order
        node, local = _owner(meta, key)
        if node is None or local in own[node] or meta.nodes[_index(meta, node)].mechanism is None:
            raise SerializationError(f"{weights}: unexpected tensor {key!r} (no saved node owns it)")
        own[node][local] = value
    if meta.format == FORMAT:
        for n in meta.nodes:
            _check_manifest(weights, n, own[n.name])
    return own


def _index(meta: SavedSCM, name: str) -> int:
    return next(i for i, n in enumerate(meta.nodes) if n.name == name)


def _owner(meta: SavedSCM, key: str) -> tuple[str | None, str]:
    """``(node, its own key)`` of a flat key (format 2: ``"<i>/<k>"``; format 1: ``"<node>::<k>"``)."""
    if meta.format == FORMAT:
        head, sep, local = key.partition("/")
        ok = sep and head.isdigit() and head == str(int(head)) and int(head) < len(meta.nodes)
        return (meta.nodes[int(head)].name, local) if ok else (None, key)
    node, sep, local = key.rpartition("::")  # a mechanism's own keys hold no "::"
    return (node, local) if sep and any(n.name == node for n in meta.nodes) else (None, key)


def _check_manifest(weights: Path, n: SavedNode, tensors: dict[str, torch.Tensor]) -> None:
    record = n.tensors or {}
    missing, extra = sorted(set(record) - set(tensors)), sorted(set(tensors) - set(record))
    if missing or extra:
        what = f"lacks tensor(s) {missing}" if missing else f"holds tensor(s) {extra} that scm.json does not record"
        raise SerializationError(f"{weights}: node {n.name!r}: the file {what}")
    for k, v in sorted(tensors.items()):
        want = record[k]
        if _dtype_name(v.dtype) != want.dtype or tuple(v.shape) != want.shape:
            raise SerializationError(f"{weights}: node {n.name!r}: tensor {k!r} is {_dtype_name(v.dtype)} "
                                     f"{tuple(v.shape)}, scm.json records {want.dtype} {want.shape}")


def read_scm(path: str | Path, mechanisms: Mapping[str, Any] | None = None,
             map_location: str | torch.device = "cpu") -> tuple[nx.DiGraph, dict[str, Any], dict[str, tuple[Any, ...]]]:
    """The graph, the bound mechanisms and the recorded category labels of an SCM saved by
    :func:`save_scm` (``cd.load`` builds the SCM from them); ``mechanisms`` rebinds nodes that were code."""
    device = check_device(map_location, "map_location")
    try:
        root = saved_location(path)
    except OSError as e:
        raise storage_error(Path(path), "read the saved model", e) from None
    meta = _read_config(root)
    own = _read_weights(root, meta)
    mechanisms = dict(mechanisms or {})
    names = {n.name for n in meta.nodes}
    unknown = sorted(set(mechanisms) - names)
    if unknown:
        raise SerializationError(f"mechanisms given for unknown node(s) {unknown}; saved nodes are {sorted(names)}")
    code = [n for n in meta.nodes if n.mechanism is None and n.name not in mechanisms]
    if code:
        again = ", ".join(f"{n.name!r}: ..." for n in code)
        if len(code) == 1:
            raise SerializationError(f"node {code[0].name!r} was bound to code ({code[0].description}) that is not "
                                     f"saved; pass it again: cd.load(path, mechanisms={{{again}}})")
        raise SerializationError(f"nodes {[n.name for n in code]} were bound to code that is not saved ("
                                 + "; ".join(f"{n.name}: {n.description}" for n in code)
                                 + f"); pass them again: cd.load(path, mechanisms={{{again}}})")
    bound = {n.name: mechanisms[n.name] if n.name in mechanisms else
             _build(root, n, {k: v.to(device) for k, v in own[n.name].items()}) for n in meta.nodes}
    return _graph(meta), bound, {k: tuple(v) for k, v in meta.categories.items()}


def _build(root: Path, n: SavedNode, tensors: dict[str, torch.Tensor]) -> Any:
    """The saved mechanism of node ``n``; any failure is the file's fault, named with the node."""
    cls = MECHANISMS.get(n.mechanism)
    try:
        m = cls.from_saved(n.config or {}, tensors)
    except SerializationError as e:
        raise SerializationError(f"{root}: node {n.name!r}: {e}") from None
    except Exception as e:  # KeyError, TypeError, ValueError, RuntimeError... from a malformed config
        raise SerializationError(f"{root}: node {n.name!r}: saved {n.mechanism} mechanism does not match "
                                 f"its weights: {type(e).__name__}: {e}") from None
    fitted = getattr(m, "fitted_parents", None)
    if m.learnable and fitted is not None and tuple(fitted) != tuple(sorted(n.parents)):
        raise SerializationError(f"{root / CONFIG_FILE}: node {n.name!r}: its mechanism was fitted with parents "
                                 f"{list(fitted)} but field parents gives {sorted(n.parents)}")
    return m
