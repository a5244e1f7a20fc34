"""Data sets: synthetic tabular SCMs with ground truth, procedural image SCMs, MNIST."""

from .ladder import ladder_scm
from .images import ShapesConfig, ShapesSCM
from .mnist import load_mnist
from .tabular import TABULAR_SCMS, TabularSCM, get_tabular_scm

__all__ = ["ShapesConfig", "ShapesSCM", "load_mnist", "TABULAR_SCMS", "TabularSCM", "get_tabular_scm", "ladder_scm"]
