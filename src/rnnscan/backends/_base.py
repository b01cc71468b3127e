"""The Backend interface: the array operations the core needs, and the loop.

A backend wraps one framework. The core (``rnnscan._rnn``) decides every piece of
semantics in terms of these operations; a backend only says how its framework
does them, and may replace :meth:`Backend.scan` with a faster, compilable loop.
All arrays handed to these methods belong to the backend's framework.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
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

    def max(self, x: Any) -> Any:
        raise NotImplementedError

    def all_true_per_step(self, mask: Any) -> list[bool] | None:
        """For a ``(time, batch)`` mask with concrete values, whether each step keeps every
        sample, read to the host once; None where the values are symbolic (traced)."""
        return None

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
    """A lean Python loop: inputs and mask split along time in chunks, the mask shaped
    ``(time, batch, 1)`` once, outputs stacked once.

    A step that keeps every sample skips the masked update (``where(True, new, old)``
    is ``new``); which steps those are is read from the mask once, where it is concrete.
    """
    output = None
    collected: list[list[Any]] = []
    if mask is not None:
        all_kept = backend.all_true_per_step(mask)
        mask = mask[..., None]
        if all_kept is not None:
            steps: Iterable[tuple[Any, Any]] = (
                (x_t, None if kept else m_t) for (x_t, m_t), kept in zip(_time_steps(backend, inputs, mask), all_kept)
            )
        else:
            steps = _time_steps(backend, inputs, mask)
    else:
        steps = _time_steps(backend, inputs, None)
    for x_t, m_t in steps:
        states, output = step(states, output, x_t, m_t)
        if keep_all:
            collected.append(output)
    assert output is not None  # the core refuses an empty time axis
    outputs = [backend.stack(leaf) for leaf in zip(*collected)] if keep_all else None
    return states, output, outputs


def _time_steps(backend: Backend, inputs: list[Any], mask: Any | None) -> Iterator[tuple[Any, Any]]:
    """``(x_t, mask_t)`` for every step, split ``UNSTACK_CHUNK`` steps at a time.

    Unstacking the whole time axis at once would keep one array object per step
    and input alive for the whole loop (about 0.5 KiB each in PyTorch: 100 MB at
    100,000 steps); chunks bound that to ``UNSTACK_CHUNK`` steps.
    """
    unstack = backend.unstack
    time_steps = backend.shape(inputs[0])[0]
    bounds = (
        [(None, None)]
        if time_steps is None
        else [(start, start + UNSTACK_CHUNK) for start in range(0, time_steps, UNSTACK_CHUNK)]
    )
    for start, stop in bounds:
        steps = zip(*(unstack(x[start:stop]) for x in inputs))
        masks = unstack(mask[start:stop]) if mask is not None else itertools.repeat(None)
        yield from zip(steps, masks)
