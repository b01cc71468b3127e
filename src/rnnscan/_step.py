"""The user's step on flat leaves, and its first call.

:class:`UserStep` is the step function on flat leaves; :func:`first_call` calls it on the first
time step, checks what it returned (``rnnscan._validate``) and says what it is
(:class:`StepShape`): the output's structure, the leaves' ranks, and whether the outputs are the
new states themselves. Every loop (:mod:`._python_loop`, :mod:`._plan`, the JAX backend's
compiled loop) starts here.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import _tree
from . import _validate as v

if TYPE_CHECKING:
    from .backends import Backend

Leaves = list  # a flat list of arrays


@dataclasses.dataclass(frozen=True)
class UserStep:
    """The user's step on flat leaves: ``(state leaves, input leaves at t) -> (output leaves, new state leaves)``."""

    step_function: Callable[..., Any]
    constants: tuple[Any, ...]
    rebuild_inputs: Callable[[list[Any]], Any]
    rebuild_states: Callable[[list[Any]], tuple[Any, ...]]
    read_output: Callable[[Any], list[Any]]
    read_states: Callable[[Any], list[Any]]
    #: the new state leaves cast up to the states' own dtypes (under torch's autocast), or None
    cast_states: Callable[[Leaves], Leaves] | None = None

    def __call__(self, states: Leaves, x_t: Sequence[Any]) -> tuple[Leaves, Leaves]:
        output, new_states = self.step_function(self.rebuild_inputs(x_t), self.rebuild_states(states) + self.constants)
        new_states = self.read_states(new_states)
        return self.read_output(output), new_states if self.cast_states is None else self.cast_states(new_states)

    def fast(self) -> Callable[[Leaves, Sequence[Any]], tuple[Leaves, Leaves]]:
        """The same function, written out for the common structures (one input array, flat
        states, one output array): the Python loop calls it at every step."""
        f, constants = self.step_function, self.constants
        readers = (self.rebuild_inputs, self.rebuild_states, self.read_output, self.read_states)
        if self.cast_states is not None or readers != (_tree.only_leaf, tuple, _tree.as_one_leaf, list):
            return self

        def call(states: Leaves, x_t: Sequence[Any]) -> tuple[Leaves, Leaves]:
            output, new_states = f(x_t[0], (*states, *constants))
            return [output], list(new_states)

        return call

    def constant_arrays(self, backend: Backend) -> Leaves:
        """The constants' array leaves (Python numbers among them are not arrays)."""
        return [c for c in _tree.leaves(self.constants) if backend.owns(c)]

    def with_constant_arrays(self, backend: Backend, arrays: Leaves) -> UserStep:
        """This step with other arrays for its constants' array leaves."""
        leaves, spec = _tree.flatten(self.constants)
        given = iter(arrays)
        leaves = [next(given) if backend.owns(c) else c for c in leaves]
        return dataclasses.replace(self, constants=tuple(_tree.unflatten(spec, leaves)))


@dataclasses.dataclass(frozen=True)
class StepShape:
    """What the first call showed: the output's structure, each output and state leaf's
    rank, and ``aliases``, for each output leaf the index of the new state leaf it *is*
    (None unless every output leaf is one)."""

    output_spec: _tree.PyTreeSpec
    output_ranks: tuple[int, ...]
    state_ranks: tuple[int, ...]
    aliases: tuple[int, ...] | None


def first_call(
    backend: Backend,
    step_function: Callable[..., Any],
    *,
    constants: tuple[Any, ...],
    inputs_spec: _tree.PyTreeSpec,
    states_spec: _tree.PyTreeSpec,
    batch: Any,
    states: Leaves,
    x_t: Leaves,
) -> tuple[UserStep, StepShape, Leaves, Leaves]:
    """Call the step on the first time step and check its result: ``(the step on flat
    leaves, its shape, the first output leaves, the first new state leaves)``."""
    rebuild_states = _states_rebuilder(states_spec)
    initial = _tree.unflatten(states_spec, states)
    result = step_function(_tree.rebuilder(inputs_spec)(x_t), rebuild_states(states) + constants)
    output_spec = v.check_step_output(backend, result, batch)
    casts = v.check_step_states(backend, result[1], initial)
    step = UserStep(
        step_function,
        constants,
        _tree.rebuilder(inputs_spec),
        rebuild_states,
        _tree.leaf_reader(output_spec),
        _states_reader(states_spec, result[1]),
        None if casts is None else functools.partial(_cast_states, backend, casts),
    )
    output, new_states = step.read_output(result[0]), step.read_states(result[1])
    if step.cast_states is not None:
        new_states = step.cast_states(new_states)
    shape = StepShape(
        output_spec,
        tuple(len(backend.shape(o)) for o in output),
        tuple(len(backend.shape(s)) for s in states),
        output_aliases(output, new_states),
    )
    return step, shape, output, new_states


def _cast_states(backend: Backend, dtypes: tuple[Any, ...], new_states: Leaves) -> Leaves:
    return [s if dtype is None else backend.astype(s, dtype) for s, dtype in zip(new_states, dtypes)]


def output_aliases(output: Leaves, new_states: Leaves) -> tuple[int, ...] | None:
    """For each output leaf, the index of the new state leaf it *is*; None if one is not a state."""
    aliases = []
    for o in output:
        index = next((i for i, n in enumerate(new_states) if n is o), None)
        if index is None:
            return None
        aliases.append(index)
    return tuple(aliases)


def check_same_aliases(shape: StepShape, output: Leaves, new_states: Leaves) -> None:
    """A traced body assumes the first call's aliasing at every step: refuse a step that changes it."""
    if output_aliases(output, new_states) != shape.aliases:
        raise ValueError(
            "rnnscan.rnn: `step_function` must return its new states as its outputs at every step "
            "when it does at the first (and not otherwise): the loop is traced once."
        )


def _states_rebuilder(states_spec: _tree.PyTreeSpec) -> Callable[[list[Any]], tuple[Any, ...]]:
    """The states as the tuple the step function receives."""
    if all(child.is_leaf() for child in states_spec.children()):
        return tuple
    rebuild = _tree.rebuilder(states_spec)
    return lambda leaves: tuple(rebuild(leaves))


def _states_reader(states_spec: _tree.PyTreeSpec, new_states: Any) -> Callable[[Any], list[Any]]:
    """The leaves of the step's ``new_states``, which have the states' structure up to
    container types (checked): the cheapest function that does the job."""
    children = states_spec.children()
    if all(child.is_leaf() for child in children):
        return list
    if all(_tree.flatten(new)[1] == child for new, child in zip(new_states, children)):
        return lambda states: [leaf for state in states for leaf in _tree.leaves(state)]
    return lambda states: _tree.leaves_like(states_spec, states)


@dataclasses.dataclass(frozen=True)
class Loop:
    """One call's loop, all but its arrays: the backend, the step and what its first call showed,
    and the output flags (``keep_all``: every step's output is returned, not the last alone)."""

    backend: Backend
    step: UserStep
    shape: StepShape
    zero_output_for_mask: bool
    keep_all: bool
