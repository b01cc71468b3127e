"""JAX: ``jax.lax.scan``; works under ``jax.jit``, ``jax.grad`` and ``jax.vmap``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from ._base import Backend

if TYPE_CHECKING:
    from .._step import Step


class JaxBackend(Backend):
    name = "jax"

    def owns(self, x: Any) -> bool:
        # jax.Array covers tracers; __jax_array__ is JAX's conversion protocol (keras.Variable)
        return isinstance(x, jax.Array) or hasattr(type(x), "__jax_array__")

    def asarray(self, x: Any, like: Any = None) -> Any:
        return jnp.asarray(x)

    def registered_node(self, x: Any) -> tuple[Any, Any] | None:
        if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(x)):
            return None

        def flatten(node: Any) -> tuple[list[Any], Any]:
            return jax.tree_util.tree_flatten(node, is_leaf=lambda child: child is not node)

        return flatten, lambda treedef, children: jax.tree_util.tree_unflatten(treedef, children)

    def host_values(self, x: Any) -> Any:
        return None if isinstance(x, jax.core.Tracer) else np.asarray(x)

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

    def as_index(self, x: Any) -> Any:
        return x.astype(int)  # JAX's default int: int64 with x64 enabled, else int32

    def max_length(self, lengths: Any) -> Any:
        return jnp.max(lengths, initial=0)

    def cumulative_any(self, mask: Any) -> Any:
        return jnp.cumsum(mask, axis=0, dtype=jnp.int32) > 0

    def scan(
        self, step: Step, states: list[Any], inputs: list[Any], mask: Any | None, keep_all: bool
    ) -> tuple[list[Any], list[Any], list[Any] | None]:
        # Trace the step once without computing it: the output's shape and dtype
        # (for the zeros the masked update starts from, as tf-keras does), and
        # whether every output leaf is one of the new state leaves.
        aliases = None

        def probe(states: list[Any], x_t: list[Any]) -> list[Any]:
            nonlocal aliases
            output, new_states = step.call(states, x_t)
            aliases = step.output_aliases(output, new_states)
            return output

        spec = jax.eval_shape(probe, states, [x[0] for x in inputs])
        if aliases is not None:
            return _jit(_scan_states(step, aliases, keep_all))(states, inputs, mask)
        first_output = [jnp.zeros(o.shape, o.dtype) for o in spec]

        def body(carry: Any, x: Any) -> Any:
            states, prev_output = carry
            x_t, mask_t = x
            states, output = step(states, prev_output, x_t, mask_t)
            return (states, output), (output if keep_all else None)

        def run(states: Any, inputs: Any, mask: Any) -> Any:
            (states, last), outputs = jax.lax.scan(body, (states, first_output), (inputs, mask))
            return states, last, outputs if keep_all else None

        return _jit(run)(states, inputs, mask)


def _scan_states(step: Step, aliases: list[int], keep_all: bool) -> Any:
    """A scan carrying the states alone, for a step whose outputs are states (``return h, [h]``).

    The outputs are then read off the masked states after the loop
    (:meth:`Step.outputs_from_states`): no previous output is carried and no
    second ``where`` runs per step.
    """

    def body(states: list[Any], x: Any) -> Any:
        x_t, mask_t = x
        output, new_states = step.call(states, x_t)
        if step.output_aliases(output, new_states) != aliases:
            raise ValueError("rnnscan.rnn: `step_function` must trace to the same program at every call.")
        states = new_states if mask_t is None else step.mask_states(states, new_states, mask_t)
        return states, ([states[i] for i in aliases] if keep_all else None)

    def run(states: list[Any], inputs: list[Any], mask: Any) -> Any:
        states, state_outputs = jax.lax.scan(body, states, (inputs, mask))
        last, outputs = step.outputs_from_states(states, state_outputs, aliases, mask)
        return states, last, outputs

    return run


def _jit(run: Any) -> Any:
    # A fresh jit per call, inlined when already traced. Called eagerly, a bare
    # lax.scan is compiled into JAX's process-wide primitive cache, which keeps
    # up to 4096 executables (about 2 MB each) alive for good: a new step
    # function per call leaked memory at every call. The jit's executable is
    # freed with `run`.
    return jax.jit(run)


BACKEND = JaxBackend()
