"""Mechanisms: what a node of an SCM is bound to."""

from .base import MECHANISM_REGISTRY, Abduction, Mechanism, register_mechanism
from .categorical import CategoricalMechanism
from .diffusion import DiffusionConfig, DiffusionMechanism
from .neural import AdditiveNoiseConfig, AdditiveNoiseMechanism
from .pyro import PyroMechanism

__all__ = ["MECHANISM_REGISTRY", "Abduction", "AdditiveNoiseConfig", "AdditiveNoiseMechanism", "CategoricalMechanism",
           "DiffusionConfig", "DiffusionMechanism",
           "Mechanism", "PyroMechanism", "register_mechanism"]
