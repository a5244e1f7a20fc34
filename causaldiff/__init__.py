"""causaldiff: causal inference with diffusion models."""

__version__ = "0.1.0"
