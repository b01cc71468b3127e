"""The loop, written once for every backend.

* :class:`UserStep` is the user's step function on flat leaves; :func:`first_call`
  calls it on the first time step, checks what it returned and says what it is
  (:class:`StepShape`), explicitly.
* :func:`masked_update` is the per-step semantics: ``where(mask_t, new, previous)``
  for every state leaf, and for every output leaf ``where(mask_t, output, previous
  output)`` (or zeros with ``zero_output_for_mask``), zeros before the first step.
* Two scan bodies carry it out: :func:`general_body` carries the previous output;
  :func:`states_body`, for a step whose outputs are its states (``return h, [h]``),
  carries the states and a ``(batch, 1)`` flag instead.
* :func:`python_loop` is the lean eager loop (NumPy, eager PyTorch and TensorFlow,
  ``unroll=True``); :func:`scan_loop` runs a body on a backend's scan primitive,
  in blocks where the :class:`Plan` says so (``unroll=k``, ``remat``).

All arrays are time-major: inputs and masks ``(time, batch, ...)`` in processing order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from . import _tree
from . import _validate as v

if TYPE_CHECKING:
    from .backends import Backend

Leaves = list  # a flat list of arrays
Body = Callable[[Any, list[Any]], tuple[Any, list[Any]]]

#: time steps unstacked at once by the Python loops: bounds the per-step views alive at a time
UNSTACK_CHUNK = 1024


@dataclasses.dataclass(frozen=True)
class Plan:
    """How the loop is laid out in time, the same on every backend.

    ``unroll``: steps per iteration of the backend's loop (1: none). ``segment``:
    with remat, the steps of each segment whose residuals the backward pass
    recomputes from the carry saved at its start (None: no remat).
    """

    unroll: int = 1
    segment: int | None = None


@dataclasses.dataclass(frozen=True)
class UserStep:
    """The user's step on flat leaves: ``(state leaves, input leaves at t) -> (output leaves, new state leaves)``."""

    step_function: Callable[..., Any]
    constants: tuple[Any, ...]
    rebuild_inputs: Callable[[list[Any]], Any]
    rebuild_states: Callable[[list[Any]], tuple[Any, ...]]
    read_output: Callable[[Any], list[Any]]
    read_states: Callable[[Any], list[Any]]

    def __call__(self, states: Leaves, x_t: Sequence[Any]) -> tuple[Leaves, Leaves]:
        output, new_states = self.step_function(self.rebuild_inputs(x_t), self.rebuild_states(states) + self.constants)
        return self.read_output(output), self.read_states(new_states)

    def fast(self) -> Callable[[Leaves, Sequence[Any]], tuple[Leaves, Leaves]]:
        """The same function, written out for the common structures (one input array, flat
        states, one output array): the Python loop calls it at every step."""
        f, constants = self.step_function, self.constants
        plain = (self.rebuild_inputs, self.rebuild_states, self.read_output, self.read_states) == (
            _tree.only_leaf,
            tuple,
            _tree.as_one_leaf,
            list,
        )
        if not plain:
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
            from . import _parallel  # (it imports this module)

            return _parallel.loop(self, backend, states, inputs, mask)
        python = self.unroll_fully or backend.runs_python_loops()
        plan = self.plan if backend.remats() else dataclasses.replace(self.plan, segment=None)
        fast = python and plan.segment is None  # the lean loop reuses the first call's result
        # Elsewhere the loop computes step 0 again: the first call draws no random numbers then.
        with contextlib.nullcontext() if fast else backend.random_state_kept():
            step, shape, output, new_states = first_call(
                backend,
                self.step_function,
                constants=self.constants,
                inputs_spec=self.inputs_spec,
                states_spec=self.states_spec,
                batch=self.batch,
                states=states,
                x_t=[x[0] for x in inputs],
            )
        flags = dict(zero_output_for_mask=self.zero_output_for_mask, keep_all=self.return_all_outputs)
        if fast:
            result = python_loop(
                backend, step, shape, states=states, inputs=inputs, mask=mask, first=(output, new_states), **flags
            )
        else:
            result = scan_loop(
                backend,
                step,
                shape,
                states=states,
                inputs=inputs,
                mask=mask,
                first_output=output,
                plan=plan,
                python=python,
                **flags,
            )
        return (*result, shape.output_spec)


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
    v.check_step_states(backend, result[1], initial)
    step = UserStep(
        step_function,
        constants,
        _tree.rebuilder(inputs_spec),
        rebuild_states,
        _tree.leaf_reader(output_spec),
        _states_reader(states_spec, result[1]),
    )
    output, new_states = step.read_output(result[0]), step.read_states(result[1])
    shape = StepShape(
        output_spec,
        tuple(len(backend.shape(o)) for o in output),
        tuple(len(backend.shape(s)) for s in states),
        output_aliases(output, new_states),
    )
    return step, shape, output, new_states


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
    return lambda leaves: tuple(states_spec.unflatten(leaves))


