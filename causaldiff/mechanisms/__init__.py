"""Mechanisms: what a node of an SCM is bound to (each registered in :data:`~causaldiff.registry.MECHANISMS`)."""

from .base import Abduction as Abduction, Conditional as Conditional, Mechanism as Mechanism
from .categorical import CategoricalConfig as CategoricalConfig, CategoricalMechanism as CategoricalMechanism
from .classifier import ClassifierConfig as ClassifierConfig, ClassifierMechanism as ClassifierMechanism
from .codecs import (DistributionConditional as DistributionConditional, ParentCodec as ParentCodec,
                     ParentSpec as ParentSpec, codec_for as codec_for)
from .diffusion import (DiffusionConfig as DiffusionConfig, DiffusionMechanism as DiffusionMechanism,
                        DiffusionState as DiffusionState)
from .neural import AdditiveNoiseConfig as AdditiveNoiseConfig, AdditiveNoiseMechanism as AdditiveNoiseMechanism
from .pyro import (NormalConfig as NormalConfig, NormalMechanism as NormalMechanism, PyroConfig as PyroConfig,
                   PyroMechanism as PyroMechanism)

__all__ = ["Abduction", "Conditional", "Mechanism", "AdditiveNoiseConfig", "AdditiveNoiseMechanism",
           "CategoricalConfig", "CategoricalMechanism",
           "ClassifierConfig", "ClassifierMechanism", "DiffusionConfig", "DiffusionMechanism", "DiffusionState",
           "DistributionConditional", "NormalConfig", "NormalMechanism", "ParentCodec", "ParentSpec",
           "PyroConfig", "PyroMechanism", "codec_for"]
