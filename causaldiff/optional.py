"""Optional dependencies, imported when first needed, with an error naming the extra that installs them
(``pandas``, ``fid``, ``diffusers``, ``plot``, ``dev``: ``pip install 'causaldiff[EXTRA]'``)."""

from __future__ import annotations

import importlib
from types import ModuleType


def optional_import(module: str, extra: str, needed_for: str) -> ModuleType:
    """``module`` imported now, or an :class:`ImportError` saying ``needed_for`` needs the extra ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError:  # also when blocked: sys.modules[module] = None
        raise ImportError(f"{needed_for} needs the optional extra: pip install 'causaldiff[{extra}]'") from None


__all__ = ["optional_import"]