def _states_reader(states_spec: _tree.PyTreeSpec, new_states: Any) -> Callable[[Any], list[Any]]:
    """The leaves of the step's ``new_states``, which have the states' structure up to
    container types (checked): the cheapest function that does the job."""
    children = states_spec.children()
    if all(child.is_leaf() for child in children):
        return list
    if all(_tree.flatten(new)[1] == child for new, child in zip(new_states, children)):
        return lambda states: [leaf for state in states for leaf in _tree.leaves(state)]
    return lambda states: _tree.leaves_like(states_spec, states)


# -- masks ----------------------------------------------------------------------------


def shape_masks(mask: Any, ranks: Sequence[int]) -> dict[int, Any]:
    """The ``(time, batch)`` mask shaped ``(time, batch, 1, ..., 1)`` once for each leaf rank,
    so that its slice at a step broadcasts against a ``(batch, ...)`` leaf of that rank."""
    return {rank: mask[(..., *(None,) * (rank - 1))] for rank in sorted(set(ranks))}


def masked_update(
    backend: Backend,
    states: Leaves,
    prev_output: Leaves | None,
    new_states: Leaves,
    output: Leaves,
    state_masks: Sequence[Any],
    output_masks: Sequence[Any],
    *,
    zero_output_for_mask: bool,
    zeros: Leaves | None = None,
) -> tuple[Leaves, Leaves]:
    """The masked update of one step: ``(states, output)``.

    Each mask is ``(batch, 1, ..., 1)`` bool, shaped for its leaf. ``prev_output`` None
    means zeros (``zeros``, where the caller has them already: zeros like the output
    leaves). An output leaf that *is* a new state leaf (``return h, [h]``) whose
    previous output *is* that state's previous value gets the masked state itself:
    ``where(m, h, prev) == where(m, h, state)`` then, one ``where`` saved (this holds
    in the Python loop, where the objects are the same ones from step to step).
    """
    where = backend.where
    if prev_output is None or zero_output_for_mask:
        prev_output = zeros if zeros is not None else [backend.zeros_like(o) for o in output]
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


# -- the bodies -----------------------------------------------------------------------


def general_body(
    backend: Backend, step: UserStep, shape: StepShape, *, n_inputs: int, zero_output_for_mask: bool, keep_all: bool
) -> Body:
    """``body((states, prev_output), xs_t) -> ((states, output), ys_t)``.

    ``xs_t``: the input leaves at a step, then the masks (one per rank, see
    :func:`shape_masks`) if there is a mask; ``ys_t`` the output leaves (empty unless
    ``keep_all``).
    """
    ranks = sorted(set(shape.state_ranks + shape.output_ranks))

    def body(carry: Any, xs_t: list[Any]) -> Any:
        states, prev_output = carry
        output, new_states = step(states, xs_t[:n_inputs])
        if len(xs_t) == n_inputs:
            states, output = new_states, output
        else:
            masks = dict(zip(ranks, xs_t[n_inputs:]))
            states, output = masked_update(
                backend,
                states,
                prev_output,
                new_states,
                output,
                [masks[r] for r in shape.state_ranks],
                [masks[r] for r in shape.output_ranks],
                zero_output_for_mask=zero_output_for_mask,
            )
        return (states, output), (list(output) if keep_all else [])

    return body


