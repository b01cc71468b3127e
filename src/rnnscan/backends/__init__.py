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
# the top-level modules that define each framework's array types
_MODULES = {"jax": "jax", "jaxlib": "jax", "torch": "torch", "tensorflow": "tensorflow", "numpy": "numpy"}


def get_backend(name: str) -> Backend:
    """The backend of one framework by name, importing the framework."""
    return _import(name).BACKEND


def _import(name: str) -> Any:
    # Plain import statements rather than importlib or a dict of loaded backends:
    # torch.compile's tracer (Dynamo) follows them and installs no guard, so a
    # compiled first call needs no graph break and no second compilation. Python's
    # import lock makes a first import from several threads at once safe.
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
    if isinstance(x, _NOT_ARRAYS):
        return None
    hint = _defining_framework(type(x))
    if hint is not None and get_backend(hint).owns(x):
        return hint
    # Other array-likes (keras.Variable): the frameworks imported so far. torch.compile guards
    # on the length of sys.modules where a traced call reads it: the arrays of the frameworks
    # themselves never get here.
    for name in _FRAMEWORKS:
        if name in sys.modules and get_backend(name).owns(x):
            return name
    return None


def _defining_framework(cls: type) -> str | None:
    """The framework whose modules define ``cls`` or one of its bases (so it is imported)."""
    for base in cls.__mro__:
        name = _MODULES.get(base.__module__.partition(".")[0])
        if name is not None:
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
