"""Mechanisms: what a node of an SCM is bound to."""

from .base import Abduction, Conditional, Mechanism
from .categorical import CategoricalMechanism
from .diffusion import DiffusionConfig, DiffusionMechanism
from .neural import AdditiveNoiseConfig, AdditiveNoiseMechanism
from .pyro import PyroMechanism

__all__ = ["Abduction", "Conditional", "AdditiveNoiseConfig", "AdditiveNoiseMechanism", "CategoricalMechanism",
           "DiffusionConfig", "DiffusionMechanism",
           "Mechanism", "PyroMechanism"]
