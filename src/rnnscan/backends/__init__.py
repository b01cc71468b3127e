"""Choosing a backend by the type of the arrays a call is given.

A framework's backend module is imported the first time one of its arrays shows
up; the framework itself is already imported by then (the user made the array),
so the core never imports a framework on its own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from ._base import Backend

# the frameworks, each named as its top-level module
_FRAMEWORKS = ("jax", "torch", "tensorflow", "numpy")
_loaded: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    """The backend of one framework by name, importing the framework."""
    if name not in _loaded:
        _loaded[name] = _import(name).BACKEND
    return _loaded[name]


def _import(name: str) -> Any:
    # Plain import statements rather than importlib: torch.compile's tracer
    # (Dynamo) follows them, so a compiled first call needs no graph break.
    if name == "jax":
        from . import jax as module
    elif name == "torch":
        from . import torch as module
    elif name == "tensorflow":
        from . import tensorflow as module
    elif name == "numpy":
        from . import numpy as module
    else:
        raise KeyError(name)
    return module


def framework_of(x: Any) -> str | None:
    """The framework whose array ``x`` is, among those already imported; else None."""
    # The backends in use are asked first and sys.modules is read only for a new
    # framework: torch.compile guards on what a function reads, and sys.modules
    # grows as modules import lazily (a recompilation at every call).
    for name, backend in _loaded.items():
        if backend.owns(x):
            return name
    if isinstance(x, _NOT_ARRAYS):
        return None
    for name in _FRAMEWORKS:
        if name not in _loaded and name in sys.modules and get_backend(name).owns(x):
            return name
    return None


_NOT_ARRAYS = (list, tuple, dict, str, bytes, int, float, complex, type(None))


def registered_node(x: Any) -> tuple[Any, Any] | None:
    """``(flatten, unflatten)`` where ``type(x)`` is a node of an imported framework's own
    pytree registry (see :meth:`Backend.registered_node`); else None."""
    for name in _FRAMEWORKS:
        if name in sys.modules:
            node = get_backend(name).registered_node(x)
            if node is not None:
                return node
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


__all__ = ["Backend", "backend_for", "framework_of", "get_backend", "registered_node"]
