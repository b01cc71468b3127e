"""The per-step semantics, once for every backend, and the two scan bodies that carry it out.

:func:`masked_update` is ``where(mask_t, new, previous)`` for every state leaf, and for every
output leaf ``where(mask_t, output, previous output)`` (or zeros with ``zero_output_for_mask``),
zeros before the first step. :func:`general_body` carries the previous output;
:func:`states_body`, for a step whose outputs are its states (``return h, [h]``), carries the
states and a ``(batch, 1)`` flag instead. Masks are ``(time, batch)`` bool, time-major.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._step import Leaves, Loop, check_same_aliases

if TYPE_CHECKING:
    from .backends import Backend

Body = Callable[[Any, list[Any]], tuple[Any, list[Any]]]


def shape_masks(mask: Any, ranks: Sequence[int]) -> dict[int, Any]:
    """The ``(time, batch)`` mask shaped ``(time, batch, 1, ..., 1)`` once for each leaf rank,
    so that its slice at a step broadcasts against a ``(batch, ...)`` leaf of that rank."""
    return {rank: mask[(..., *(None,) * (rank - 1))] for rank in sorted(set(ranks))}


def mask_at_step(backend: Backend, mask_t: Any, ranks: Sequence[int]) -> dict[int, Any]:
    """A scan's one mask array at a step, shaped for the lowest of ``ranks`` (sorted; see :func:`loop_mask`),
    shaped once per leaf rank in the step (a reshape costs less than a further array read at every step)."""
    return {r: mask_t if r == ranks[0] else backend.reshape(mask_t, (-1,) + (1,) * (r - 1)) for r in ranks}


def loop_mask(mask: Any, ranks: Sequence[int]) -> Any:
    """The ``(time, batch)`` mask as the one array a scan reads: shaped for the lowest leaf rank."""
    lowest = min(ranks)
    return shape_masks(mask, [lowest])[lowest]


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


def general_body(loop: Loop, n_inputs: int) -> Body:
    """``body((states, prev_output), xs_t) -> ((states, output), ys_t)``.

    ``xs_t``: the input leaves at a step, then the mask (see :func:`loop_mask`) if
    there is one; ``ys_t`` the output leaves (empty unless
    ``keep_all``).
    """
    backend, step, shape, keep_all = loop.backend, loop.step, loop.shape, loop.keep_all
    ranks = sorted(set(shape.state_ranks + shape.output_ranks))

    def body(carry: Any, xs_t: list[Any]) -> Any:
        states, prev_output = carry
        output, new_states = step(states, xs_t[:n_inputs])
        if len(xs_t) == n_inputs:
            states, output = new_states, output
        else:
            masks = mask_at_step(backend, xs_t[n_inputs], ranks)
            states, output = masked_update(
                backend,
                states,
                prev_output,
                new_states,
                output,
                [masks[r] for r in shape.state_ranks],
                [masks[r] for r in shape.output_ranks],
                zero_output_for_mask=loop.zero_output_for_mask,
            )
        return (states, output), (list(output) if keep_all else [])

    return body


def states_body(loop: Loop, n_inputs: int) -> Body:
    """For a step whose outputs are its states: ``body((states, kept), xs_t) -> ((states, kept), ys_t)``.

    ``kept``, ``[(batch, 1) bool]``, says whether the output is the state or zeros: with
    ``zero_output_for_mask``, whether this step was kept; else whether any step has
    been kept so far (a masked step's output repeats the previous output, which is the
    state once a step has been kept, zeros before). No previous output is carried.
    ``kept`` is ``[]`` without a mask, without ``keep_all`` (the last output's flag is read
    off the mask after the loop), and where the backend masks the outputs after the loop
    (``Backend.masks_outputs_after_loop``): the outputs are then the masked states.
    """
    backend, step, shape, keep_all = loop.backend, loop.step, loop.shape, loop.keep_all
    assert shape.aliases is not None
    aliases = shape.aliases
    ranks = sorted(set(shape.state_ranks + shape.output_ranks))

    def body(carry: Any, xs_t: list[Any]) -> Any:
        states, kept = carry
        output, new_states = step(states, xs_t[:n_inputs])
        check_same_aliases(shape, output, new_states)
        if len(xs_t) == n_inputs:
            return (new_states, kept), ([new_states[i] for i in aliases] if keep_all else [])
        masks = mask_at_step(backend, xs_t[n_inputs], ranks)
        states = [backend.where(masks[r], n, s) for r, n, s in zip(shape.state_ranks, new_states, states)]
        if not kept:  # no flag: the outputs are the masked states, masked again after the loop if need be
            return (states, kept), ([states[i] for i in aliases] if keep_all else [])
        mask_t = masks[2] if 2 in masks else backend.reshape(masks[ranks[0]], (-1, 1))
        kept = [mask_t if loop.zero_output_for_mask else backend.logical_or(kept[0], mask_t)]
        return (states, kept), [zero_unless(backend, kept[0], states[i]) for i in aliases]

    return body


def zero_unless(backend: Backend, kept: Any, x: Any) -> Any:
    """``x`` where ``kept`` ``(batch, 1)`` holds, zeros elsewhere."""
    rank = len(backend.shape(x))
    if rank != 2:
        kept = backend.reshape(kept, (-1,) + (1,) * (rank - 1))
    return backend.where(kept, x, backend.zeros_like(x))
