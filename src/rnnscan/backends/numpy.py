"""NumPy: the lean Python loop (forward only: NumPy has no autodiff, so remat has no effect)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._base import Backend


class NumpyBackend(Backend):
    name = "numpy"

    def owns(self, x: Any) -> bool:
        return isinstance(x, np.ndarray)

    def asarray(self, x: Any, *, device: Any = None) -> Any:
        return np.asarray(x)

    def is_bool(self, x: Any) -> bool:
        return x.dtype == np.bool_

    def is_integer(self, x: Any) -> bool:
        return np.issubdtype(x.dtype, np.integer)

    def is_numeric(self, x: Any) -> bool:
        return np.issubdtype(x.dtype, np.number)

    def host_values(self, x: Any) -> Any:
        return np.asarray(x)

    def swap_batch_time(self, x: Any) -> Any:
        return np.swapaxes(x, 0, 1)

    def flip_time(self, x: Any) -> Any:
        return x[::-1]

    def reshape(self, x: Any, shape: Sequence[int]) -> Any:
        return x.reshape(shape)

    def expand_front(self, x: Any) -> Any:
        return x[None]

    def concat_time(self, xs: list[Any]) -> Any:
        return np.concatenate(xs)

    def any_over_time(self, mask: Any) -> Any:
        return mask.any(axis=0)

    def false_like(self, x: Any) -> Any:
        return np.zeros(x.shape, bool)

    def remats(self) -> bool:
        return False  # no autodiff: remat has no effect

    def where(self, condition: Any, x: Any, y: Any) -> Any:
        return np.where(condition, x, y)

    def zeros_like(self, x: Any) -> Any:
        return np.zeros_like(x)

    def stack(self, xs: Sequence[Any]) -> Any:
        return np.stack(xs)

    def unstack(self, x: Any) -> Sequence[Any]:
        return list(x)

    def arange(self, n: Any, like: Any) -> Any:
        return np.arange(n, dtype=like.dtype)

    def as_index(self, x: Any) -> Any:
        return x.astype(np.int64)

    def max_length(self, lengths: Any) -> Any:
        return np.max(lengths, initial=0)


BACKEND = NumpyBackend()
