"""The true mechanisms of an additive-noise tabular SCM as a ``make_mechanism`` factory."""

from __future__ import annotations

import pyro.distributions as dist
import torch

from causaldiff.testing import named_callable


def true_factory(truth, *, ignore_parents: bool = False):
    """``make_mechanism(node, is_root, seed)`` binding each node to its true Pyro distribution
    (float64); ``ignore_parents=True`` gives a wrong model (every parent's value replaced by 0)."""

    def make(node: str, is_root: bool, seed: int):
        if is_root:
            return dist.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
        loc, scale = truth.additive_parts(node)

        def normal(pa):
            if ignore_parents:
                pa = {k: torch.zeros_like(v) for k, v in pa.items()}
            return dist.Normal(loc(**pa), scale)

        return named_callable(normal, list(truth.parents(node)))

    return make
