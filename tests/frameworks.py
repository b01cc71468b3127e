"""Test helpers: each framework's arrays made from and read back into NumPy,
and the few operations the test step functions use."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Framework:
    name: str
    asarray: Callable[[np.ndarray], Any]  # NumPy -> this framework
    to_numpy: Callable[[Any], np.ndarray]
    tanh: Callable[[Any], Any]
    sigmoid: Callable[[Any], Any]
    sum: Callable[[Any], Any]
    differentiable: bool

    def tree(self, tree: Any) -> Any:
        import optree

        return optree.tree_map(lambda a: self.asarray(a) if isinstance(a, np.ndarray) else a, tree)

    def tree_numpy(self, tree: Any) -> Any:
        import optree

        return optree.tree_map(self.to_numpy, tree)

    def __repr__(self) -> str:
        return self.name


def _numpy() -> Framework:
    def sigmoid(x: Any) -> Any:
        return 1 / (1 + np.exp(-x))

    return Framework("numpy", np.asarray, np.asarray, np.tanh, sigmoid, np.sum, differentiable=False)


def _jax() -> Framework:
    import jax
    import jax.numpy as jnp

    return Framework("jax", jnp.asarray, np.asarray, jnp.tanh, jax.nn.sigmoid, jnp.sum, differentiable=True)


def _torch() -> Framework:
    import torch

    def to_numpy(x: Any) -> np.ndarray:
        x = x.detach().cpu()
        return (x.float() if x.dtype in (torch.bfloat16, torch.float16) else x).numpy()

    return Framework("torch", torch.as_tensor, to_numpy, torch.tanh, torch.sigmoid, torch.sum, differentiable=True)


def _tensorflow() -> Framework:
    import tensorflow as tf

    def to_numpy(x: Any) -> np.ndarray:
        return (tf.cast(x, tf.float32) if x.dtype == tf.bfloat16 else x).numpy()

    return Framework(
        "tensorflow", tf.convert_to_tensor, to_numpy, tf.tanh, tf.sigmoid, tf.reduce_sum, differentiable=True
    )


_MAKERS = {"numpy": _numpy, "jax": _jax, "torch": _torch, "tensorflow": _tensorflow}
_MODULES = {"numpy": "numpy", "jax": "jax", "torch": "torch", "tensorflow": "tensorflow"}

# The backends rnnscan implements; a test over them is skipped only where the framework is missing.
BACKENDS = ("numpy", "jax", "torch", "tensorflow")


def installed(name: str) -> bool:
    return importlib.util.find_spec(_MODULES[name]) is not None


def framework(name: str) -> Framework:
    return _MAKERS[name]()


def gradient(fw: Framework, loss: Callable[..., Any], params: list[np.ndarray]) -> list[np.ndarray]:
    """d loss / d params, by the framework's own autodiff; `loss` takes and returns its arrays."""
    if fw.name == "jax":
        import jax

        return [np.asarray(g) for g in jax.grad(lambda ps: loss(*ps))([fw.asarray(p) for p in params])]
    if fw.name == "torch":
        import torch

        leaves = [torch.tensor(p, requires_grad=True) for p in params]
        loss(*leaves).backward()
        return [leaf.grad.numpy() for leaf in leaves]
    if fw.name == "tensorflow":
        import tensorflow as tf

        variables = [tf.Variable(p) for p in params]
        with tf.GradientTape() as tape:
            value = loss(*variables)
        return [g.numpy() for g in tape.gradient(value, variables)]
    raise ValueError(f"{fw.name} has no autodiff")
