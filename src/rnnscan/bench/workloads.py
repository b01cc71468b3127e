"""The three workloads: step functions written once over :class:`rnnscan._frameworks.Ops`, and their data.

Every implementation (rnnscan and its peers, in every framework) runs the same
step function on the same data, so that only the loop around it differs. Inputs
are ``(B, T, D)`` float32 with a right-padded ``(B, T)`` bool mask (lengths drawn
in ``[T/2, T]``); states start at zeros.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optree

from .._frameworks import Ops

INPUT_DIM = 16  # D
MEMORY_SLOTS = 4  # S, the slots of W3's rank-3 state

StepFunction = Callable[[Any, Any], tuple[Any, list[Any]]]


def simple_rnn_step(ops: Ops, p: dict[str, Any]) -> StepFunction:
    """W1: ``h' = tanh(x W + h U + b)``."""

    def step(x_t: Any, states: Any) -> tuple[Any, list[Any]]:
        h = ops.tanh(x_t @ p["W"] + states[0] @ p["U"] + p["b"])
        return h, [h]

    return step


def lstm_step(ops: Ops, p: dict[str, Any]) -> StepFunction:
    """W2: an LSTM cell, states ``[h, c]``, gates i, f, g, o (PyTorch's order, so torch.nn.LSTM takes the weights)."""
    units = int(p["U"].shape[0])

    def step(x_t: Any, states: Any) -> tuple[Any, list[Any]]:
        z = x_t @ p["W"] + states[0] @ p["U"] + p["b"]
        i, f, o = (ops.sigmoid(z[:, k * units : (k + 1) * units]) for k in (0, 1, 3))
        c = f * states[1] + i * ops.tanh(z[:, 2 * units : 3 * units])
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


@dataclass(frozen=True)
class Workload:
    """One workload: its step function, its definition, and the shapes of its weights and states."""

    key: str
    title: str
    definition: str  # one line, for --help, the tables and bench.md
    make_step: Callable[[Ops, dict[str, Any]], StepFunction]
    weight_shapes: Callable[[int, int], dict[str, tuple[int, ...]]]
    state_shapes: Callable[[int, int], list[Any]]


WORKLOADS: dict[str, Workload] = {
    w.key: w
    for w in (
        Workload(
            "W1",
            "masked tanh SimpleRNN",
            "h' = tanh(x W + h U + b), one state h (B, U), output h'",
            simple_rnn_step,
            lambda d, u: {"W": (d, u), "U": (u, u), "b": (u,)},
            lambda b, u: [(b, u)],
        ),
        Workload(
            "W2",
            "LSTM step (states h, c)",
            "an LSTM cell as a step function, two states h, c (B, U), output h",
            lstm_step,
            lambda d, u: {"W": (d, 4 * u), "U": (u, 4 * u), "b": (4 * u,)},
            lambda b, u: [(b, u), (b, u)],
        ),
        Workload(
            "W3",
            "nested state {h, mem (rank 3)}",
            f"one dict state {{h (B, U), mem (B, {MEMORY_SLOTS}, U)}}, mem updated from h at every step",
            nested_step,
            lambda d, u: {"W": (d, u), "U": (u, u), "V": (u, u), "R": (u, u), "b": (u,)},
            lambda b, u: [{"h": (b, u), "mem": (b, MEMORY_SLOTS, u)}],
        ),
    )
}


def is_shape(node: Any) -> bool:
    """A leaf of a shape tree: a tuple of ints."""
    return isinstance(node, tuple) and all(isinstance(n, int) for n in node)


@dataclass
class Data:
    """One problem instance as NumPy arrays; every implementation converts it to its own arrays."""

    workload: Workload
    x: np.ndarray  # (B, T, D) float32
    mask: np.ndarray  # (B, T) bool, right-padded
    lengths: np.ndarray  # (B,) int64, the kept steps of each sequence
    states: list[Any]  # initial states (zeros), nested like the workload's states
    params: dict[str, np.ndarray]  # the weights; gradients are taken with respect to these

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(B, T, U)``."""
        return int(self.x.shape[0]), int(self.x.shape[1]), int(optree.tree_leaves(self.states)[0].shape[-1])


def make_data(workload: str, batch: int, time: int, units: int, seed: int = 0) -> Data:
    """Inputs, mask, zero initial states and weights for one workload, deterministic in the arguments."""
    w = WORKLOADS[workload]
    rng = np.random.default_rng([seed, batch, time, units])
    lengths = rng.integers(max(time // 2, 1), time + 1, size=batch)
    params = {}
    for name, shape in w.weight_shapes(INPUT_DIM, units).items():
        scale = 0.1 if len(shape) == 1 else 1.0 / np.sqrt(shape[0])
        params[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    states = optree.tree_map(lambda s: np.zeros(s, np.float32), w.state_shapes(batch, units), is_leaf=is_shape)
    x = rng.standard_normal((batch, time, INPUT_DIM)).astype(np.float32)
    mask = np.arange(time)[None, :] < lengths[:, None]
    return Data(w, x, mask, lengths.astype(np.int64), states, params)
