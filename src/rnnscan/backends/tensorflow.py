"""TensorFlow: an eager Python loop; ``tf.while_loop`` with ``TensorArray``s in graphs.

Inside ``tf.function`` (XLA included) the loop is a ``tf.while_loop``: it works with
an unknown time or batch dimension, and ``GradientTape`` differentiates through
it. Eagerly a ``tf.while_loop`` would run as a Python loop anyway; the core's plain
Python loop does less per step (measured on the masked SimpleRNN workload of
``python -m rnnscan bench --workloads W1``, eager: about 330 ms against 490 ms for an eager
``tf.while_loop`` with ``TensorArray``s and 530 ms for ``tf_keras.backend.rnn``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from . import _compat
from ._base import Backend

# Iterations in flight in a while loop: a step's work that does not wait for the previous step (reading its
# inputs, projecting them) runs ahead on the free cores. 4 on 2 cores measured 3-7% faster than tf-keras's 32
# (and TensorFlow's default 10) on the three workloads of `python -m rnnscan bench`; more cores, more.
_PARALLEL_ITERATIONS = min(32, 2 * (os.cpu_count() or 1))


class TensorflowBackend(Backend):
    name = "tensorflow"

    def owns(self, x: Any) -> bool:
        # tensors (graph ones too), variables (resource, mirrored, distributed), and what
        # converts through TensorFlow's own protocol, __tf_tensor__ (keras.Variable)
        return isinstance(x, (tf.Tensor, tf.Variable)) or hasattr(type(x), "__tf_tensor__")

    def asarray(self, x: Any, *, device: Any = None) -> Any:
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

    def kept_span(self, mask: Any) -> tuple[Any, Any] | None:
        # In graphs the while loop's length may depend on the data: the leading and trailing
        # steps that keep no sample (padding) are not run. XLA needs a static count. Written in
        # ops that TFLite's builtins and tf2onnx both know (no Where).
        if tf.executing_eagerly() or _compat.tf_building_for_xla():
            return None
        kept = tf.cast(tf.reduce_any(mask, axis=1), tf.int32)  # (time,): 1 where a step keeps a sample
        time_steps = tf.shape(mask, out_type=tf.int32)[0]
        first = tf.argmax(kept, output_type=tf.int32)  # the first 1 (0 if there is none)
        last = time_steps - 1 - tf.argmax(tf.reverse(kept, [0]), output_type=tf.int32)
        # None kept: the last step alone, masked (an empty TensorArray of unknown element shape cannot stack)
        none = tf.equal(tf.reduce_max(kept), 0)
        return tf.where(none, time_steps - 1, first), tf.where(none, time_steps, last + 1)

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

    def concat_time(self, xs: list[Any]) -> Any:
        return tf.concat(xs, 0)

    def checkpoints_in_loops(self) -> bool:
        # tf.recompute_grad inside a tf.while_loop fails on the variables the step reads
        # ("... is in list of internal_captures but not in internal_capture_to_output")
        return tf.executing_eagerly()

    def fold_time(self, x: Any, block: Any) -> Any:
        return tf.reshape(x, tf.concat([[-1, block], tf.shape(x)[1:]], 0))

    def unfold_time(self, x: Any) -> Any:
        return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))

    def any_over_time(self, mask: Any) -> Any:
        return tf.reduce_any(mask, axis=0)

    def false_like(self, x: Any) -> Any:
        return tf.zeros_like(x, dtype=tf.bool)

    def logical_or(self, x: Any, y: Any) -> Any:
        return tf.logical_or(x, y)

    def output_zeros(self, output: Any, like_input: Any) -> Any:
        return _zeros_like_output(output, like_input)

    # -- the loop ----------------------------------------------------------
    def masks_outputs_after_loop(self, states: list[Any]) -> bool:
        # One select over every step after the loop costs less than one in each step and a flag carried
        # (W1 at B=32, U=64: 10% less time). From 8192 elements per step, the select in the step is
        # faster on 2 cores (W1 forward at B=256 or U=256: 15-20%), not on one inter-op thread: as we
        # read it, with the list of outputs holding each state, the next step's state is written to
        # fresh memory on the loop's critical path, where the select writes the output on another core.
        sizes = [s.shape.num_elements() for s in states]
        return all(n is not None for n in sizes) and sum(sizes) < 8192  # type: ignore[operator]

    def kept_so_far(self, mask: Any) -> Any:
        return tf.math.cumsum(tf.cast(mask, tf.int32), axis=0) > 0

    def zero_unless_over_time(self, kept: Any, ys: list[Any]) -> list[Any]:
        masked = super().zero_unless_over_time
        do_not_convert = tf.autograph.experimental.do_not_convert
        # a branch: where every step keeps every sample (so far), the outputs are not copied
        return tf.cond(tf.reduce_all(kept), do_not_convert(lambda: list(ys)), do_not_convert(lambda: masked(kept, ys)))

    def runs_python_loops(self) -> bool:
        return tf.executing_eagerly()

    def scan(
        self, body: Any, carry: Any, xs: list[Any], unroll: int = 1, span: tuple[Any, Any] | None = None
    ) -> tuple[Any, list[Any]]:
        """``tf.while_loop`` over axis 0 of ``xs``, read from and written to ``TensorArray``s.

        Time may be unknown. Stacked ``ys`` have the static time size of ``xs`` where
        that is known. The loop carries the step counter, the ``ys`` arrays and ``carry``.
        With a ``span``, the loop runs over the span's slices of ``xs`` (views: no copy) and
        ``ys`` are padded with zeros to the full time (no copy where nothing is padded): the
        counter runs from 0 and writes at itself, as tf2onnx's conversion of the loop needs.
        """
        static_time = xs[0].shape[0]  # of the stacked ys
        if span is not None:
            full_time = static_time if static_time is not None else tf.shape(xs[0])[0]
            xs = [x[span[0] : span[1]] for x in xs]
        time_steps = xs[0].shape[0] if xs[0].shape[0] is not None else tf.shape(xs[0])[0]
        input_tas = [tf.TensorArray(x.dtype, size=time_steps, element_shape=x.shape[1:]).unstack(x) for x in xs]
        # The ys' dtypes and shapes, from the body applied once to the time-zero slices.
        # Nothing at run time depends on this call, so the graph prunes it.
        _, ys_spec = body(carry, [x[0] for x in xs])
        output_tas = [tf.TensorArray(y.dtype, size=time_steps, element_shape=y.shape) for y in ys_spec]

        # The body is plain TensorFlow already: AutoGraph has nothing to convert.
        @tf.autograph.experimental.do_not_convert
        def loop_body(t: Any, tas: list[Any], carry: Any) -> Any:
            new_carry, ys = body(carry, [ta.read(t) for ta in input_tas])
            # Loop variables keep their shapes: give results the (compatible, checked
            # on the first call) static shapes of what they replace.
            new_carry = tf.nest.map_structure(_with_shape_of, new_carry, carry)
            return t + 1, [ta.write(t, y) for ta, y in zip(tas, ys)], new_carry

        # XLA needs ``maximum_iterations`` to size the gradient's accumulators; elsewhere
        # the condition alone bounds the loop (one test per step, as tf-keras).
        bound = time_steps if _compat.tf_building_for_xla() else None

        @tf.autograph.experimental.do_not_convert
        def cond(t: Any, *_: Any) -> Any:
            return t < time_steps if bound is None else tf.constant(True)

        _, output_tas, carry = tf.while_loop(
            cond,
            loop_body,
            (tf.constant(0, tf.int32), output_tas, carry),
            maximum_iterations=bound,
            parallel_iterations=_PARALLEL_ITERATIONS,
        )
        ys = []
        for ta, y in zip(output_tas, ys_spec):
            stacked = ta.stack()
            if span is not None:
                stacked = _pad_time(stacked, span[0], full_time - span[1])
            stacked.set_shape([static_time, *y.shape])
            ys.append(stacked)
        return carry, ys

    def checkpoint(self, function: Any) -> Any:
        # tf.recompute_grad differentiates by its (floating) arguments and the variables read;
        # a tensor the step closes over gets no gradient through a recomputed segment
        if not tf.executing_eagerly():  # one function for every segment of the graph
            function = _compat.tf_function_not_inlined(function)

        def checkpointed(*arguments: Any) -> Any:
            leaves = tf.nest.flatten(arguments)
            floating = [i for i, leaf in enumerate(leaves) if leaf.dtype.is_floating or leaf.dtype.is_complex]

            def recomputed(*values: Any) -> Any:
                given = list(leaves)
                for i, value in zip(floating, values):
                    given[i] = value
                return function(*tf.nest.pack_sequence_as(arguments, given))

            return tf.recompute_grad(recomputed)(*(leaves[i] for i in floating))

        return checkpointed

    # -- parallel over time ----------------------------------------------------
    def jvp(self, f: Any, primals: list[Any], tangents: list[Any]) -> tuple[list[Any], list[Any]]:
        with tf.autodiff.ForwardAccumulator(primals, tangents) as accumulator:
            outputs = f(*primals)
        zero = tf.UnconnectedGradients.ZERO
        return outputs, [accumulator.jvp(o, unconnected_gradients=zero) for o in outputs]

    def while_loop(self, cond: Any, body: Any, carry: Any) -> Any:
        if tf.executing_eagerly():
            return super().while_loop(cond, body, carry)
        do_not_convert = tf.autograph.experimental.do_not_convert
        # one loop variable, the carry itself (tf.while_loop passes a tuple's items as arguments)
        (carry,) = tf.while_loop(do_not_convert(lambda c: cond(c)), do_not_convert(lambda c: (body(c),)), (carry,))
        return carry

    def cond(self, pred: Any, true_fn: Any, false_fn: Any) -> Any:
        if tf.executing_eagerly():
            return super().cond(pred, true_fn, false_fn)
        do_not_convert = tf.autograph.experimental.do_not_convert
        return tf.cond(pred, do_not_convert(true_fn), do_not_convert(false_fn))

    def on_host(self, fn: Any, *arrays: Any) -> None:
        if tf.executing_eagerly():
            fn(*(a.numpy() for a in arrays))
        elif not _compat.tf_building_for_xla():  # XLA compiles no Python callback: nothing is reported

            def call(*values: Any) -> Any:
                fn(*values)
                return np.int32(0)

            tf.numpy_function(call, list(arrays), tf.int32, stateful=True)

    def stop_gradient(self, x: Any) -> Any:
        return tf.stop_gradient(x)

    def repeat_time(self, x: Any, n: int) -> Any:
        return tf.repeat(x[None], n, axis=0)

    def max_abs(self, x: Any) -> Any:
        return tf.reduce_max(tf.concat([tf.reshape(tf.abs(x), [-1]), tf.zeros([1], x.dtype)], 0))

    def clip(self, x: Any, low: float, high: float) -> Any:
        return tf.clip_by_value(x, tf.cast(low, x.dtype), tf.cast(high, x.dtype))

    def is_finite(self, x: Any) -> Any:
        return tf.math.is_finite(x)

    def scalar(self, value: Any, like: Any) -> Any:
        return tf.constant(value, tf.bool if isinstance(value, bool) else tf.int32)

    def index_pattern(self, x: Any) -> Any:
        return tf.cast(tf.reshape(tf.range(tf.size(x)) % 4093, tf.shape(x)), x.dtype)

    def epsilon(self, x: Any) -> float:
        return float(np.finfo(x.dtype.as_numpy_dtype).eps)


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


def _pad_time(x: Any, before: Any, after: Any) -> Any:
    """``x`` ``(n, ...)`` with ``before`` steps of zeros in front and ``after`` behind. (Pad
    forwards its input where both are 0; Concat would copy it.)"""
    paddings = tf.concat([tf.stack([before, after])[None], tf.zeros([x.shape.rank - 1, 2], tf.int32)], 0)
    return tf.pad(x, paddings)


def _with_shape_of(new: Any, old: Any) -> Any:
    """``new`` (a graph tensor) with the static shape of ``old`` merged in."""
    if not isinstance(new, tf.Tensor):  # e.g. a variable handed back by the step function
        new = tf.convert_to_tensor(new)
    if new.shape != old.shape:
        new.set_shape(old.shape)
    return new


BACKEND = TensorflowBackend()
