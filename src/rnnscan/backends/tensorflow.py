"""TensorFlow: an eager Python loop; ``tf.while_loop`` with ``TensorArray``s in graphs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from ._base import Backend


class TensorflowBackend(Backend):
    name = "tensorflow"

    def owns(self, x: Any) -> bool:
        return isinstance(x, (tf.Tensor, tf.Variable))

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

    def swap_batch_time(self, x: Any) -> Any:
        return tf.transpose(x, [1, 0, *range(2, x.shape.rank)])

    def flip_time(self, x: Any) -> Any:
        return tf.reverse(x, [0])

    def reshape(self, x: Any, shape: Sequence[int]) -> Any:
        return tf.reshape(x, shape)

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

    def max(self, x: Any) -> Any:
        return tf.reduce_max(x)

    def time_steps(self, x: Any) -> Any:
        static = x.shape[0]
        return static if static is not None else tf.shape(x)[0]


BACKEND = TensorflowBackend()
