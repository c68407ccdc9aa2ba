"""Package attributes loaded on first use (PEP 562), so that importing a light submodule of
a package (a pydantic config, a spec) does not load the heavy ones (PyTorch) beside it.

Example, in a package's ``__init__.py``::

    __getattr__ = lazy_exports(__name__, {"modelyard.nn.catalog": ("build_model",)})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, table: Mapping[str, tuple[str, ...]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``name`` from its module in ``table`` when asked."""
    where = {name: module for module, names in table.items() for name in names}

    def attribute(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return attribute
