"""Choosing a backend by the type of the arrays a call is given.

A framework's backend module is imported the first time one of its arrays shows
up; the framework itself is already imported by then (the user made the array),
so the core never imports a framework on its own.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from typing import Any

from ._base import Backend

# (framework, the top-level module its arrays come from, our backend module)
_FRAMEWORKS = (
    ("jax", "jax", ".jax"),
    ("torch", "torch", ".torch"),
    ("tensorflow", "tensorflow", ".tensorflow"),
    ("numpy", "numpy", ".numpy"),
)
_loaded: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    """The backend of one framework by name, importing the framework."""
    if name not in _loaded:
        module = dict((n, m) for n, _, m in _FRAMEWORKS)[name]
        _loaded[name] = importlib.import_module(module, __name__).BACKEND
    return _loaded[name]


def framework_of(x: Any) -> str | None:
    """The framework whose array ``x`` is, among those already imported; else None."""
    for name, module, _ in _FRAMEWORKS:
        if module in sys.modules and get_backend(name).owns(x):
            return name
    return None


def backend_for(leaves: Iterable[Any]) -> Backend | None:
    """The backend of the first non-NumPy array among ``leaves``; NumPy if all are NumPy.

    None when no leaf is an array of a supported framework.
    """
    found = None
    for leaf in leaves:
        name = framework_of(leaf)
        if name is not None and name != "numpy":
            return get_backend(name)
        found = found or name
    return get_backend(found) if found else None


__all__ = ["Backend", "backend_for", "framework_of", "get_backend"]
