"""TensorFlow: an eager Python loop; ``tf.while_loop`` with ``TensorArray``s in graphs.

Inside ``tf.function`` (XLA included) the loop is a ``tf.while_loop``: it works with
an unknown time or batch dimension, and ``GradientTape`` differentiates through
it. Eagerly a ``tf.while_loop`` would run as a Python loop anyway; the core's plain
Python loop does less per step (measured on the masked SimpleRNN workload of
``benchmarks/simple_rnn.py``, eager: about 330 ms against 490 ms for an eager
``tf.while_loop`` with ``TensorArray``s and 530 ms for ``tf_keras.backend.rnn``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from . import _compat
from ._base import Backend, python_loop

if TYPE_CHECKING:
    from .._step import Step


class TensorflowBackend(Backend):
    name = "tensorflow"

    def owns(self, x: Any) -> bool:
        # tensors (graph ones too), variables (resource, mirrored, distributed), and what
        # converts through TensorFlow's own protocol, __tf_tensor__ (keras.Variable)
        return isinstance(x, (tf.Tensor, tf.Variable)) or hasattr(type(x), "__tf_tensor__")

    def asarray(self, x: Any, like: Any = None) -> Any:
        return tf.convert_to_tensor(x)

    def shape(self, x: Any) -> tuple:
        return tuple(x.shape.as_list())

    def is_bool(self, x: Any) -> bool:
        return x.dtype == tf.bool

    def is_integer(self, x: Any) -> bool:
        return x.dtype.is_integer

    def is_numeric(self, x: Any) -> bool:
        return x.dtype.is_integer or x.dtype.is_floating or x.dtype.is_complex

    def host_values(self, x: Any) -> Any:
        return x.numpy() if tf.executing_eagerly() and hasattr(x, "numpy") else None

    def all_true_per_step(self, mask: Any) -> list[bool] | None:
        if not tf.executing_eagerly():
            return None
        return tf.reduce_all(mask, axis=1).numpy().tolist()

    def to_bool(self, x: Any) -> Any:
        # an op, not `x != 0`: in a TF1 graph that is Python's identity comparison
        return x if x.dtype == tf.bool else tf.not_equal(x, tf.zeros((), x.dtype))

    def swap_batch_time(self, x: Any) -> Any:
        return tf.transpose(x, [1, 0, *range(2, x.shape.rank)])

    def flip_time(self, x: Any) -> Any:
        return tf.reverse(x, [0])

    def reshape(self, x: Any, shape: Sequence[int]) -> Any:
        if _same_static_shape(x, shape):  # no op in a loop body for a no-op reshape
            return x
        return tf.reshape(x, shape)

    def expand_front(self, x: Any) -> Any:
        return tf.expand_dims(x, 0)

    def where(self, condition: Any, x: Any, y: Any) -> Any:
        return tf.where(condition, x, y)

    def zeros_like(self, x: Any) -> Any:
        return tf.zeros_like(x)

    def stack(self, xs: Sequence[Any]) -> Any:
        return tf.stack(xs)

    def unstack(self, x: Any) -> Sequence[Any]:
        return tf.unstack(x)

    def arange(self, n: Any, like: Any) -> Any:
        return tf.range(n, dtype=like.dtype)

    def as_index(self, x: Any) -> Any:
        return tf.cast(x, tf.int64)

    def max_length(self, lengths: Any) -> Any:
        return tf.reduce_max(tf.concat([lengths, tf.zeros((1,), lengths.dtype)], 0))

    def time_steps(self, x: Any) -> Any:
        static = x.shape[0]
        return static if static is not None else tf.shape(x)[0]

    def scan(
        self, step: Step, states: list[Any], inputs: list[Any], mask: Any | None, keep_all: bool
    ) -> tuple[list[Any], list[Any], list[Any] | None]:
        """Eagerly, the Python loop; in a graph (``tf.function``, XLA), :func:`while_loop`."""
        if tf.executing_eagerly():
            return python_loop(self, step, states, inputs, mask, keep_all)
        return while_loop(step, states, inputs, mask, keep_all)


def while_loop(
    step: Step, states: list[Any], inputs: list[Any], mask: Any | None, keep_all: bool
) -> tuple[list[Any], list[Any], list[Any] | None]:
    """``tf.while_loop`` over axis 0, inputs read from and outputs written to ``TensorArray``s.

    ``inputs``: flat leaves ``(time, batch, ...)`` in processing order (time may be
    unknown); ``mask``: ``(time, batch)`` bool or None. The loop carries the step
    counter, the output ``TensorArray``s (only when ``keep_all``), the last output
    leaves ``(batch, ...)`` and the state leaves. Returns what :meth:`Backend.scan`
    returns; stacked outputs ``(time, batch, ...)`` have the static time size of
    ``inputs`` where that is known.
    """
    static_time = inputs[0].shape[0]
    time_steps = static_time if static_time is not None else tf.shape(inputs[0])[0]

    # The output's structure, shape and dtype, from the step function applied once
    # to the time-zero inputs (as tf-keras does). Nothing at run time depends on
    # this call, so a graph prunes it: the zeros below are built from static
    # shapes and the batch size of the inputs, not from its result.
    spec = step.call(states, [x[0] for x in inputs])[0]
    first_output = [_zeros_like_output(o, inputs[0]) for o in spec]

    input_tas = [tf.TensorArray(x.dtype, size=time_steps, element_shape=x.shape[1:]).unstack(x) for x in inputs]
    mask_ta = None
    if mask is not None:
        # Read as (batch, 1): the step's reshape of the mask to broadcast against
        # (batch, units) leaves is then no op in the loop.
        mask = tf.expand_dims(mask, -1)
        mask_ta = tf.TensorArray(tf.bool, size=time_steps, element_shape=mask.shape[1:]).unstack(mask)
    output_tas = [tf.TensorArray(o.dtype, size=time_steps, element_shape=o.shape) for o in spec] if keep_all else []

    # The body is plain TensorFlow already: AutoGraph has nothing to convert.
    @tf.autograph.experimental.do_not_convert
    def body(t: Any, tas: list[Any], prev_output: list[Any], states: list[Any]) -> Any:
        x_t = [ta.read(t) for ta in input_tas]
        mask_t = mask_ta.read(t) if mask_ta is not None else None
        new_states, output = step(states, prev_output, x_t, mask_t)
        # Loop variables keep their shapes: give results the (compatible, checked
        # on the first call) static shapes of what they replace.
        new_states = [_with_shape_of(n, s) for n, s in zip(new_states, states)]
        output = [_with_shape_of(o, p) for o, p in zip(output, prev_output)]
        tas = [ta.write(t, o) for ta, o in zip(tas, output)]
        return t + 1, tas, output, new_states

    # XLA needs ``maximum_iterations`` to size the gradient's accumulators; elsewhere
    # the condition alone bounds the loop (one test per step, as tf-keras).
    bound = time_steps if _compat.tf_building_for_xla() else None

    @tf.autograph.experimental.do_not_convert
    def cond(t: Any, *_: Any) -> Any:
        return t < time_steps if bound is None else tf.constant(True)

    _, output_tas, last, states = tf.while_loop(
        cond,
        body,
        (tf.constant(0, tf.int32), output_tas, first_output, list(states)),
        maximum_iterations=bound,
        parallel_iterations=32,
    )
    if not keep_all:
        return states, last, None
    outputs = []
    for ta, o in zip(output_tas, spec):
        stacked = ta.stack()
        stacked.set_shape([static_time, *o.shape])
        outputs.append(stacked)
    return states, last, outputs


def _same_static_shape(x: Any, shape: Sequence[int]) -> bool:
    """``tf.reshape(x, shape)`` would return ``x``'s shape unchanged (known statically).

    True when the ranks agree and every target size but at most one ``-1`` equals
    ``x``'s static size (the ``-1`` then stands for ``x``'s own size there).
    """
    dims = x.shape.as_list() if x.shape.rank is not None else None
    if dims is None or len(dims) != len(shape) or sum(1 for s in shape if s == -1) > 1:
        return False
    return all(s == -1 or (isinstance(s, int) and d == s) for d, s in zip(dims, shape))


def _zeros_like_output(output: Any, like_input: Any) -> Any:
    """Zeros of the shape and dtype of one output leaf ``(batch, ...)``.

    Built from static shapes and the batch size of ``like_input`` ``(time, batch,
    ...)``, so that they do not depend on ``output``'s value; ``tf.zeros_like`` only
    where a non-batch dimension is unknown.
    """
    dims = output.shape.as_list()
    if any(d is None for d in dims[1:]):
        return tf.zeros_like(output)
    if dims[0] is not None:
        return tf.zeros(dims, output.dtype)
    zeros = tf.zeros(tf.concat([tf.shape(like_input)[1:2], dims[1:]], 0), output.dtype)
    zeros.set_shape(dims)
    return zeros


def _with_shape_of(new: Any, old: Any) -> Any:
    """``new`` (a graph tensor) with the static shape of ``old`` merged in."""
    if not isinstance(new, tf.Tensor):  # e.g. a variable handed back by the step function
        new = tf.convert_to_tensor(new)
    if new.shape != old.shape:
        new.set_shape(old.shape)
    return new


BACKEND = TensorflowBackend()
