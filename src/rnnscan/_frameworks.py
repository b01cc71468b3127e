"""The one per-framework table of array functions, for the demo, the benchmark and the tests.

rnnscan's core does not use it (its backends hold their own operations). Step
functions written against an :class:`Ops` use only ``@``, slicing, arithmetic
and these functions, so that the same lines run on NumPy, JAX, PyTorch and
TensorFlow arrays. Each framework is imported when its table is first asked for.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optree

FRAMEWORKS = ("numpy", "jax", "torch", "tensorflow")


@dataclass(frozen=True)
class Ops:
    """One framework's functions; arrays in and out are that framework's unless said otherwise."""

    name: str
    asarray: Callable[[Any], Any]  #: a NumPy array (or scalar) as this framework's array
    to_numpy: Callable[[Any], np.ndarray]  #: back to NumPy (bfloat16/float16 read as float32)
    tanh: Callable[[Any], Any]
    sigmoid: Callable[[Any], Any]
    where: Callable[[Any, Any, Any], Any]
    sum: Callable[[Any], Any]  #: the sum of all elements
    zeros: Callable[[tuple[int, ...]], Any]  #: float32 zeros of a shape
    take: Callable[[Any, Any], Any]  #: ``table[index]``: rows of a 2-D table
    nll: Callable[[Any, Any], Any]  #: ``(logits (..., V), int targets (...)) -> -log p(target)``, nats
    differentiable: bool

    def tree(self, tree: Any) -> Any:
        """Every NumPy leaf of ``tree`` as this framework's array (other leaves as they are)."""
        return optree.tree_map(lambda a: self.asarray(a) if isinstance(a, np.ndarray) else a, tree)

    def tree_numpy(self, tree: Any) -> Any:
        """Every leaf of ``tree`` as a NumPy array."""
        return optree.tree_map(self.to_numpy, tree)

    def __repr__(self) -> str:
        return self.name


def installed(name: str) -> bool:
    """True if module ``name`` can be found, without importing it (``sys.modules[name] = None`` blocks it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:  # in sys.modules with no spec: None (blocked), or a module made at run time
        return sys.modules.get(name) is not None


@functools.cache
def ops(name: str) -> Ops:
    """The table of framework ``name``, importing the framework (ImportError if it is not installed)."""
    if name not in _MAKERS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, got {name!r}")
    return _MAKERS[name]()


def _rows(table: Any, index: Any) -> Any:
    return table[index]


def _numpy() -> Ops:
    def nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
        shifted = logits - logits.max(-1, keepdims=True)
        log_z = np.log(np.exp(shifted).sum(-1))
        return log_z - np.take_along_axis(shifted, targets[..., None], -1)[..., 0]

    sigmoid, zeros = (lambda x: 1 / (1 + np.exp(-x))), (lambda shape: np.zeros(shape, np.float32))
    return Ops("numpy", np.asarray, np.asarray, np.tanh, sigmoid, np.where, np.sum, zeros, _rows, nll, False)


def _jax() -> Ops:
    import jax
    import jax.numpy as jnp

    def nll(logits: Any, targets: Any) -> Any:
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]

    zeros = functools.partial(jnp.zeros, dtype=jnp.float32)
    return Ops("jax", jnp.asarray, np.asarray, jnp.tanh, jax.nn.sigmoid, jnp.where, jnp.sum, zeros, _rows, nll, True)


def _torch() -> Ops:
    import torch
    import torch.nn.functional as F

    def to_numpy(x: Any) -> np.ndarray:
        x = x.detach().cpu()
        return (x.float() if x.dtype in (torch.bfloat16, torch.float16) else x).numpy()

    def nll(logits: Any, targets: Any) -> Any:
        flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long(), reduction="none")
        return flat.reshape(targets.shape)

    zeros, asarray = functools.partial(torch.zeros, dtype=torch.float32), torch.as_tensor
    return Ops("torch", asarray, to_numpy, torch.tanh, torch.sigmoid, torch.where, torch.sum, zeros, _rows, nll, True)


def _tensorflow() -> Ops:
    import tensorflow as tf

    def to_numpy(x: Any) -> np.ndarray:
        return (tf.cast(x, tf.float32) if x.dtype == tf.bfloat16 else x).numpy()

    def nll(logits: Any, targets: Any) -> Any:
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)

    zeros, asarray, total = functools.partial(tf.zeros, dtype=tf.float32), tf.convert_to_tensor, tf.reduce_sum
    return Ops("tensorflow", asarray, to_numpy, tf.tanh, tf.sigmoid, tf.where, total, zeros, tf.gather, nll, True)


_MAKERS: dict[str, Callable[[], Ops]] = {"numpy": _numpy, "jax": _jax, "torch": _torch, "tensorflow": _tensorflow}
