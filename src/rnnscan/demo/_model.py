"""The demo's model, written once: a GRU variant as an rnnscan step function.

The math uses only ``@``, slicing, arithmetic and a handful of functions looked
up in the per-framework table (:class:`rnnscan._frameworks.Ops`), so the same lines run on NumPy, JAX,
PyTorch and TensorFlow arrays; ``rnnscan.rnn`` picks the loop from the arrays.

The cell: a GRU whose gates also see a per-line context vector, passed to
``rnnscan.rnn`` through ``constants`` (the same vector at every step). The
context is looked up from the line's indentation depth, and it enters the
candidate inside the reset gate, ``tanh(x_n + r * (h @ U_n + c_n))``, so it
cannot be folded into the inputs before the loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

import rnnscan

from .._frameworks import Ops
from ._data import INDENT_LEVELS, VOCAB

Params = dict[str, Any]


def init_params(hidden: int, seed: int) -> dict[str, np.ndarray]:
    """Initial weights as float32 NumPy arrays, the same on every backend for a given seed."""
    rng = np.random.default_rng(seed)

    def uniform(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        bound = 1.0 / math.sqrt(fan_in)
        return rng.uniform(-bound, bound, shape).astype(np.float32)

    return {
        "embed": uniform((VOCAB, 3 * hidden), 1),  # input projection of each character, bias folded in
        "context": uniform((INDENT_LEVELS, 3 * hidden), hidden),  # gate biases for each indentation depth
        "recurrent": uniform((hidden, 3 * hidden), hidden),
        "readout": uniform((hidden, VOCAB), hidden),
        "readout_bias": np.zeros(VOCAB, np.float32),
    }


def gru_step(ops: Ops, recurrent: Any) -> Callable[[Any, Any], tuple[Any, list[Any]]]:
    """The cell as an rnnscan step function: ``(x_t, (h, context)) -> (h, [h])``.

    ``x_t`` is the character's input projection ``(B, 3H)``; ``context`` ``(B, 3H)``
    arrives through ``constants``, after the state.
    """
    hidden = recurrent.shape[0]

    def step(x_t: Any, states: Any) -> tuple[Any, list[Any]]:
        h, context = states
        gh = h @ recurrent
        z = ops.sigmoid(x_t[:, :hidden] + gh[:, :hidden] + context[:, :hidden])
        r = ops.sigmoid(x_t[:, hidden : 2 * hidden] + gh[:, hidden : 2 * hidden] + context[:, hidden : 2 * hidden])
        n = ops.tanh(x_t[:, 2 * hidden :] + r * (gh[:, 2 * hidden :] + context[:, 2 * hidden :]))
        h = n + z * (h - n)  # (1 - z) * n + z * h
        return h, [h]

    return step


def forward(ops: Ops, params: Params, inputs: Any, indent: Any, mask: Any = None, h0: Any = None) -> tuple[Any, Any]:
    """Logits ``(B, T, VOCAB)`` for the next character at every step, and the final state ``(B, H)``."""
    hidden = params["recurrent"].shape[0]
    if h0 is None:
        h0 = ops.zeros((inputs.shape[0], hidden))
    _, outputs, (h,) = rnnscan.rnn(
        gru_step(ops, params["recurrent"]),
        ops.take(params["embed"], inputs),
        [h0],
        mask=mask,
        constants=[ops.take(params["context"], indent)],
    )
    return outputs @ params["readout"] + params["readout_bias"], h


def loss_terms(ops: Ops, params: Params, inputs: Any, targets: Any, mask: Any, indent: Any) -> tuple[Any, Any]:
    """Summed negative log-likelihood (nats) over the real steps, and their number.

    ``mask`` is float32 (1 on real steps): rnnscan keeps the nonzero steps, and
    the same array weighs the loss.
    """
    logits, _ = forward(ops, params, inputs, indent, mask)
    return ops.sum(ops.nll(logits, targets) * mask), ops.sum(mask)


def mean_loss(ops: Ops, params: Params, inputs: Any, targets: Any, mask: Any, indent: Any) -> Any:
    """Mean negative log-likelihood per real step, in nats: the training objective."""
    total, count = loss_terms(ops, params, inputs, targets, mask, indent)
    return total / count
