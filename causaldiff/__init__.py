"""causaldiff: causal inference with diffusion models.

The public API is re-exported here explicitly: the SCM and its queries, interventions, the
mechanisms and the configs a user writes, errors. Everything else lives in public subpackages
(``causaldiff.datasets``, ``causaldiff.evaluation``, ``causaldiff.metrics``, ``causaldiff.testing``,
``causaldiff.training``, ``causaldiff.diffusion``, ``causaldiff.registry``) over private modules.

Nothing heavy loads at import, torch included: the thread policy of :mod:`causaldiff.threads`
is left for torch to read when it loads, and every name is imported the first time it is used
(``cd.SCM`` loads torch, Pyro and networkx, ``cd.frames`` pandas when a DataFrame arrives).
"""

from importlib.metadata import PackageNotFoundError, version

from . import threads as threads
from .lazy import lazy_exports

threads.apply_policy()  # threads for the free cores (the user's choice kept), memory kept

__getattr__, __dir__ = lazy_exports(__name__, {
    ".diffusion.ddim": ["DDIMConfig"],
    ".diffusion.nets": ["DiTConfig", "ImagePredictorConfig", "MLPConfig", "MLPPredictorConfig", "UNetConfig"],
    ".diffusion.schedule": ["ScheduleConfig"],
    ".errors": ["AbductionError", "CausalDiffError", "DataError", "DeviceError", "DivergenceError", "GraphError",
                "InterventionError", "NotFittedError", "RegistryError", "SeedError", "SerializationError", "SpecError"],
    ".interventions": ["Hard", "Shift", "Transform"],
    ".mechanisms": ["Abduction", "AdditiveNoiseConfig", "AdditiveNoiseMechanism", "CategoricalMechanism",
                    "ClassifierMechanism", "DiffusionConfig", "DiffusionMechanism", "Mechanism", "PyroMechanism"],
    ".progress": ["set_progress"],
    ".registry": ["DATASETS", "MECHANISMS"],
    ".scm": ["SCM", "Samples", "load"],
    ".threads": ["set_threads"],
    ".training": ["TrainConfig"],
}, modules=("auto", "datasets", "distributed", "frames", "limits"))

try:
    __version__ = version("causaldiff")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "SCM", "Samples", "load", "Hard", "Shift", "Transform",
    "Mechanism", "Abduction", "PyroMechanism", "AdditiveNoiseMechanism", "CategoricalMechanism",
    "ClassifierMechanism",
    "DiffusionMechanism", "MECHANISMS", "DATASETS",
    "AdditiveNoiseConfig", "DiffusionConfig", "TrainConfig", "ScheduleConfig", "DDIMConfig", "MLPConfig",
    "UNetConfig", "DiTConfig", "MLPPredictorConfig", "ImagePredictorConfig",
    "set_progress", "set_threads", "CausalDiffError", "GraphError", "DataError", "InterventionError", "AbductionError",
    "NotFittedError", "SerializationError", "RegistryError", "DeviceError", "DivergenceError", "SeedError", "SpecError",
    "auto", "datasets", "distributed", "frames", "limits", "threads", "__version__",
]
