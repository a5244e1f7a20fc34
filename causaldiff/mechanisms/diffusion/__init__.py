"""The diffusion mechanism: hyperparameters (:mod:`.config`) apart from the state recorded at fit
(:mod:`.state`), fitting (:mod:`.fit`), save / load (:mod:`.io`), the node (:mod:`.mechanism`),
pretrained diffusers UNets (:mod:`.pretrained`, which diffusers is imported by only when used)."""

from .config import DiffusionConfig as DiffusionConfig
from .mechanism import DiffusionMechanism as DiffusionMechanism
from .pretrained import PretrainedDiffusionMechanism as PretrainedDiffusionMechanism
from .state import DiffusionState as DiffusionState

__all__ = ["DiffusionConfig", "DiffusionMechanism", "DiffusionState", "PretrainedDiffusionMechanism"]