def states_body(
    backend: Backend, step: UserStep, shape: StepShape, *, n_inputs: int, zero_output_for_mask: bool, keep_all: bool
) -> Body:
    """For a step whose outputs are its states: ``body((states, kept), xs_t) -> ((states, kept), ys_t)``.

    ``kept``, ``[(batch, 1) bool]``, says whether the output is the state or zeros: with
    ``zero_output_for_mask``, whether this step was kept; else whether any step has
    been kept so far (a masked step's output repeats the previous output, which is the
    state once a step has been kept, zeros before). No previous output is carried, and
    no pass over all outputs is needed after the loop. ``kept`` is ``[]`` without a mask,
    and without ``keep_all`` (the last output's flag is read off the mask after the loop).
    """
    assert shape.aliases is not None
    aliases = shape.aliases
    ranks = sorted(set(shape.state_ranks + shape.output_ranks))

    def body(carry: Any, xs_t: list[Any]) -> Any:
        states, kept = carry
        output, new_states = step(states, xs_t[:n_inputs])
        check_same_aliases(shape, output, new_states)
        if len(xs_t) == n_inputs:
            return (new_states, kept), ([new_states[i] for i in aliases] if keep_all else [])
        masks = dict(zip(ranks, xs_t[n_inputs:]))
        states = [backend.where(masks[r], n, s) for r, n, s in zip(shape.state_ranks, new_states, states)]
        if not keep_all:
            return (states, kept), []
        mask_t = masks[2] if 2 in masks else backend.reshape(masks[ranks[0]], (-1, 1))
        kept = [mask_t if zero_output_for_mask else backend.logical_or(kept[0], mask_t)]
        return (states, kept), [zero_unless(backend, kept[0], states[i]) for i in aliases]

    return body


def zero_unless(backend: Backend, kept: Any, x: Any) -> Any:
    """``x`` where ``kept`` ``(batch, 1)`` holds, zeros elsewhere."""
    rank = len(backend.shape(x))
    if rank != 2:
        kept = backend.reshape(kept, (-1,) + (1,) * (rank - 1))
    return backend.where(kept, x, backend.zeros_like(x))


# -- running a body -------------------------------------------------------------------


def scan_loop(
    backend: Backend,
    step: UserStep,
    shape: StepShape,
    *,
    states: Leaves,
    inputs: Leaves,
    mask: Any | None,
    first_output: Leaves,
    zero_output_for_mask: bool,
    keep_all: bool,
    plan: Plan,
    python: bool = False,
) -> tuple[Leaves, Leaves, Leaves | None]:
    """Run the fitting body over time on the backend's scan primitive (``python``: the
    Python loop's), laid out by ``plan``: ``(states, last output, outputs or None)``."""
    n_inputs = len(inputs)
    xs = list(inputs)
    if mask is not None:
        xs += list(shape_masks(mask, shape.state_ranks + shape.output_ranks).values())
    flags = dict(n_inputs=n_inputs, zero_output_for_mask=zero_output_for_mask, keep_all=keep_all)
    if keep_all and not backend.scans_states_alone:
        shape = dataclasses.replace(shape, aliases=None)  # the general body, carrying the previous output
    make_body = states_body if shape.aliases is not None else general_body

    def body_of(step: UserStep) -> Body:
        return make_body(backend, step, shape, **flags)

    if shape.aliases is not None:
        kept = [] if mask is None or not keep_all else [backend.false_like(backend.reshape(mask[0], (-1, 1)))]
        carry: Any = (list(states), kept)
    else:
        carry = (list(states), [backend.output_zeros(o, inputs[0]) for o in first_output])
    python = python or backend.runs_python_loops()
    primitive = functools.partial(python_scan, backend) if python else backend.scan
    one_loop = plan.segment is None and plan.unroll == 1
    span = backend.kept_span(mask) if mask is not None and one_loop and not python else None
    if span is None:
        carry, ys = _scan_in_blocks(backend, primitive, body_of, step, carry, xs, plan, python=python)
    else:  # only the steps from the first that keeps a sample to the last
        start, stop = span
        carry, ys = primitive(body_of(step), carry, [x[start:stop] for x in xs])
    states = carry[0]
    if shape.aliases is None:
        last = carry[1]
        if span is not None and zero_output_for_mask:  # the last step may lie past the span
            last = [zero_unless(backend, backend.reshape(mask[-1], (-1, 1)), x) for x in last]
    else:
        last = [states[i] for i in shape.aliases]
        if mask is not None:
            if keep_all and span is None:
                kept = carry[1][0]
            else:  # the last step kept (zero_output_for_mask), or any step kept
                kept = mask[-1] if zero_output_for_mask else backend.any_over_time(mask)
                kept = backend.reshape(kept, (-1, 1))
            last = [zero_unless(backend, kept, x) for x in last]
    if span is not None and keep_all:
        ys = _spread_over_time(backend, ys, span, last, like=xs[0], zero_output_for_mask=zero_output_for_mask)
    return states, last, ys if keep_all else None


def _spread_over_time(
    backend: Backend, ys: list[Any], span: tuple[Any, Any], last: list[Any], like: Any, *, zero_output_for_mask: bool
) -> list[Any]:
    """The outputs of the steps of ``span`` spread over every step: zeros before the first
    step that keeps a sample (the output before any kept step), and after the last the
    output of a masked step, zeros with ``zero_output_for_mask`` and the last output else."""
    start, stop = span
    spread = []
    for y, final in zip(ys, last):
        zeros = backend.zeros_like(final)
        spread.append(backend.spread_over_time(y, start, stop, zeros, zeros if zero_output_for_mask else final, like))
    return spread


