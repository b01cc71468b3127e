"""The plain Python loops: the lean eager loop (NumPy, eager PyTorch and TensorFlow) and the
Python scan primitive (``unroll=True``, and remat segments on eager backends).

All arrays are time-major: inputs and masks ``(time, batch, ...)`` in processing order.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._masked import Body, masked_update, shape_masks
from ._step import Leaves, Loop

if TYPE_CHECKING:
    from .backends import Backend

#: time steps unstacked at once by the Python loops: bounds the per-step views alive at a time
UNSTACK_CHUNK = 1024


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
    loop: Loop, states: Leaves, inputs: Leaves, mask: Any | None, first: tuple[Leaves, Leaves]
) -> tuple[Leaves, Leaves, Leaves | None]:
    """The lean eager loop (the fast path of ``scan_loop`` with :func:`python_scan`):
    ``(states, last output, outputs or None)``.

    ``first``: the step's result at time 0, already computed by :func:`first_call`.
    Inputs and masks are split along time in chunks; each leaf's mask is shaped once.
    Where the mask is concrete, it is read once: a step that keeps every sample skips the
    masked update (``where(True, new, old)`` is ``new``), and a step that keeps none is
    not computed (its states and output are the previous ones, or zeros). Step 0 is
    computed by the first call anyway, and always masked as usual: the step's weights
    stay in the autodiff graph (zero gradients, not none) even if no step keeps a sample.
    """
    backend, shape, keep_all, zero_output_for_mask = loop.backend, loop.shape, loop.keep_all, loop.zero_output_for_mask
    x_steps = time_slices(backend, inputs)
    next(x_steps)  # step 0's result is `first`
    step = loop.step.fast()
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
