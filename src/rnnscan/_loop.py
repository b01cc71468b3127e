"""The loop, written once for every backend: :class:`LoopCall`, one call's loop.

It calls the user's step on the first time step (:mod:`._step`), then runs the lean eager loop
(:mod:`._python_loop`) or a scan body of the masked semantics (:mod:`._masked`) laid out in time by
the plan (:mod:`._plan`) on the backend's scan primitive.

All arrays are time-major: inputs and masks ``(time, batch, ...)`` in processing order.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _parallel, _tree
from ._plan import Plan, scan_loop
from ._python_loop import python_loop
from ._step import Leaves, Loop, StepShape, UserStep, first_call

if TYPE_CHECKING:
    from .backends import Backend

__all__ = ["LoopCall", "Plan"]


@dataclasses.dataclass(frozen=True)
class LoopCall:
    """One call's loop, all but its arrays: the step, its static structure, and how to run it."""

    step_function: Callable[..., Any]
    constants: tuple[Any, ...]
    inputs_spec: _tree.PyTreeSpec
    states_spec: _tree.PyTreeSpec
    batch: Any
    zero_output_for_mask: bool
    return_all_outputs: bool
    unroll_fully: bool
    plan: Plan
    #: ``rnnscan._parallel.Options`` for ``parallel=True`` (Newton iterations over the whole sequence); None: the loop
    parallel: Any = None

    def __call__(
        self, backend: Backend, states: Leaves, inputs: Leaves, mask: Any | None
    ) -> tuple[Leaves, Leaves, Leaves | None, _tree.PyTreeSpec]:
        """``(states, last output, outputs or None, the output's structure)`` of the loop over
        ``inputs`` ``(time, batch, ...)`` and ``mask`` ``(time, batch)`` bool or None."""
        if self.parallel is not None:
            return backend.eagerly(_parallel.loop)(self, backend, states, inputs, mask)
        python = self.unroll_fully or backend.runs_python_loops()
        plan = self.plan if backend.remats() else dataclasses.replace(self.plan, segment=None)
        fast = python and plan.segment is None  # the lean loop reuses the first call's result
        # Elsewhere the loop computes step 0 again: the first call draws no random numbers then.
        with contextlib.nullcontext() if fast else backend.random_state_kept():
            step, shape, output, new_states = self.first_call(backend, states, [x[0] for x in inputs])
        loop = Loop(backend, step, shape, self.zero_output_for_mask, self.return_all_outputs)
        if fast:
            result = python_loop(loop, states, inputs, mask, first=(output, new_states))
        else:
            result = scan_loop(loop, states, inputs, mask, output, plan, python)
        return (*result, shape.output_spec)

    def first_call(
        self, backend: Backend, states: Leaves, x_t: Leaves, constants: tuple[Any, ...] | None = None
    ) -> tuple[UserStep, StepShape, Leaves, Leaves]:
        """:func:`._step.first_call` of this call's step (with other ``constants`` if given)."""
        return first_call(
            backend,
            self.step_function,
            constants=self.constants if constants is None else constants,
            inputs_spec=self.inputs_spec,
            states_spec=self.states_spec,
            batch=self.batch,
            states=states,
            x_t=x_t,
        )
