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

    # -- parallel over time ----------------------------------------------------
    differentiable = False

    def jvp(self, f: Any, primals: list[Any], tangents: list[Any]) -> tuple[list[Any], list[Any]]:
        """A forward finite difference (NumPy has no autodiff): ``(f(p + d t) - f(p)) / d``,
        ``d = sqrt(eps) * max(1, max |p|)``. The parallel loop checks its residual on the
        true step, so an inexact Jacobian costs iterations, never exactness."""
        outputs = f(*primals)
        scale = max([1.0, *(float(np.max(np.abs(p), initial=0.0)) for p in primals)])
        delta = np.sqrt(self.epsilon(primals[0])) * scale
        shifted = f(*(p + (delta * t).astype(p.dtype) for p, t in zip(primals, tangents)))
        return outputs, [((s - o) / delta).astype(o.dtype) for s, o in zip(shifted, outputs)]

    def repeat_time(self, x: Any, n: int) -> Any:
        return np.broadcast_to(x, (n, *x.shape))

    def max_abs(self, x: Any) -> Any:
        return np.max(np.abs(x), initial=0.0)

    def clip(self, x: Any, low: float, high: float) -> Any:
        return np.clip(x, low, high)

    def is_finite(self, x: Any) -> Any:
        return np.isfinite(x)

    def index_pattern(self, x: Any) -> Any:
        return (np.arange(x.size) % 4093).reshape(x.shape).astype(x.dtype)


BACKEND = NumpyBackend()