def _scan_in_blocks(
    backend: Backend,
    primitive: Callable[..., Any],
    body_of: Callable[[UserStep], Body],
    step: UserStep,
    carry: Any,
    xs: list[Any],
    plan: Plan,
    python: bool,
) -> tuple[Any, list[Any]]:
    """``primitive(body, carry, xs)``, in blocks of steps where ``plan`` asks for them.

    With remat, each segment of ``plan.segment`` steps is one checkpointed inner scan;
    with ``plan.unroll = k``, each iteration runs ``k`` steps. The steps that do not fill
    a block run after the blocks, one at a time (checkpointed together with remat).
    A checkpointed segment takes the constants' arrays as arguments, so that their
    gradients flow where a framework differentiates a segment by its arguments alone.
    """
    body = body_of(step)
    unroll = 1 if python or backend.unrolls_natively else plan.unroll
    if plan.segment is None and unroll == 1:
        return primitive(body, carry, xs, unroll=plan.unroll)
    time_steps = backend.time_steps(xs[0])
    if plan.segment is not None:
        block = plan.segment
        constants = step.constant_arrays(backend)

        def segment(carry: Any, xs_block: list[Any], constants: list[Any]) -> Any:
            body = body_of(step.with_constant_arrays(backend, constants))
            return primitive(body, carry, xs_block, unroll=plan.unroll)

        checkpointed = backend.checkpoint(segment)

        def inner(carry: Any, xs_block: list[Any]) -> Any:
            return checkpointed(carry, xs_block, constants)

    else:
        block = unroll

        def inner(carry: Any, xs_block: list[Any]) -> Any:
            return _unrolled(backend, body, carry, xs_block, block)

    if plan.segment is not None and not backend.checkpoints_in_loops():
        return _segments_in_python(backend, inner, carry, xs, block, time_steps)
    if isinstance(time_steps, int):  # (// and %: torch.compile may make the block size symbolic)
        n_blocks, rest = time_steps // block, time_steps % block
    else:  # unknown until run time (TensorFlow graphs): both parts are built
        n_blocks, rest = time_steps // block, None
    parts = []
    if not isinstance(n_blocks, int) or n_blocks > 0:
        split = n_blocks * block
        head = [backend.fold_time(x[:split], block) for x in xs]
        carry, ys = primitive(inner, carry, head, unroll=1)
        parts.append([backend.unfold_time(y) for y in ys])
        xs = [x[split:] for x in xs]
    if rest is None or rest > 0:
        # the steps that do not fill a block: one checkpointed segment, or one step at a time
        carry, ys = inner(carry, xs) if plan.segment is not None else primitive(body, carry, xs, unroll=1)
        parts.append(ys)
    if len(parts) == 1:
        return carry, parts[0]
    return carry, [backend.concat_time(list(leaf)) for leaf in zip(*parts)]


def _segments_in_python(
    backend: Backend, segment: Callable[..., Any], carry: Any, xs: list[Any], block: int, time_steps: Any
) -> tuple[Any, list[Any]]:
    """The segments one after another in Python, for a backend whose checkpoint cannot run
    inside its own loop (TensorFlow graphs): ``time_steps / block`` segments in the graph."""
    assert isinstance(time_steps, int)  # checked by _validate.check_remat_time
    parts = []
    for start in range(0, time_steps, block):
        carry, ys = segment(carry, [x[start : start + block] for x in xs])
        parts.append(ys)
    return carry, [backend.concat_time(list(leaf)) for leaf in zip(*parts)]


def _unrolled(backend: Backend, body: Body, carry: Any, xs_block: list[Any], block: int) -> tuple[Any, list[Any]]:
    """``block`` steps of ``body`` in a row: ``xs_block`` leaves ``(block, batch, ...)``."""
    collected = []
    for t in range(block):
        carry, ys = body(carry, [x[t] for x in xs_block])
        collected.append(ys)
    return carry, [backend.stack(list(leaf)) for leaf in zip(*collected)]


def python_scan(
    backend: Backend,
    body: Body,
    carry: Any,
    xs: list[Any],
    unroll: int = 1,  # noqa: ARG001 - one step at a time
) -> tuple[Any, list[Any]]:
    """The plain Python scan primitive: ``body`` at every step, ``ys`` stacked along time."""
    collected = []
    for xs_t in time_slices(backend, xs):
        carry, ys = body(carry, list(xs_t))
        collected.append(ys)
    return carry, [backend.stack(list(leaf)) for leaf in zip(*collected)]


