"""Keras's recurrent layers on rnnscan: ``enable()``, ``disable()``, ``enabled()``.

Once enabled, the generic loop of Keras 3's recurrent layers (``RNN`` over any
cell, ``SimpleRNN``, ``LSTM``, ``GRU``, ``ConvLSTM1D/2D/3D``, ``Bidirectional``,
stacked cells) and of tf-keras's is :func:`rnnscan.rnn`, on whichever Keras
backend is active. Both call their backend's ``rnn`` through a module attribute
at call time, and that attribute is what is replaced:

- Keras 3: ``keras.src.backend.rnn`` (the active backend's ``rnn``, as
  ``keras.src.layers.rnn.rnn.RNN.inner_loop`` and direct callers look it up);
- tf-keras: ``tf_keras.src.backend.rnn`` (looked up by its layers) and its
  public alias ``tf_keras.backend.rnn``.

Keras's fused paths (``backend.lstm``/``backend.gru``: cuDNN, and torch's CPU
LSTM/GRU without a mask) stay Keras's own choice; they are not touched.

The adapter adds no semantics: both Keras's ``rnn`` signatures are rnnscan's,
and every argument is passed on as given. The one thing it adds is Keras's own
contract for a traced loop on the JAX backend: the step runs inside a Keras
``StatelessScope`` (variable writes in the step are discarded, not leaked), as
Keras's JAX loop does.

A framework not imported yet is patched when it is imported. A layer or model
traced (``tf.function``, ``jax.jit``, ``torch.compile``) before the switch
keeps the loop it was traced with: enable before building and compiling.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from ._rnn import rnn as _rnn

__all__ = ["enable", "disable", "enabled", "is_enabled"]

KERAS3_BACKEND = "keras.src.backend"
TF_KERAS_BACKEND = "tf_keras.src.backend"
TF_KERAS_PUBLIC = "tf_keras.backend"
_TARGETS = (KERAS3_BACKEND, TF_KERAS_BACKEND, TF_KERAS_PUBLIC)

_lock = threading.RLock()
_originals: dict[str, Any] = {}  # module name -> the `rnn` it held before enable()
_enabled = False


def keras3_rnn(*args: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
    """Keras 3's ``backend.rnn``, run by :func:`rnnscan.rnn`: the same signature, passed on as given
    (on the JAX backend inside Keras's ``StatelessScope``, as Keras's own loop traces its step)."""
    unroll = kwargs.get("unroll", args[6] if len(args) > 6 else False)  # rnn()'s seventh argument
    with _keras3_scope(unroll):
        return _rnn(*args, **kwargs)


def tf_keras_rnn(*args: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
    """tf-keras's ``backend.rnn``, run by :func:`rnnscan.rnn`: the same signature, passed on as given."""
    return _rnn(*args, **kwargs)


def _keras3_scope(unroll: bool) -> contextlib.AbstractContextManager[Any]:
    """Keras's JAX loop traces its step inside a ``StatelessScope`` (a new one unless inside one already)."""
    if unroll:
        return contextlib.nullcontext()
    from keras.src.backend import backend
    from keras.src.backend.common import stateless_scope

    if backend() != "jax" or stateless_scope.in_stateless_scope():
        return contextlib.nullcontext()
    return stateless_scope.StatelessScope()


_ADAPTERS = {KERAS3_BACKEND: keras3_rnn, TF_KERAS_BACKEND: tf_keras_rnn, TF_KERAS_PUBLIC: tf_keras_rnn}


def _patch(name: str, module: ModuleType) -> None:
    if name in _originals or not hasattr(module, "rnn"):
        return
    if name == KERAS3_BACKEND and module.backend() == "torch":
        _torch_backend().compiled_loop = "python"
    _originals[name] = module.rnn
    module.rnn = _ADAPTERS[name]


class _Loader(importlib.abc.Loader):
    """Runs a target module's own loader, then patches the module."""

    def __init__(self, name: str, loader: importlib.abc.Loader) -> None:
        self._name = name
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        with _lock:
            if _enabled:
                _patch(self._name, module)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._loader, attr)


class _Finder(importlib.abc.MetaPathFinder):
    """Patches a Keras backend module imported while rnnscan is enabled."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name not in _TARGETS or name in sys.modules:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(name, spec.loader)
                return spec
        return None


_finder = _Finder()


def _torch_backend() -> Any:
    """rnnscan's torch backend. Keras's cells run through ``Layer.__call__``, which torch 2.13's
    scan op cannot trace (``is_not`` on tuples in ``keras.tree``): under ``torch.compile`` the
    loop is traced step by step, as Keras's own loop is."""
    from .backends import get_backend

    return get_backend("torch")


def enable() -> None:
    """Run Keras 3's and tf-keras's generic recurrent loop through :func:`rnnscan.rnn` (idempotent).

    Patches the Keras modules imported so far, and any imported later while enabled.
    """
    global _enabled
    with _lock:
        _enabled = True
        for name in _TARGETS:
            module = sys.modules.get(name)
            if module is not None:
                _patch(name, module)
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)


def disable() -> None:
    """Give Keras its own loop back (idempotent): every patched attribute gets back what it held.

    An attribute that someone else replaced after :func:`enable` is left as they set it.
    """
    global _enabled
    with _lock:
        _enabled = False
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(_finder)
        for name, original in list(_originals.items()):
            module = sys.modules.get(name)
            if module is not None and module.rnn is _ADAPTERS[name]:
                module.rnn = original
            del _originals[name]
        if "torch" in sys.modules:
            _torch_backend().compiled_loop = "scan"


def is_enabled() -> bool:
    """Whether :func:`enable` is in effect."""
    return _enabled


@contextlib.contextmanager
def enabled() -> Iterator[None]:
    """``with rnnscan.keras.enabled():`` runs the block with rnnscan's loop, then restores what was there."""
    with _lock:
        was = _enabled
        enable()
    try:
        yield
    finally:
        if not was:
            disable()
