"""One time step: the user's step function, followed by the masked update.

This is where the per-step semantics live, once for every backend:
``where(mask_t, new, previous)`` for every state leaf, and for every output leaf
``where(mask_t, output, previous_output)`` (or zeros with
``zero_output_for_mask``), the previous output being zeros before the first step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import _tree
from ._validate import check_step_result
from .backends._base import Backend


class Step:
    """The loop body shared by every backend's loop.

    ``step(states, prev_output, x_t, mask_t) -> (states, output)``, where
    ``states`` and the outputs are flat lists of leaves ``(batch, ...)``, ``x_t``
    the flat input leaves at one time step and ``mask_t`` a ``(batch,)`` bool
    array or None. ``prev_output`` None means "before the first step" (zeros).
    The first call checks what the step function returned; it records the
    output structure in ``output_spec``.
    """

    def __init__(
        self,
        backend: Backend,
        step_function: Callable[..., Any],
        constants: tuple[Any, ...],
        inputs_spec: _tree.PyTreeSpec,
        initial_states: list[Any],
        states_spec: _tree.PyTreeSpec,
        batch: int | None,
        zero_output_for_mask: bool,
    ) -> None:
        self.backend = backend
        self.step_function = step_function
        self.constants = constants
        self.batch = batch
        self.zero_output_for_mask = zero_output_for_mask
        self.pack_inputs = _tree.packer(inputs_spec)
        self.pack_states = _tree.state_packer(states_spec)
        self.flatten_states = _tree.sequence_flattener(states_spec)
        self.states_spec = states_spec
        self.initial_states = initial_states
        self.output_spec: _tree.PyTreeSpec | None = None
        self.flatten_output: Callable[[Any], list[Any]] = _tree.leaves
        self._mask_shapes: dict[int, tuple[int, ...]] = {}

    def call(self, states: list[Any], x_t: Any) -> tuple[list[Any], list[Any]]:
        """The user's step, unmasked: ``(output leaves, new state leaves)``."""
        result = self.step_function(self.pack_inputs(x_t), self.pack_states(states) + self.constants)
        if self.output_spec is None:
            self.output_spec = check_step_result(
                self.backend, result, self.initial_states, self.states_spec, self.batch
            )
            self.flatten_output = _tree.flattener(self.output_spec)
        output, new_states = result
        return self.flatten_output(output), self.flatten_states(new_states)

    def __call__(
        self, states: list[Any], prev_output: list[Any] | None, x_t: Any, mask_t: Any | None
    ) -> tuple[list[Any], list[Any]]:
        output, new_states = self.call(states, x_t)
        if mask_t is None:
            return new_states, output
        backend = self.backend
        where = backend.where
        by_rank: dict[int, Any] = {}

        def mask_for(x: Any) -> Any:
            rank = len(backend.shape(x))
            if rank not in by_rank:
                by_rank[rank] = backend.reshape(mask_t, (-1,) + (1,) * (rank - 1))
            return by_rank[rank]

        if prev_output is None or self.zero_output_for_mask:
            prev_output = [backend.zeros_like(o) for o in output]
        states = [where(mask_for(s), n, s) for n, s in zip(new_states, states)]
        output = [where(mask_for(o), o, p) for o, p in zip(output, prev_output)]
        return states, output
