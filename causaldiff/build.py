"""Turn a :class:`~causaldiff.spec.GraphSpec` into rows and an SCM (used by the CLI and benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyro.distributions as dist
import torch
from torch import Tensor

from .errors import GraphError
from .mechanisms.base import Mechanism
from .mechanisms.categorical import CategoricalMechanism
from .mechanisms.neural import AdditiveNoiseConfig, AdditiveNoiseMechanism
from .scm import SCM
from .spec import DatasetSpec, GraphSpec


@dataclass
class Rows:
    """A split of a dataset: the SCM's columns plus what the dataset knows beyond them."""

    values: dict[str, Tensor]
    truth: Any = None  # the dataset's true model (ShapesSCM / TabularSCM), when it has one
    extra: Any = None  # e.g. ShapesBatch (image factors) or the tabular noise


def load_rows(ds: DatasetSpec, split: str) -> Rows:
    """Rows of ``split`` ("train" or "test") of a spec's dataset."""
    n = ds.n_train if split == "train" else ds.n_test
    seed = ds.seed + (0 if split == "train" else 1)
    gen = torch.Generator().manual_seed(seed)
    if ds.kind == "mnist":
        from .datasets.mnist import load_mnist

        images, labels = load_mnist(ds.root, split=split, n=n, seed=seed)
        return Rows({"digit": labels, "image": images})
    if ds.kind == "shapes":
        from .datasets.images import ShapesConfig, ShapesSCM

        truth = ShapesSCM(ShapesConfig(resolution=ds.resolution or 16))
        batch = truth.sample(n, gen)
        return Rows(batch.values(), truth=truth, extra=batch)
    from .datasets.tabular import get_tabular_scm

    truth = get_tabular_scm(ds.name, seed=ds.seed)
    noise = truth.sample_noise(n, gen, dtype=torch.float32)
    return Rows(truth.simulate(noise), truth=truth, extra=noise)


def _mechanism(spec: GraphSpec, node: str, truth: Any) -> Mechanism | Any:
    ns = spec.nodes[node]
    opts = dict(ns.options)
    if ns.mechanism == "categorical":
        return CategoricalMechanism(**opts)
    if ns.mechanism == "additive_noise":
        return AdditiveNoiseMechanism(AdditiveNoiseConfig.model_validate(opts))
    if ns.mechanism == "normal":
        extra = set(opts) - {"loc", "scale"}
        if extra or ns.parents:
            raise GraphError(f"node {node!r}: a 'normal' mechanism is a root with options loc and scale")
        return dist.Normal(float(opts.get("loc", 0.0)), float(opts.get("scale", 1.0)))
    if ns.mechanism == "diffusion":
        from .mechanisms.diffusion import DiffusionConfig, DiffusionMechanism

        return DiffusionMechanism(DiffusionConfig.model_validate(opts))
    # "truth": the dataset's own mechanism
    if truth is None:
        raise GraphError(f"node {node!r}: mechanism 'truth' needs a dataset that knows its mechanisms")
    if hasattr(truth, "mechanisms"):
        mechs = truth.mechanisms()
        if node not in mechs:
            raise GraphError(f"node {node!r}: the dataset has no true mechanism for it")
        return mechs[node]
    return truth.to_pyro_scm().mechanisms[node]


def build_scm(spec: GraphSpec, truth: Any = None) -> SCM:
    """An unfitted SCM with the spec's graph and mechanisms."""
    g = spec.graph()
    mechs = {node: _mechanism(spec, node, truth) for node in spec.nodes}
    return SCM(g, mechs)
