"""The loops a user writes by hand on each framework, the masked update written out: the grid's peers
(:mod:`.peers` times them).

Each is an ``rnn_call(step, x, states, mask) -> outputs``, like rnnscan's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optree

from .._frameworks import ops


# -- the loops written by hand: the masked update of every state leaf, then of the output --------
def _masked(where: Callable[..., Any], m2: Any, new_out: Any, out: Any, new: Any, old: Any) -> tuple[Any, Any]:
    """``(states, output)`` kept where the mask ``m2`` ``(B, 1)`` is on (broadcast to each state's rank)."""
    m3 = m2[..., None]
    states = optree.tree_map(lambda n, o: where(m2 if len(n.shape) == 2 else m3, n, o), list(new), list(old))
    return states, where(m2, new_out, out)


def _zeros_out(states: Any, zeros_like: Callable[[Any], Any]) -> Any:
    """The output before the first step: zeros like the first state leaf (``h`` in every workload)."""
    return zeros_like(optree.tree_leaves(states)[0])


def _python_loop(step: Callable[..., Any], xs: Any, ms: Any, states: Any, fw: Any, stack: Any) -> Any:
    out, outputs = _zeros_out(states, lambda a: a * 0), []
    for x_t, m_t in zip(xs, ms):
        new_out, new_states = step(x_t, states)
        states, out = _masked(fw.where, m_t, new_out, out, new_states, states)
        outputs.append(out)
    return stack(outputs, 1)


def numpy_by_hand(step: Callable[..., Any], x: Any, states: Any, mask: Any) -> Any:
    """The Python loop a NumPy user writes: the masked update written out."""
    import numpy as np

    return _python_loop(step, x.swapaxes(0, 1), mask.T[:, :, None], states, ops("numpy"), np.stack)


def torch_by_hand(step: Callable[..., Any], x: Any, states: Any, mask: Any) -> Any:
    """The eager loop a PyTorch user writes: unbind time once, ``where`` per step, stack once."""
    import torch

    return _python_loop(step, x.unbind(1), mask.T[:, :, None].unbind(0), states, ops("torch"), torch.stack)


def _scan_body(step: Callable[..., Any], where: Callable[..., Any], copy: Callable[[Any], Any] = lambda a: a) -> Any:
    """A scan body ``((states, out), (x_t, m_t)) -> ((states, out), out)``, ``copy`` applied to what it returns."""

    def body(carry: Any, xs: Any) -> Any:
        (states, out), (x_t, m_t) = carry, xs
        new_out, new_states = step(x_t, states)
        states, out = _masked(where, m_t[:, None], new_out, out, new_states, states)
        return (optree.tree_map(copy, states), copy(out)), copy(out)

    return body


def jax_by_hand(step: Callable[..., Any], x: Any, states: Any, mask: Any) -> Any:
    """``jax.lax.scan`` over time with the masked update written out."""
    import jax
    import jax.numpy as jnp

    carry = (list(states), _zeros_out(states, jnp.zeros_like))
    _, outputs = jax.lax.scan(_scan_body(step, jnp.where), carry, (jnp.swapaxes(x, 0, 1), mask.T))
    return jnp.swapaxes(outputs, 0, 1)


def torch_scan_by_hand(step: Callable[..., Any], x: Any, states: Any, mask: Any) -> Any:
    """``torch._higher_order_ops.scan`` (under ``torch.compile``); its body returns copies: the op refuses
    aliased results, and torch 2.13's inductor a carry that autograd also saves."""
    import torch
    from torch._higher_order_ops.scan import scan

    init = (optree.tree_map(torch.clone, states), _zeros_out(states, torch.zeros_like))
    xs = (x.transpose(0, 1).contiguous(), mask.T.contiguous())
    _, outputs = scan(_scan_body(step, torch.where, torch.clone), init, xs)
    return outputs.transpose(0, 1)


def tensorflow_by_hand(step: Callable[..., Any], x: Any, states: Any, mask: Any) -> Any:
    """``tf.while_loop`` over ``TensorArray``s with the masked update written out (for ``tf.function``); under
    ``jit_compile=True`` with the ``maximum_iterations`` that XLA needs to differentiate it, as a user then writes."""
    import tensorflow as tf

    from ..backends._compat import tf_building_for_xla

    time = x.shape[1]
    xs = tf.TensorArray(x.dtype, size=time).unstack(tf.transpose(x, [1, 0, 2]))
    ms = tf.TensorArray(tf.bool, size=time).unstack(tf.transpose(mask))

    def body(t: Any, states: Any, out: Any, outputs: Any) -> Any:
        new_out, new_states = step(xs.read(t), states)
        states, out = _masked(tf.where, ms.read(t)[:, None], new_out, out, new_states, states)
        return t + 1, states, out, outputs.write(t, out)

    init = (tf.constant(0), list(states), _zeros_out(states, tf.zeros_like), tf.TensorArray(x.dtype, size=time))
    bound = time if tf_building_for_xla() else None
    *_, outputs = tf.while_loop(lambda t, *_: t < time, body, init, maximum_iterations=bound)
    return tf.transpose(outputs.stack(), [1, 0, 2])
