"""The demo's model, written once: a GRU variant as an rnnscan step function.

The math uses only ``@``, slicing, arithmetic and a handful of functions looked
up in a per-framework :class:`Ops` table, so the same lines run on NumPy, JAX,
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
from dataclasses import dataclass
from typing import Any

import numpy as np

import rnnscan

from ._data import INDENT_LEVELS, VOCAB

Params = dict[str, Any]


@dataclass(frozen=True)
class Ops:
    """The few framework functions the model needs beyond ``@``, slicing and arithmetic."""

    name: str
    asarray: Callable[[np.ndarray], Any]  #: a NumPy array as this framework's array
    take: Callable[[Any, Any], Any]  #: ``table[index]``: rows of a 2-D table
    sigmoid: Callable[[Any], Any]
    tanh: Callable[[Any], Any]
    nll: Callable[[Any, Any], Any]  #: ``(logits (..., V), targets (...)) -> -log p(target)`` in nats
    sum: Callable[[Any], Any]
    zeros: Callable[[tuple[int, ...]], Any]  #: float32 zeros


def _np_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(-1))
    return log_z - np.take_along_axis(shifted, targets[..., None], -1)[..., 0]


def numpy_ops() -> Ops:
    return Ops(
        name="numpy",
        asarray=np.asarray,
        take=lambda table, index: table[index],
        sigmoid=lambda x: 1.0 / (1.0 + np.exp(-x)),
        tanh=np.tanh,
        nll=_np_nll,
        sum=np.sum,
        zeros=lambda shape: np.zeros(shape, np.float32),
    )


def jax_ops() -> Ops:
    import jax
    import jax.numpy as jnp

    def nll(logits: Any, targets: Any) -> Any:
        logp = jax.nn.log_softmax(logits)
        return -jnp.take_along_axis(logp, targets[..., None], -1)[..., 0]

    return Ops("jax", jnp.asarray, lambda t, i: t[i], jax.nn.sigmoid, jnp.tanh, nll, jnp.sum, jnp.zeros)


def torch_ops() -> Ops:
    import torch
    import torch.nn.functional as F

    def nll(logits: Any, targets: Any) -> Any:
        flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long(), reduction="none")
        return flat.reshape(targets.shape)

    return Ops("torch", torch.from_numpy, lambda t, i: t[i], torch.sigmoid, torch.tanh, nll, torch.sum, torch.zeros)


def tensorflow_ops() -> Ops:
    import tensorflow as tf

    return Ops(
        name="tensorflow",
        asarray=tf.convert_to_tensor,
        take=tf.gather,
        sigmoid=tf.sigmoid,
        tanh=tf.tanh,
        nll=lambda logits, targets: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits),
        sum=tf.reduce_sum,
        zeros=lambda shape: tf.zeros(shape, tf.float32),
    )


OPS: dict[str, Callable[[], Ops]] = {
    "numpy": numpy_ops,
    "jax": jax_ops,
    "torch": torch_ops,
    "tensorflow": tensorflow_ops,
}


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
