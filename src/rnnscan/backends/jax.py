"""JAX: ``jax.lax.scan``; works under ``jax.jit``, ``jax.grad`` and ``jax.vmap``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from ._base import Backend

if TYPE_CHECKING:
    from .._step import Step


class JaxBackend(Backend):
    name = "jax"

    def owns(self, x: Any) -> bool:
        return isinstance(x, jax.Array)

    def asarray(self, x: Any, like: Any = None) -> Any:
        return jnp.asarray(x)

    def is_bool(self, x: Any) -> bool:
        return x.dtype == jnp.bool_

    def is_integer(self, x: Any) -> bool:
        return jnp.issubdtype(x.dtype, jnp.integer)

    def is_numeric(self, x: Any) -> bool:
        return jnp.issubdtype(x.dtype, jnp.number)

    def swap_batch_time(self, x: Any) -> Any:
        return jnp.swapaxes(x, 0, 1)

    def flip_time(self, x: Any) -> Any:
        return jnp.flip(x, 0)

    def reshape(self, x: Any, shape: Sequence[int]) -> Any:
        return jnp.reshape(x, shape)

    def expand_front(self, x: Any) -> Any:
        return x[None]

    def where(self, condition: Any, x: Any, y: Any) -> Any:
        return jnp.where(condition, x, y)

    def zeros_like(self, x: Any) -> Any:
        return jnp.zeros_like(x)

    def stack(self, xs: Sequence[Any]) -> Any:
        return jnp.stack(xs)

    def unstack(self, x: Any) -> Sequence[Any]:
        return [x[t] for t in range(x.shape[0])]

    def arange(self, n: Any, like: Any) -> Any:
        return jnp.arange(n, dtype=like.dtype)

    def max(self, x: Any) -> Any:
        return jnp.max(x)

    def scan(
        self, step: Step, states: list[Any], inputs: list[Any], mask: Any | None, keep_all: bool
    ) -> tuple[list[Any], list[Any], list[Any] | None]:
        # The output's shape and dtype, for the zeros the masked update starts
        # from, by tracing the step once without computing it (as tf-keras does).
        spec = jax.eval_shape(lambda s, x: step.call(s, x)[0], states, [x[0] for x in inputs])
        first_output = [jnp.zeros(o.shape, o.dtype) for o in spec]

        def body(carry: Any, x: Any) -> Any:
            states, prev_output = carry
            x_t, mask_t = x
            states, output = step(states, prev_output, x_t, mask_t)
            return (states, output), (output if keep_all else None)

        def run(states: Any, first_output: Any, inputs: Any, mask: Any) -> Any:
            return jax.lax.scan(body, (states, first_output), (inputs, mask))

        # A fresh jit per call, inlined when already traced. Called eagerly, a bare
        # lax.scan is compiled into JAX's process-wide primitive cache, which keeps
        # up to 4096 executables (about 2 MB each) alive for good: a new step
        # function per call leaked memory at every call. The jit's executable is
        # freed with `run`.
        (states, last), outputs = jax.jit(run)(states, first_output, inputs, mask)
        return states, last, outputs if keep_all else None


BACKEND = JaxBackend()
