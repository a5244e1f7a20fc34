"""Data sets, each registered in ``causaldiff.registry.DATASETS`` with a frozen ``Config``:
``"tabular"`` (:class:`TabularSCM`, ground truth), ``"shapes"`` (:class:`ShapesSCM`, ground truth),
``"mnist"`` (:class:`MNIST`). One defined outside the package registers when imported or through
the entry-point group ``causaldiff.datasets`` (``"morphomnist"``: ``benchmarks/morphomnist/``).

``DATASETS.get(kind)(Config.model_validate(options)).load(split, n, seed)`` gives a :class:`Draw`;
``isinstance(ds, GroundTruth)`` says whether ``counterfactual(draw, do)`` exists.
"""

from .base import SPLITS as SPLITS
from .base import DataSet as DataSet
from .base import Draw as Draw
from .base import GroundTruth as GroundTruth
from .base import split_seed as split_seed
from .ladder import LADDER_SUPER_EDGES as LADDER_SUPER_EDGES
from .ladder import ladder_equations as ladder_equations
from .mnist import MNIST as MNIST
from .mnist import MNISTConfig as MNISTConfig
from .mnist import load_mnist as load_mnist
from .shapes import ShapesConfig as ShapesConfig
from .shapes import ShapesSCM as ShapesSCM
from .structural import StructuralEquations as StructuralEquations
from .tabular import TABULAR_NAMES as TABULAR_NAMES
from .tabular import TABULAR_SCMS as TABULAR_SCMS
from .tabular import TabularConfig as TabularConfig
from .tabular import TabularSCM as TabularSCM
from .tabular import get_tabular_scm as get_tabular_scm

__all__ = ["SPLITS", "DataSet", "Draw", "GroundTruth", "split_seed", "LADDER_SUPER_EDGES", "ladder_equations", "MNIST", "MNISTConfig", "load_mnist", "ShapesConfig", "ShapesSCM", "StructuralEquations", "TABULAR_NAMES", "TABULAR_SCMS", "TabularConfig", "TabularSCM", "get_tabular_scm"]