def python_loop(
    backend: Backend,
    step: UserStep,
    shape: StepShape,
    *,
    states: Leaves,
    inputs: Leaves,
    mask: Any | None,
    first: tuple[Leaves, Leaves],
    zero_output_for_mask: bool,
    keep_all: bool,
) -> tuple[Leaves, Leaves, Leaves | None]:
    """The lean eager loop (the fast path of :func:`scan_loop` with :func:`python_scan`).

    ``first``: the step's result at time 0, already computed by :func:`first_call`.
    Inputs and masks are split along time in chunks; each leaf's mask is shaped once.
    Where the mask is concrete, it is read once: a step that keeps every sample skips the
    masked update (``where(True, new, old)`` is ``new``), and a step that keeps none is
    not computed (its states and output are the previous ones, or zeros). Step 0 is
    computed by the first call anyway, and always masked as usual: the step's weights
    stay in the autodiff graph (zero gradients, not none) even if no step keeps a sample.
    """
    x_steps = time_slices(backend, inputs)
    next(x_steps)  # step 0's result is `first`
    step = step.fast()
    if mask is None:
        output, states = first
        collected = [output]
        for x_t in x_steps:
            output, states = step(states, x_t)
            if keep_all:
                collected.append(output)
        return states, output, _stack(backend, collected) if keep_all else None

    masks = shape_masks(mask, shape.state_ranks + shape.output_ranks)
    ranks = list(masks)
    state_ranks = [ranks.index(r) for r in shape.state_ranks]
    output_ranks = [ranks.index(r) for r in shape.output_ranks]
    kept = backend.kept_per_step(mask)
    every, some = kept if kept is not None else (itertools.repeat(False), itertools.repeat(True))

    output = None
    zeros = [backend.zeros_like(o) for o in first[0]]  # the output before the first kept step
    update = functools.partial(masked_update, backend, zero_output_for_mask=zero_output_for_mask, zeros=zeros)
    collected = []
    steps = itertools.chain([None], x_steps)
    for x_t, masks_t, all_kept, any_kept in zip(steps, time_slices(backend, list(masks.values())), every, some):
        if not any_kept and x_t is not None:  # discarded: not computed (step 0's is, for the first call)
            if output is None or zero_output_for_mask:
                output = zeros
        else:
            step_output, new_states = first if x_t is None else step(states, x_t)
            if all_kept:
                states, output = new_states, step_output
            else:
                state_masks = [masks_t[r] for r in state_ranks]
                output_masks = [masks_t[r] for r in output_ranks]
                states, output = update(states, output, new_states, step_output, state_masks, output_masks)
        if keep_all:
            collected.append(output)
    assert output is not None  # the core refuses an empty time axis
    return states, output, _stack(backend, collected) if keep_all else None


def _stack(backend: Backend, collected: list[list[Any]]) -> list[Any]:
    """Per-step lists of leaves ``(batch, ...)`` -> one ``(time, batch, ...)`` array per leaf."""
    return [backend.stack(list(leaf)) for leaf in zip(*collected)]


def time_slices(backend: Backend, arrays: list[Any]) -> Iterator[tuple[Any, ...]]:
    """The slices of ``arrays`` (all ``(time, ...)``) at every step, unstacked ``UNSTACK_CHUNK`` steps at a time.

    Unstacking the whole time axis at once would keep one array object per step
    and input alive for the whole loop (about 0.5 KiB each in PyTorch: 100 MB at
    100,000 steps); chunks bound that to ``UNSTACK_CHUNK`` steps.
    """
    unstack = backend.unstack
    time_steps = backend.shape(arrays[0])[0]
    starts = [None] if time_steps is None else range(0, time_steps, UNSTACK_CHUNK)
    # chained in C: no Python frame per step
    return itertools.chain.from_iterable(
        zip(*(unstack(x[start : None if start is None else start + UNSTACK_CHUNK]) for x in arrays)) for start in starts
    )


def segment_length(remat: bool | int, time_steps: Any) -> int | None:
    """Steps per remat segment: ``remat`` itself, or about sqrt(T) for ``True``; None for ``False``."""
    if remat is False:
        return None
    if remat is True:
        return max(1, math.isqrt(time_steps - 1) + 1) if isinstance(time_steps, int) and time_steps > 0 else 32
    return int(remat)
