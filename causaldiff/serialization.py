"""Save and load SCMs: ``scm.json`` (a validated config, no code) + ``weights.safetensors``.

Nothing pickled is ever read: weights go through safetensors, configs through pydantic, and
mechanism types through :data:`~causaldiff.registry.MECHANISMS`. A node bound to
code (a Pyro callable, a custom module) is recorded by name only and must be passed again to
:func:`load`. A weights file whose SHA-256 differs from the one recorded is refused.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import networkx as nx
import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from importlib.metadata import PackageNotFoundError, version

from .errors import SerializationError
from .registry import MECHANISMS

FORMAT = "causaldiff-scm/1"
CONFIG_FILE, WEIGHTS_FILE = "scm.json", "weights.safetensors"
#: saved files are readable by the group and others (a run shared on a cluster): rw-r--r--, rwxr-xr-x
FILE_MODE, DIR_MODE = 0o644, 0o755


class SavedNode(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    parents: list[str]
    mechanism: str | None  # registry key, or None for code that was not saved
    config: dict[str, Any] | None = None
    description: str = ""


class SavedSCM(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str
    causaldiff_version: str
    nodes: list[SavedNode]
    weights_sha256: str


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_scm(scm: Any, path: str | Path) -> None:
    """Write ``scm`` to the directory ``path`` (created with mode 0755 if needed; files 0644)."""
    if scm.interventions:
        raise SerializationError("save the SCM before intervening: intervened copies are not saved "
                                 f"(interventions on {sorted(scm.interventions)})")
    path = Path(path)
    nodes, tensors = [], {}
    for node in scm.nodes:
        m = scm.mechanisms[node]
        try:
            config = m.get_config() if m.name else None
        except NotImplementedError:
            config = None
        if config is not None:
            for k, v in m.state_tensors().items():
                tensors[f"{node}::{k}"] = v.detach().to("cpu").contiguous().clone()
        nodes.append(SavedNode(name=node, parents=list(scm.parents(node)),
                               mechanism=m.name if config is not None else None,
                               config=config, description=repr(m)))
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    if created:
        os.chmod(path, DIR_MODE)
    weights = path / WEIGHTS_FILE
    save_file(tensors, str(weights), metadata={"format": FORMAT})  # safetensors writes mode 0600
    meta = SavedSCM(format=FORMAT, causaldiff_version=_version(), nodes=nodes,
                    weights_sha256=_sha256(weights))
    (path / CONFIG_FILE).write_text(meta.model_dump_json(indent=2))
    for f in (weights, path / CONFIG_FILE):
        os.chmod(f, FILE_MODE)


def _version() -> str:
    try:
        return version("causaldiff")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def read_scm(path: str | Path, mechanisms: Mapping[str, Any] | None = None,
             map_location: str | torch.device = "cpu") -> tuple[nx.DiGraph, dict[str, Any]]:
    """The graph and the bound mechanisms of an SCM saved by :func:`save_scm` (``cd.load`` builds
    the SCM from them); ``mechanisms`` rebinds nodes that were code."""
    path = Path(path)
    cfg_file, weights = path / CONFIG_FILE, path / WEIGHTS_FILE
    for f in (cfg_file, weights):
        if not f.is_file():
            raise SerializationError(f"{path}: missing {f.name}; is this a directory written by scm.save?")
    try:
        meta = SavedSCM.model_validate_json(cfg_file.read_text())
    except (ValidationError, ValueError) as e:
        raise SerializationError(f"{cfg_file}: not a valid causaldiff SCM config: {e}") from e
    if meta.format != FORMAT:
        raise SerializationError(f"{cfg_file}: format {meta.format!r}, this causaldiff reads {FORMAT!r}")
    if _sha256(weights) != meta.weights_sha256:
        raise SerializationError(f"{weights}: checksum mismatch (file corrupted, truncated or from another save)")
    try:
        tensors = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise SerializationError(f"{weights}: unreadable weights: {e}") from e
    mechanisms = dict(mechanisms or {})
    names = {n.name for n in meta.nodes}
    unknown = sorted(set(mechanisms) - names)
    if unknown:
        raise SerializationError(f"mechanisms given for unknown node(s) {unknown}; saved nodes are {sorted(names)}")
    g = nx.DiGraph()
    g.add_nodes_from(n.name for n in meta.nodes)
    for n in meta.nodes:
        g.add_edges_from((p, n.name) for p in n.parents)
    bound: dict[str, Any] = {}
    for n in meta.nodes:
        if n.name in mechanisms:
            bound[n.name] = mechanisms[n.name]
            continue
        if n.mechanism is None:
            raise SerializationError(f"node {n.name!r} was bound to code ({n.description}) that is not saved; "
                                     f"pass it again: cd.load(path, mechanisms={{{n.name!r}: ...}})")
        if n.mechanism not in MECHANISMS:
            raise SerializationError(f"node {n.name!r}: unknown mechanism type {n.mechanism!r} "
                                     f"(known: {list(MECHANISMS.names())})")
        cls = MECHANISMS.get(n.mechanism)
        prefix = f"{n.name}::"
        own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            bound[n.name] = cls.from_saved(n.config or {}, own)
        except (KeyError, ValueError, RuntimeError, ValidationError) as e:
            raise SerializationError(f"node {n.name!r}: saved {n.mechanism} mechanism does not match "
                                     f"its weights: {e}") from e
    return g, bound
