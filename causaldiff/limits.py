"""Size bounds, checked before anything is allocated (one place for every bound): a query of more than
:data:`MAX_ROWS_PER_CALL` rows needs ``batch_size`` and may hold up to :data:`MAX_ROWS`; the annotated
types below bound widths, depths, steps and data-set sizes in configs, so ``hidden = [10**9]`` is
refused when a spec is loaded, not by the allocator.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

#: rows one query computes at once without ``batch_size`` (2**22, about 4.2 million)
MAX_ROWS_PER_CALL = 2 ** 22
#: rows one query may return at all, with ``batch_size`` (2**30)
MAX_ROWS = 2 ** 30
#: rows of a data set's split in a spec (``n_train``, ``n_test``)
MAX_DATASET_ROWS = 10 ** 7
#: units of one hidden layer / channels / embedding width of a network
MAX_WIDTH = 2 ** 16
#: layers, blocks or heads of one network
MAX_DEPTH = 256
#: optimisation steps of one training, DDIM steps of one sampler
MAX_STEPS = 10 ** 8
#: timesteps of a diffusion schedule (its float64 tables: 24 bytes each), hence also of its sampler
MAX_TIMESTEPS = 10 ** 6
#: parameters of one network (a pretrained UNet's config is checked against it before it is built)
MAX_PARAMETERS = 2 ** 31
#: rows of one minibatch
MAX_BATCH = 2 ** 20
#: classes of a categorical node or parent declared in a config
MAX_CLASSES = 2 ** 16
#: a categorical column's classes inferred from data (its largest label + 1) are at most
#: ``max(rows, LABEL_FLOOR)``: labels must be codes ``0 .. K-1``, not arbitrary integers
LABEL_FLOOR = 1024
#: seeds: what ``torch.manual_seed`` accepts and :mod:`causaldiff.rng` mixes (signed 64 bits)
SEED_MIN, SEED_MAX = -(2 ** 63), 2 ** 63 - 1

def check_hidden_parameters(hidden: tuple[int, ...], what: str = "hidden") -> tuple[int, ...]:
    """``hidden`` (the widths of an MLP's hidden layers), refused when its hidden-to-hidden weights
    alone exceed :data:`MAX_PARAMETERS` (each width and the depth are bounded one at a time by
    :data:`Width` and :data:`MAX_DEPTH`; this bounds them together, before anything is built)."""
    count = sum(a * b + b for a, b in zip(hidden, hidden[1:]))
    if count > MAX_PARAMETERS:
        raise ValueError(f"{what}: {len(hidden)} hidden layers of up to {max(hidden)} units hold {count:,} "
                         f"parameters, more than MAX_PARAMETERS={MAX_PARAMETERS:,}")
    return hidden


Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]
Depth = Annotated[int, Field(ge=1, le=MAX_DEPTH)]
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS)]
Batch = Annotated[int, Field(ge=1, le=MAX_BATCH)]
DatasetRows = Annotated[int, Field(ge=1, le=MAX_DATASET_ROWS)]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]

__all__ = ["MAX_ROWS_PER_CALL", "MAX_ROWS", "MAX_DATASET_ROWS", "MAX_WIDTH", "MAX_DEPTH", "MAX_STEPS",
           "MAX_TIMESTEPS", "MAX_PARAMETERS", "check_hidden_parameters",
           "MAX_BATCH", "MAX_CLASSES", "LABEL_FLOOR", "SEED_MIN", "SEED_MAX", "Width", "Depth", "Steps",
           "Batch", "DatasetRows", "Seed"]
