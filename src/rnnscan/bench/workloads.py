"""The three workloads: NumPy data, and step functions written once over a tiny ops namespace.

Every implementation (rnnscan and its peers, in every framework) runs the *same*
step function on the *same* data, so that only the loop around it differs:

* ``W1`` masked tanh SimpleRNN: ``h' = tanh(x W + h U + b)``, output ``h'``.
* ``W2`` LSTM written as a step function with two states ``[h, c]`` (gates in
  PyTorch's order i, f, g, o, so that ``torch.nn.LSTM`` can take the same weights).
* ``W3`` nested state: one state that is a dict ``{"h": (B, U), "mem": (B, S, U)}``
  (a rank-3 memory of ``S`` slots, updated from ``h`` at every step).

The step functions use only ``@``, ``+``, ``*``, slicing and the namespace's
``tanh``/``sigmoid``, which mean the same thing on NumPy, JAX, PyTorch and
TensorFlow arrays. Inputs are ``(B, T, D)`` float32 with a right-padded
``(B, T)`` bool mask (lengths drawn in ``[T/2, T]``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

INPUT_DIM = 16  # D, the input features (as in the earlier benchmark scripts)
MEMORY_SLOTS = 4  # S, the slots of W3's rank-3 state

StepFunction = Callable[[Any, Any], tuple[Any, list[Any]]]


@dataclass(frozen=True)
class Ops:
    """The few framework functions a step function or a hand-written loop needs."""

    name: str
    tanh: Callable[[Any], Any]
    sigmoid: Callable[[Any], Any]
    where: Callable[[Any, Any, Any], Any]


def numpy_ops() -> Ops:
    """NumPy's namespace (float32 stays float32)."""

    def sigmoid(x: Any) -> Any:
        return 1.0 / (1.0 + np.exp(-x))

    return Ops("numpy", np.tanh, sigmoid, np.where)


def jax_ops() -> Ops:
    """JAX's namespace."""
    import jax
    import jax.numpy as jnp

    return Ops("jax", jnp.tanh, jax.nn.sigmoid, jnp.where)


def torch_ops() -> Ops:
    """PyTorch's namespace."""
    import torch

    return Ops("torch", torch.tanh, torch.sigmoid, torch.where)


def tensorflow_ops() -> Ops:
    """TensorFlow's namespace."""
    import tensorflow as tf

    return Ops("tensorflow", tf.tanh, tf.sigmoid, tf.where)


OPS: dict[str, Callable[[], Ops]] = {
    "numpy": numpy_ops,
    "jax": jax_ops,
    "torch": torch_ops,
    "tensorflow": tensorflow_ops,
}


