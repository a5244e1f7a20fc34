"""The diffusion mechanism: hyperparameters (:mod:`.config`) apart from the state recorded at fit
(:mod:`.state`), fitting (:mod:`.fit`), save / load (:mod:`.io`), the node (:mod:`.mechanism`),
latent nodes' autoencoders (:mod:`.latent`), pretrained diffusers UNets and DiTs (:mod:`.pretrained`, read from local folders
by :mod:`.diffusers_files`; diffusers is imported only when used)."""

from .config import DiffusionConfig as DiffusionConfig
from .latent import Autoencoder as Autoencoder
from .mechanism import DiffusionMechanism as DiffusionMechanism
from .pretrained import PretrainedDiffusionMechanism as PretrainedDiffusionMechanism
from .state import DiffusionState as DiffusionState

__all__ = ["Autoencoder", "DiffusionConfig", "DiffusionMechanism", "DiffusionState", "PretrainedDiffusionMechanism"]
