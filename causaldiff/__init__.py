"""causaldiff: causal inference with diffusion models.

The public API is re-exported here explicitly: the SCM and its queries, interventions, the
mechanisms and the configs a user writes, errors. Everything else lives in public subpackages
(``causaldiff.datasets``, ``causaldiff.evaluation``, ``causaldiff.metrics``, ``causaldiff.testing``,
``causaldiff.training``, ``causaldiff.diffusion``, ``causaldiff.registry``) over private modules.
"""

from importlib.metadata import PackageNotFoundError, version

from . import threads as threads

threads.apply_policy()  # before torch loads: passive OpenMP waits, threads for the free cores, memory kept

from .diffusion.ddim import DDIMConfig as DDIMConfig
from .diffusion.nets import DiTConfig as DiTConfig
from .diffusion.nets import ImagePredictorConfig as ImagePredictorConfig
from .diffusion.nets import MLPConfig as MLPConfig
from .diffusion.nets import MLPPredictorConfig as MLPPredictorConfig
from .diffusion.nets import UNetConfig as UNetConfig
from .diffusion.schedule import ScheduleConfig as ScheduleConfig
from .errors import AbductionError as AbductionError
from .errors import CausalDiffError as CausalDiffError
from .errors import DataError as DataError
from .errors import DeviceError as DeviceError
from .errors import DivergenceError as DivergenceError
from .errors import GraphError as GraphError
from .errors import InterventionError as InterventionError
from .errors import NotFittedError as NotFittedError
from .errors import RegistryError as RegistryError
from .errors import SeedError as SeedError
from .errors import SerializationError as SerializationError
from .errors import SpecError as SpecError
from .interventions import Hard as Hard
from .interventions import Shift as Shift
from .interventions import Transform as Transform
from .mechanisms import Abduction as Abduction
from .mechanisms import AdditiveNoiseConfig as AdditiveNoiseConfig
from .mechanisms import AdditiveNoiseMechanism as AdditiveNoiseMechanism
from .mechanisms import CategoricalMechanism as CategoricalMechanism
from .mechanisms import ClassifierMechanism as ClassifierMechanism
from .mechanisms import DiffusionConfig as DiffusionConfig
from .mechanisms import DiffusionMechanism as DiffusionMechanism
from .mechanisms import Mechanism as Mechanism
from .mechanisms import PyroMechanism as PyroMechanism
from .progress import set_progress as set_progress
from .registry import DATASETS as DATASETS
from .registry import MECHANISMS as MECHANISMS
from .scm import SCM as SCM
from .scm import Samples as Samples
from .scm import load as load
from .threads import set_threads as set_threads
from .training import TrainConfig as TrainConfig
from . import auto as auto
from . import datasets as datasets  # registers the built-in data sets
from . import distributed as distributed
from . import frames as frames
from . import limits as limits

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
