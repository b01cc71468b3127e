"""The loop laid out in time, the same on every backend: ``unroll=k`` blocks, remat segments,
and the span of kept steps (TensorFlow graphs), run on a backend's scan primitive.

:class:`Plan` says how; :func:`scan_loop` runs the fitting body of :mod:`._masked` on the
backend's ``scan`` (or the Python one) accordingly. All arrays are time-major.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._masked import Body, general_body, loop_mask, states_body, zero_unless
from ._python_loop import python_scan
from ._step import Leaves, Loop, UserStep

if TYPE_CHECKING:
    from .backends import Backend


@dataclasses.dataclass(frozen=True)
class Plan:
    """How the loop is laid out in time, the same on every backend.

    ``unroll``: steps per iteration of the backend's loop (1: none). ``segment``:
    with remat, the steps of each segment whose residuals the backward pass
    recomputes from the carry saved at its start (None: no remat).
    """

    unroll: int = 1
    segment: int | None = None


def segment_length(remat: bool | int, time_steps: Any) -> int | None:
    """Steps per remat segment: ``remat`` itself, or about sqrt(T) for ``True``; None for ``False``."""
    if remat is False:
        return None
    if remat is True:
        return max(1, math.isqrt(time_steps - 1) + 1) if isinstance(time_steps, int) and time_steps > 0 else 32
    return int(remat)


def scan_loop(
    loop: Loop, states: Leaves, inputs: Leaves, mask: Any | None, first_output: Leaves, plan: Plan, python: bool
) -> tuple[Leaves, Leaves, Leaves | None]:
    """Run the fitting body over time on the backend's scan primitive (``python``: the
    Python loop's), laid out by ``plan``: ``(states, last output, outputs or None)``."""
    backend, step, shape = loop.backend, loop.step, loop.shape
    keep_all, zero_output_for_mask = loop.keep_all, loop.zero_output_for_mask
    n_inputs = len(inputs)
    xs = list(inputs)
    if mask is not None:
        xs.append(loop_mask(mask, shape.state_ranks + shape.output_ranks))
    make_body = states_body if shape.aliases is not None else general_body
    # a states-only loop's outputs masked after it, all steps at once, rather than by a flag carried through it
    after = (
        shape.aliases is not None
        and keep_all
        and mask is not None
        and backend.masks_outputs_after_loop([states[i] for i in shape.aliases])
    )

    def body_of(step: UserStep) -> Body:
        return make_body(dataclasses.replace(loop, step=step, shape=shape), n_inputs)

    if shape.aliases is not None:
        kept = [] if mask is None or not keep_all or after else [backend.false_like(backend.reshape(mask[0], (-1, 1)))]
        carry: Any = (list(states), kept)
    else:
        carry = (list(states), [backend.output_zeros(o, inputs[0]) for o in first_output])
    python = python or backend.runs_python_loops()
    primitive = functools.partial(python_scan, backend) if python else backend.scan
    one_loop = plan.segment is None and plan.unroll == 1
    # Skipped steps output zeros: after the last kept step, a masked step outputs the last output, so a span
    # would need the outputs filled in (a copy of them all); the loop runs those steps instead.
    trims = mask is not None and one_loop and not python and (zero_output_for_mask or not keep_all)
    span = backend.kept_span(mask) if trims else None
    if span is None:
        carry, ys = _scan_in_blocks(backend, primitive, body_of, step, carry, xs, plan, python=python)
    else:  # only the steps from the first that keeps a sample to the last: the outputs of the others are zeros
        carry, ys = primitive(body_of(step), carry, xs, span=span)
    states = carry[0]
    if shape.aliases is None:
        last = carry[1]
        if span is not None and zero_output_for_mask:  # the last step may lie past the span
            last = [zero_unless(backend, backend.reshape(mask[-1], (-1, 1)), x) for x in last]
    else:
        last = [states[i] for i in shape.aliases]
        if mask is not None:
            if carry[1] and span is None:
                kept = carry[1][0]
            else:  # the last step kept (zero_output_for_mask), or any step kept
                kept = mask[-1] if zero_output_for_mask else backend.any_over_time(mask)
                kept = backend.reshape(kept, (-1, 1))
            last = [zero_unless(backend, kept, x) for x in last]
        if after:  # zeros before a sample's first kept step, and with zero_output_for_mask at every masked step
            ys = backend.zero_unless_over_time(mask if zero_output_for_mask else backend.kept_so_far(mask), ys)
    return states, last, ys if keep_all else None


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
    assert isinstance(time_steps, int)  # checked by _validate_options.check_remat_time
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
