"""The Backend interface: the array operations the core needs, and the loop.

A backend wraps one framework. The core (``rnnscan._rnn``) decides every piece of
semantics in terms of these operations; a backend only says how its framework
does them, and may replace :meth:`Backend.scan` with a faster, compilable loop.
All arrays handed to these methods belong to the backend's framework.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._step import Step

Shape = tuple  # tuple[int | None, ...]: None where a dimension is unknown (symbolic)


class Backend:
    """One framework's arrays. Subclasses are imported only when such an array arrives."""

    #: the framework's name as users know it ("numpy", "jax", "torch", "tensorflow")
    name: str = ""

    # -- recognising and converting arrays ---------------------------------
    def owns(self, x: Any) -> bool:
        """True if ``x`` is an array of this framework (tracers included)."""
        raise NotImplementedError

    def accepts(self, x: Any) -> bool:
        """True if ``x`` may be mixed into a call on this backend (converted by ``asarray``)."""
        import numpy as np

        return self.owns(x) or isinstance(x, (np.ndarray, np.generic, bool, int, float))

    def asarray(self, x: Any, like: Any = None) -> Any:
        """``x`` as an array of this framework (on the device of ``like``, where that matters)."""
        raise NotImplementedError

    def registered_node(self, x: Any) -> tuple[Any, Any] | None:
        """``(flatten, unflatten)`` for optree where ``type(x)`` is a node of this framework's
        own pytree registry; None where it is not (or the framework has none)."""
        return None

    def host_values(self, x: Any) -> Any:
        """``x``'s values as a NumPy array where they are concrete now; None where they are
        not (traced, transformed, fake or meta) and must not be read."""
        return None

    # -- facts about an array ----------------------------------------------
    def shape(self, x: Any) -> Shape:
        return tuple(x.shape)

    def dtype_name(self, x: Any) -> str:
        return str(x.dtype).rsplit(".", 1)[-1].removeprefix("<dtype: '").removesuffix("'>")

    def is_bool(self, x: Any) -> bool:
        raise NotImplementedError

    def is_integer(self, x: Any) -> bool:
        raise NotImplementedError

    def is_numeric(self, x: Any) -> bool:
        """Integer, floating or complex (a mask of these keeps its nonzero steps)."""
        raise NotImplementedError

    # -- array operations --------------------------------------------------
    def swap_batch_time(self, x: Any) -> Any:
        """``(batch, time, ...)`` <-> ``(time, batch, ...)``."""
        raise NotImplementedError

    def flip_time(self, x: Any) -> Any:
        """Reverse axis 0."""
        raise NotImplementedError

    def reshape(self, x: Any, shape: Sequence[int]) -> Any:
        raise NotImplementedError

    def expand_front(self, x: Any) -> Any:
        """``(...)`` -> ``(1, ...)``."""
        return self.reshape(x, (1, *self.shape(x)))

    def where(self, condition: Any, x: Any, y: Any) -> Any:
        raise NotImplementedError

    def zeros_like(self, x: Any) -> Any:
        raise NotImplementedError

    def stack(self, xs: Sequence[Any]) -> Any:
        """Stack along a new axis 0."""
        raise NotImplementedError

    def unstack(self, x: Any) -> Sequence[Any]:
        """Split along axis 0."""
        raise NotImplementedError

    def arange(self, n: Any, like: Any) -> Any:
        """``[0, 1, ..., n-1]`` with the integer dtype of ``like``."""
        raise NotImplementedError

    def as_index(self, x: Any) -> Any:
        """An integer array as the framework's widest index dtype (int64; JAX's default int)."""
        raise NotImplementedError

    def max_length(self, lengths: Any) -> Any:
        """The largest of ``(batch,)`` non-negative lengths; 0 for an empty batch."""
        raise NotImplementedError

    def all_true_per_step(self, mask: Any) -> list[bool] | None:
        """For a ``(time, batch)`` mask with concrete values, whether each step keeps every
        sample, read to the host once; None where the values are symbolic (traced)."""
        values = self.host_values(mask)
        return None if values is None else values.all(axis=1).tolist()

    def cumulative_any(self, mask: Any) -> Any:
        """``(time, batch)`` bool: whether any step up to and including ``t`` is True."""
        raise NotImplementedError

    def to_bool(self, x: Any) -> Any:
        """Nonzero keeps: a numeric mask as booleans."""
        return x if self.is_bool(x) else x != 0

    # -- the loop ------------------------------------------------------------
    def time_steps(self, x: Any) -> Any:
        """Length of axis 0: an int, or a scalar tensor where it is not known statically."""
        return self.shape(x)[0]

    def scan(
        self,
        step: Step,
        states: list[Any],
        inputs: list[Any],
        mask: Any | None,
        keep_all: bool,
    ) -> tuple[list[Any], list[Any], list[Any] | None]:
        """Run ``step`` over axis 0 of ``inputs`` (and ``mask``).

        ``inputs`` are the flat input leaves ``(time, batch, ...)``, already in
        processing order; ``mask`` is ``(time, batch)`` bool or None. Returns the
        final state leaves, the last output leaves, and the stacked output leaves
        ``(time, batch, ...)`` when ``keep_all`` (else None).
        The default is a plain Python loop, which is also every backend's ``unroll=True``.
        """
        return python_loop(self, step, states, inputs, mask, keep_all)


