"""pandas DataFrames in and out of every query (pandas is optional: imported only when used).

Every query and ``fit`` accepts, where it takes rows (or noise):

* a ``DataFrame`` with one column per scalar node. pandas ``Categorical`` columns travel as integer
  codes (``torch.long``) by label, in the order the SCM's first ``fit`` on a DataFrame recorded
  (:attr:`SCM.categories <causaldiff.SCM.categories>`; else the column's own), and come back as
  ``Categorical``; a ``do`` value on such a node may be a category label (``do={"colour": "red"}``),
  a pandas Series is aligned on the frame's index;
* a pair ``(frame, tensors)`` to mix: scalar nodes in the frame, vector and image nodes in the
  dict ``tensors`` (batch-first, rows in the frame's order).

The result then has the same form: a ``DataFrame`` with the input's index and its node columns in
the input's order (then the other scalar nodes, in topological order), or, when the result holds
vector or image nodes, the pair ``(frame, tensors)``. ``sample`` and ``interventional_samples``
return that form when called with ``frame=True``. Float columns keep the dtype the model returns;
integer results of a node that came in as ``Categorical`` are mapped back to it (abducted noise is
never a category). Columns that are not nodes (a ``patient_id``) are ignored and kept out of the
result (the index is kept: make the identifier the index to carry it through). Object / string
node columns, duplicated names and missing values (NaN, ``pd.NA``, a ``Categorical``'s missing code) are refused with a
:class:`~causaldiff.errors.DataError` naming the column.

>>> df = pd.DataFrame({"x": [0.1, -0.3], "y": [1.2, 0.4]}, index=["a", "b"])  # doctest: +SKIP
>>> scm.counterfactual(df, do={"x": 1.0})                                     # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import DataError
from .interventions import Hard, Intervention, Shift
from .optional import optional_import


def pandas() -> Any:
    """The pandas module, imported now (``pip install 'causaldiff[pandas]'``)."""
    return optional_import("pandas", "pandas", "DataFrame results")


def is_frame(x: Any) -> bool:
    """Whether ``x`` is a pandas DataFrame (without importing pandas: one exists only if it is)."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(x, pd.DataFrame)


def is_tabular(x: Any) -> bool:
    """A DataFrame, or the pair ``(DataFrame, dict of tensors)``."""
    return is_frame(x) or (isinstance(x, tuple) and len(x) == 2 and is_frame(x[0]) and isinstance(x[1], Mapping))


@dataclass(frozen=True)
class Layout:
    """What a result needs to take the input's form: index, column order, categories."""

    index: Any = None
    columns: tuple[str, ...] = ()
    categories: dict[str, Any] = field(default_factory=dict)


class Columns(dict):
    """A frame's node columns as tensors; ``categorical``: the nodes whose column was a
    ``Categorical`` (a continuous node refuses one: its codes are no measurement)."""

    categorical: frozenset[str] = frozenset()


def _categories(pd: Any, name: str, col: Any, labels: Any) -> Any:
    """The column's categories in the order recorded at fit (``labels``), or its own if none is."""
    if labels is None:
        return col.dtype
    new = [c for c in col.dtype.categories if c not in labels]
    if new:
        raise DataError(f"column {name!r}: category {new[0]!r} was not seen at fit (its categories were {list(labels)})")
    return pd.CategoricalDtype(list(labels), ordered=col.dtype.ordered)


def _column(pd: Any, name: str, col: Any) -> Tensor:
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes = np.asarray(col.cat.codes, dtype=np.int64)
        if (codes < 0).any():
            raise DataError(f"column {name!r}: missing values (NaN) at index {col.index[codes < 0][0]!r}")
        return torch.from_numpy(codes.copy())
    if pd.api.types.is_bool_dtype(col.dtype) or not pd.api.types.is_numeric_dtype(col.dtype):
        raise DataError(f"column {name!r} has dtype {col.dtype}; give numbers, or a pandas Categorical "
                        f"(df[{name!r}].astype('category')) for a categorical node")
    missing = np.asarray(col.isna())
    if missing.any():
        raise DataError(f"column {name!r}: missing values (NaN) at index {col.index[missing][0]!r}")
    return torch.from_numpy(np.array(col.to_numpy(dtype=getattr(col.dtype, "numpy_dtype", col.dtype))))


