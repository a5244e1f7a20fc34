"""causaldiff: causal inference with diffusion models.

The public API is re-exported here explicitly; everything else lives in submodules
(``causaldiff.testing``, ``causaldiff.metrics``, ``causaldiff.datasets``, ``causaldiff.diffusion``).
"""

__version__ = "0.1.0"

from .errors import (AbductionError, CausalDiffError, DataError, GraphError, InterventionError,
                     NotFittedError, SerializationError)
from .interventions import Hard, Shift, Transform
from .mechanisms import (Abduction, AdditiveNoiseMechanism, CategoricalMechanism, DiffusionMechanism,
                         Mechanism, PyroMechanism)
from .progress import set_progress
from .scm import SCM, Samples, load

__all__ = [
    "SCM", "Samples", "load", "Hard", "Shift", "Transform", "Mechanism", "Abduction",
    "PyroMechanism", "AdditiveNoiseMechanism", "CategoricalMechanism", "DiffusionMechanism", "set_progress", "CausalDiffError", "GraphError",
    "DataError", "InterventionError", "AbductionError", "NotFittedError", "SerializationError",
    "__version__",
]