def tree_map(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Map ``fn`` over the leaves of lists, tuples and dicts (the structures the workloads use)."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, v, *(r[k] for r in rest)) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(tree_map(fn, *items) for items in zip(tree, *rest))
    return fn(tree, *rest)


def tree_leaves(tree: Any) -> list[Any]:
    """The leaves of ``tree`` in :func:`tree_map`'s order."""
    leaves: list[Any] = []
    tree_map(leaves.append, tree)
    return leaves


# -- step functions ---------------------------------------------------------------------
def simple_rnn_step(ops: Ops, p: dict[str, Any]) -> StepFunction:
    """W1: ``h' = tanh(x W + h U + b)``."""

    def step(x_t: Any, states: Any) -> tuple[Any, list[Any]]:
        h = ops.tanh(x_t @ p["W"] + states[0] @ p["U"] + p["b"])
        return h, [h]

    return step


def lstm_step(ops: Ops, p: dict[str, Any]) -> StepFunction:
    """W2: an LSTM cell, states ``[h, c]``, gates i, f, g, o (PyTorch's order)."""
    units = int(p["U"].shape[0])

    def step(x_t: Any, states: Any) -> tuple[Any, list[Any]]:
        h, c = states[0], states[1]
        z = x_t @ p["W"] + h @ p["U"] + p["b"]
        i = ops.sigmoid(z[:, :units])
        f = ops.sigmoid(z[:, units : 2 * units])
        g = ops.tanh(z[:, 2 * units : 3 * units])
        o = ops.sigmoid(z[:, 3 * units :])
        c = f * c + i * g
        h = o * ops.tanh(c)
        return h, [h, c]

    return step


def nested_step(ops: Ops, p: dict[str, Any]) -> StepFunction:
    """W3: one dict state ``{"h": (B, U), "mem": (B, S, U)}``; slot 0 of the memory feeds ``h``."""

    def step(x_t: Any, states: Any) -> tuple[Any, list[Any]]:
        h, mem = states[0]["h"], states[0]["mem"]
        h = ops.tanh(x_t @ p["W"] + h @ p["U"] + mem[:, 0] @ p["V"] + p["b"])
        mem = ops.tanh(mem @ p["R"] + h[:, None, :])
        return h, [{"h": h, "mem": mem}]

    return step


# -- workloads --------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """One workload: its step function and the shapes of its weights and states."""

    key: str
    title: str
    make_step: Callable[[Ops, dict[str, Any]], StepFunction]
    weight_shapes: Callable[[int, int], dict[str, tuple[int, ...]]]
    state_shapes: Callable[[int, int], list[Any]]


WORKLOADS: dict[str, Workload] = {
    w.key: w
    for w in (
        Workload(
            "W1",
            "masked tanh SimpleRNN",
            simple_rnn_step,
            lambda d, u: {"W": (d, u), "U": (u, u), "b": (u,)},
            lambda b, u: [(b, u)],
        ),
        Workload(
            "W2",
            "LSTM step (states h, c)",
            lstm_step,
            lambda d, u: {"W": (d, 4 * u), "U": (u, 4 * u), "b": (4 * u,)},
            lambda b, u: [(b, u), (b, u)],
        ),
        Workload(
            "W3",
            "nested state {h, mem (rank 3)}",
            nested_step,
            lambda d, u: {"W": (d, u), "U": (u, u), "V": (u, u), "R": (u, u), "b": (u,)},
            lambda b, u: [{"h": (b, u), "mem": (b, MEMORY_SLOTS, u)}],
        ),
    )
}


@dataclass
class Data:
    """One problem instance, as NumPy arrays; every implementation converts it to its own arrays."""

    workload: Workload
    x: np.ndarray  # (B, T, D) float32
    mask: np.ndarray  # (B, T) bool, right-padded
    lengths: np.ndarray  # (B,) int64, the kept steps of each sequence
    states: list[Any]  # initial states (zeros), nested like the workload's states
    params: dict[str, np.ndarray]  # the weights, gradients are taken w.r.t. these

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(B, T, U)``."""
        return int(self.x.shape[0]), int(self.x.shape[1]), int(tree_leaves(self.states)[0].shape[-1])


def make_data(workload: str, batch: int, time: int, units: int, seed: int = 0) -> Data:
    """Inputs, mask, zero initial states and weights for one workload, deterministic in the arguments."""
    w = WORKLOADS[workload]
    rng = np.random.default_rng([seed, batch, time, units])
    lengths = rng.integers(max(time // 2, 1), time + 1, size=batch)
    params = {}
    for name, shape in w.weight_shapes(INPUT_DIM, units).items():
        scale = 0.1 if len(shape) == 1 else 1.0 / np.sqrt(shape[0])
        params[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return Data(
        workload=w,
        x=rng.standard_normal((batch, time, INPUT_DIM)).astype(np.float32),
        mask=np.arange(time)[None, :] < lengths[:, None],
        lengths=lengths.astype(np.int64),
        states=_zeros(w.state_shapes(batch, units)),
        params=params,
    )


def _zeros(shapes: Any) -> Any:
    """Zeros (float32) in the structure of ``shapes``, whose leaves are shape tuples."""
    if isinstance(shapes, dict):
        return {k: _zeros(v) for k, v in shapes.items()}
    if isinstance(shapes, list):
        return [_zeros(s) for s in shapes]
    return np.zeros(shapes, np.float32)