def from_tabular(x: Any, nodes: tuple[str, ...], labels: Mapping[str, Any] | None = None) -> tuple[Columns, Layout]:
    """``(dict of node -> tensor, Layout)`` of a DataFrame or a ``(frame, tensors)`` pair; a
    categorical column is read by label, in the order ``labels`` records for its node (if any)."""
    frame, tensors = (x, {}) if is_frame(x) else x
    pd = sys.modules["pandas"]
    names = list(frame.columns)
    if len(set(names)) != len(names):
        raise DataError(f"the DataFrame has duplicated columns {sorted({c for c in names if names.count(c) > 1})}")
    names = [c for c in names if c in nodes]  # other columns (an id, notes) are ignored
    both = sorted(set(names) & set(tensors))
    if both:
        raise DataError(f"node(s) {both} given both as DataFrame columns and as tensors")
    categories = {c: _categories(pd, c, frame[c], (labels or {}).get(c)) for c in names
                  if isinstance(frame[c].dtype, pd.CategoricalDtype)}
    values = {c: _column(pd, c, frame[c].cat.set_categories(categories[c].categories) if c in categories else frame[c])
              for c in names}  # (set_categories maps by label; astype to an unordered dtype keeps the codes)
    out = Columns({**values, **dict(tensors)})
    out.categorical = frozenset(categories)
    return out, Layout(frame.index, tuple(names), categories)


def _aligned(node: str, value: Any, index: Any) -> Any:
    """A pandas Series given as a ``do`` value (or a ``Hard``'s value, a ``Shift``'s delta): its
    values in the order of the frame's ``index``; refused unless it holds each index label once."""
    pd = sys.modules["pandas"]
    if isinstance(value, (Hard, Shift)):
        fields = {f: getattr(value, f) for f in ("value", "delta") if isinstance(getattr(value, f, None), pd.Series)}
        return dataclasses.replace(value, **{f: _aligned(node, v, index) for f, v in fields.items()}) if fields else value
    if not isinstance(value, pd.Series):
        return value
    if not (value.index.is_unique and len(value) == len(index) and value.index.isin(index).all()):
        raise DataError(f"do on {node!r}: the Series' index differs from the DataFrame's; give one value per row "
                        "with the frame's index (or a tensor, in the frame's row order)")
    return value.reindex(index).tolist()


def _labels_to_codes(do: Any, layout: Layout) -> Any:
    """``do`` with pandas Series aligned on the frame's index and each plain value on a categorical
    column read as a category label and replaced by its code (a tensor is taken as codes;
    interventions and callables pass unchanged)."""
    if not isinstance(do, Mapping):
        return do
    do = {node: _aligned(node, value, layout.index) for node, value in do.items()}
    out = dict(do)
    for node, value in do.items():
        dtype = layout.categories.get(node)
        if dtype is None or isinstance(value, (Tensor, Intervention)) or callable(value):
            continue
        labels = list(dtype.categories)
        per_row = isinstance(value, (list, tuple))  # a label per row
        unknown = [v for v in (value if per_row else [value]) if v not in labels]
        if unknown:
            raise DataError(f"do on {node!r}: {unknown[0]!r} is not one of its categories {labels}")
        out[node] = [labels.index(v) for v in value] if per_row else labels.index(value)
    return out


def to_tabular(values: Mapping[str, Tensor], layout: Layout) -> Any:
    """A result in the input's form: a DataFrame, or ``(frame, tensors)`` with vector/image nodes."""
    pd = pandas()
    scalar = {k: v for k, v in values.items() if v.dim() == 1}
    order = [c for c in layout.columns if c in scalar] + [c for c in scalar if c not in layout.columns]
    data = {}
    for c in order:
        v = scalar[c].detach().cpu().numpy().copy()
        dtype = layout.categories.get(c)
        if dtype is not None and np.issubdtype(v.dtype, np.integer):
            data[c] = pd.Categorical.from_codes(v, dtype=dtype)
        else:
            data[c] = v
    frame = pd.DataFrame(data, index=layout.index, columns=order)
    rest = {k: v for k, v in values.items() if v.dim() != 1}
    return (frame, rest) if rest else frame


def accepts_frames(method: Callable) -> Callable:
    """Let an SCM query take and return DataFrames (module docstring); dicts pass through as before."""
    sig = inspect.signature(method)
    data_arg = list(sig.parameters)[1]

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, frame: bool = False, **kwargs: Any) -> Any:
        data = args[0] if args else kwargs.get(data_arg)
        if not frame and not is_tabular(data):  # dicts of tensors: no binding, no conversion
            return method(self, *args, **kwargs)
        bound = sig.bind(self, *args, **kwargs)
        layout = None
        if is_tabular(bound.arguments.get(data_arg)):
            bound.arguments[data_arg], layout = from_tabular(bound.arguments[data_arg], self.nodes, self.categories)
            if "do" in bound.arguments:
                bound.arguments["do"] = _labels_to_codes(bound.arguments["do"], layout)
        result = method(*bound.args, **bound.kwargs)
        if method.__name__ == "fit" and layout is not None:  # the label order of later frames
            self._record_categories({c: tuple(d.categories.tolist()) for c, d in layout.categories.items()})
        if (layout is None and not frame) or not isinstance(result, Mapping):
            return result
        return to_tabular(result, layout or Layout())

    wrapper.__doc__ = (method.__doc__ or "") + "\n\n        Also takes and returns pandas DataFrames: see :mod:`causaldiff.frames`."
    return wrapper


__all__ = ["Layout", "accepts_frames", "from_tabular", "is_frame", "is_tabular", "to_tabular"]