#: time steps unstacked at once by :func:`python_loop`: bounds the per-step views alive at a time
UNSTACK_CHUNK = 1024


def python_loop(
    backend: Backend,
    step: Step,
    states: list[Any],
    inputs: list[Any],
    mask: Any | None,
    keep_all: bool,
) -> tuple[list[Any], list[Any], list[Any] | None]:
    """A lean Python loop: inputs and masks split along time in chunks, each leaf's
    mask shaped ``(time, batch, 1, ..., 1)`` once, outputs stacked once.

    The first step runs on its own, to learn the output leaves' ranks. A step that
    keeps every sample skips the masked update (``where(True, new, old)`` is
    ``new``); which steps those are is read from the mask once, where it is concrete.
    """
    x_steps = _time_steps(backend, inputs)
    first = step.call(states, next(x_steps))
    if mask is None:
        output, states = first
        collected = [output]
        for x_t in x_steps:
            output, states = step.call(states, x_t)
            if keep_all:
                collected.append(output)
        return states, output, _stack(backend, collected) if keep_all else None

    # one mask per rank among the state and output leaves; each leaf points at its rank's
    ranks = sorted({len(backend.shape(leaf)) for leaf in [*states, *first[0]]})
    sizes = tuple(-1 if size is None else size for size in backend.shape(mask))  # batch may be unknown
    shaped = [backend.reshape(mask, (*sizes, *(1,) * (rank - 1))) for rank in ranks]
    state_ranks = [ranks.index(len(backend.shape(s))) for s in states]
    output_ranks = [ranks.index(len(backend.shape(o))) for o in first[0]]
    all_kept = backend.all_true_per_step(mask)
    kept_steps = iter(all_kept) if all_kept is not None else itertools.repeat(False)

    update, call = step.update, step.call
    output = None
    collected = []
    x_steps = itertools.chain([None], x_steps)  # step 0's result is `first`
    for x_t, masks, kept in zip(x_steps, _time_steps(backend, shaped), kept_steps):
        step_output, new_states = first if x_t is None else call(states, x_t)
        if kept:
            states, output = new_states, step_output
        else:
            state_masks = [masks[r] for r in state_ranks]
            output_masks = [masks[r] for r in output_ranks]
            states, output = update(states, output, new_states, step_output, state_masks, output_masks)
        if keep_all:
            collected.append(output)
    assert output is not None  # the core refuses an empty time axis
    return states, output, _stack(backend, collected) if keep_all else None


def _stack(backend: Backend, collected: list[list[Any]]) -> list[Any]:
    """Per-step lists of output leaves ``(batch, ...)`` -> one ``(time, batch, ...)`` array per leaf."""
    return [backend.stack(leaf) for leaf in zip(*collected)]


def _time_steps(backend: Backend, arrays: list[Any]) -> Iterator[tuple[Any, ...]]:
    """The arrays' (all ``(time, ...)``) slices at every step, split ``UNSTACK_CHUNK`` steps at a time.

    Unstacking the whole time axis at once would keep one array object per step
    and input alive for the whole loop (about 0.5 KiB each in PyTorch: 100 MB at
    100,000 steps); chunks bound that to ``UNSTACK_CHUNK`` steps.
    """
    unstack = backend.unstack
    time_steps = backend.shape(arrays[0])[0]
    bounds = (
        [(None, None)]
        if time_steps is None
        else [(start, start + UNSTACK_CHUNK) for start in range(0, time_steps, UNSTACK_CHUNK)]
    )
    for start, stop in bounds:
        yield from zip(*(unstack(x[start:stop]) for x in arrays))
