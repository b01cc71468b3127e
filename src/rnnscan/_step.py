"""One time step: the user's step function, followed by the masked update.

This is where the per-step semantics live, once for every backend:
``where(mask_t, new, previous)`` for every state leaf, and for every output leaf
``where(mask_t, output, previous_output)`` (or zeros with
``zero_output_for_mask``), the previous output being zeros before the first step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
        self.pack_inputs = _tree.rebuilder(inputs_spec)
        children = states_spec.children()
        if all(child.is_leaf() for child in children):
            self.pack_states: Callable[[list[Any]], tuple[Any, ...]] = tuple
        else:
            self.pack_states = lambda leaves: tuple(states_spec.unflatten(leaves))
        self.flatten_states: Callable[[Any], list[Any]] = list
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
            self.flatten_output = _tree.leaf_reader(self.output_spec)
            self.flatten_states = _state_reader(self.states_spec, result[1])
        output, new_states = result
        return self.flatten_output(output), self.flatten_states(new_states)

    def __call__(
        self, states: list[Any], prev_output: list[Any] | None, x_t: Any, mask_t: Any | None
    ) -> tuple[list[Any], list[Any]]:
        """One step. ``mask_t``: ``(batch,)`` or ``(batch, 1)`` bool, or None where no sample is masked."""
        output, new_states = self.call(states, x_t)
        if mask_t is None:
            return new_states, output
        by_rank: dict[int, Any] = {}
        return self.update(
            states,
            prev_output,
            new_states,
            output,
            [self.mask_for(mask_t, s, by_rank) for s in states],
            [self.mask_for(mask_t, o, by_rank) for o in output],
        )

    def mask_for(self, mask_t: Any, x: Any, by_rank: dict[int, Any]) -> Any:
        """``mask_t`` shaped ``(batch, 1, ..., 1)`` to broadcast against ``x``, once per rank."""
        rank = len(self.backend.shape(x))
        if rank not in by_rank:
            same = len(self.backend.shape(mask_t)) == rank
            by_rank[rank] = mask_t if same else self.backend.reshape(mask_t, (-1,) + (1,) * (rank - 1))
        return by_rank[rank]

    @staticmethod
    def output_aliases(output: list[Any], new_states: list[Any]) -> list[int] | None:
        """For each output leaf, the index of the new state leaf it *is*; None if one is not a state."""
        aliases = []
        for o in output:
            index = next((i for i, n in enumerate(new_states) if n is o), None)
            if index is None:
                return None
            aliases.append(index)
        return aliases

    def outputs_from_states(
        self, states: list[Any], state_outputs: list[Any] | None, aliases: list[int], mask: Any | None
    ) -> tuple[list[Any], list[Any] | None]:
        """``(last output, outputs)`` of a loop that kept only the masked states, when every
        output leaf ``j`` is the new state leaf ``aliases[j]`` at every step.

        ``state_outputs``: that state's masked value at every step ``(time, batch, ...)``
        (None unless all outputs are wanted); ``mask``: ``(time, batch)`` bool or None.
        A masked output repeats the previous output, which is the state's value once
        some step has been kept and zeros before (with ``zero_output_for_mask``:
        zeros at every masked step). So the output is the masked state where
        ``keep`` holds, zeros elsewhere, with ``keep`` the mask itself
        (``zero_output_for_mask``) or "some step kept so far".
        """
        last = [states[i] for i in aliases]
        if mask is None:
            return last, state_outputs
        backend = self.backend
        keep = mask if self.zero_output_for_mask else backend.cumulative_any(mask)

        def zero_where_dropped(keep: Any, x: Any) -> Any:
            shape = backend.shape(keep) + (1,) * (len(backend.shape(x)) - len(backend.shape(keep)))
            return backend.where(backend.reshape(keep, shape), x, backend.zeros_like(x))

        last = [zero_where_dropped(keep[-1], x) for x in last]
        if state_outputs is not None:
            state_outputs = [zero_where_dropped(keep, y) for y in state_outputs]
        return last, state_outputs

    def mask_states(self, states: list[Any], new_states: list[Any], mask_t: Any) -> list[Any]:
        """``where(mask_t, new, previous)`` for every state leaf."""
        where, by_rank = self.backend.where, {}
        return [where(self.mask_for(mask_t, s, by_rank), n, s) for n, s in zip(new_states, states)]

    def update(
        self,
        states: list[Any],
        prev_output: list[Any] | None,
        new_states: list[Any],
        output: list[Any],
        state_masks: Sequence[Any],
        output_masks: Sequence[Any],
    ) -> tuple[list[Any], list[Any]]:
        """The masked update of one step, given the step function's ``output`` and ``new_states``.

        ``state_masks`` and ``output_masks`` hold one bool mask per leaf, already
        shaped ``(batch, 1, ..., 1)`` to broadcast against it.

        An output leaf that *is* a new state leaf (``return h, [h]``) whose previous
        output *is* that state's previous value gets the masked state itself:
        ``where(m, h, prev) == where(m, h, state)`` then, one ``where`` saved.
        """
        where = self.backend.where
        if prev_output is None or self.zero_output_for_mask:
            prev_output = [self.backend.zeros_like(o) for o in output]
        masked_states = [where(m, n, s) for m, n, s in zip(state_masks, new_states, states)]
        masked_output = []
        for m, o, p in zip(output_masks, output, prev_output):
            for new, old, masked in zip(new_states, states, masked_states):
                if o is new and p is old:
                    masked_output.append(masked)
                    break
            else:
                masked_output.append(where(m, o, p))
        return masked_states, masked_output


def _state_reader(states_spec: _tree.PyTreeSpec, new_states: Any) -> Callable[[Any], list[Any]]:
    """A function returning the leaves of the step's ``new_states``, which have the states'
    structure up to container types (checked): the cheapest that does the job."""
    children = states_spec.children()
    if all(child.is_leaf() for child in children):
        return list
    if all(_tree.flatten(new)[1] == child for new, child in zip(new_states, children)):
        return lambda states: [leaf for state in states for leaf in _tree.leaves(state)]
    return lambda states: _tree.leaves_like(states_spec, states)
