"""The Backend interface: the array operations the loop needs, and a scan primitive.

A backend wraps one framework. The loop (``rnnscan._loop`` and its modules) decides every piece of
semantics in terms of these operations; a backend only says how its framework does
them, and supplies its loop primitive (:meth:`Backend.scan`) and the "checkpoint
this segment" that remat needs (:meth:`Backend.checkpoint`). All arrays handed to
these methods belong to the backend's framework.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class Backend:
    """One framework's arrays. Subclasses are imported only when such an array arrives."""

    #: the framework's name as users know it ("numpy", "jax", "torch", "tensorflow")
    name: str = ""
    #: :meth:`scan` runs ``unroll=k`` itself (else the loop runs blocks of k steps)
    unrolls_natively: bool = False

    # -- recognising and converting arrays ---------------------------------
    def owns(self, x: Any) -> bool:
        """True if ``x`` is an array of this framework (tracers and variables included)."""
        raise NotImplementedError

    def accepts(self, x: Any) -> bool:
        """True if ``x`` may be mixed into a call on this backend (converted by ``asarray``)."""
        return self.owns(x) or isinstance(x, (np.ndarray, np.generic, bool, int, float))

    def asarray(self, x: Any, *, device: Any = None) -> Any:
        """``x`` as an array of this framework (on ``device``, where the framework has devices)."""
        raise NotImplementedError

    def device_of(self, x: Any) -> Any:
        """The device of the array ``x`` (None: ``x`` is None, or the framework places arrays itself)."""
        return None

    def registered_node(self, x: Any) -> tuple[Any, Any] | None:
        """``(flatten, unflatten)`` for optree where ``type(x)`` is a node of this framework's
        own pytree registry; None where it is not (or the framework has none)."""
        return None

    def is_symbolic_int(self, x: Any) -> bool:
        """True if ``x`` is a symbolic integer of the framework (a traced shape: ``jax.export``'s
        dimension, ``torch.SymInt``): an int whose value must not be read."""
        return False

    def casts_up(self, new: Any, old: Any) -> bool:
        """True where a step's new state ``new`` of another dtype than its state ``old`` is
        cast up to ``old``'s dtype, losslessly (torch's autocast); else it is refused."""
        return False

    def host_values(self, x: Any) -> Any:
        """``x``'s values as a NumPy array where they are concrete now; None where they are
        not (traced, transformed, fake or meta) and must not be read."""
        return None

    # -- facts about an array ----------------------------------------------
    def shape(self, x: Any) -> tuple[int | None, ...]:
        """The static shape: None where a dimension is unknown (symbolic)."""
        return tuple(x.shape)

    def is_bool(self, x: Any) -> bool:
        raise NotImplementedError

    def is_integer(self, x: Any) -> bool:
        raise NotImplementedError

    def is_numeric(self, x: Any) -> bool:
        """Integer, floating or complex (a mask of these keeps its nonzero steps)."""
        raise NotImplementedError

    def time_steps(self, x: Any) -> Any:
        """Length of axis 0: an int, or a scalar tensor where it is not known statically."""
        return self.shape(x)[0]

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

    def fold_time(self, x: Any, block: int) -> Any:
        """``(n * block, ...)`` -> ``(n, block, ...)``."""
        return self.reshape(x, (-1, block, *self.shape(x)[1:]))

    def unfold_time(self, x: Any) -> Any:
        """``(n, block, ...)`` -> ``(n * block, ...)``."""
        return self.reshape(x, (-1, *self.shape(x)[2:]))

    def concat_time(self, xs: list[Any]) -> Any:
        """The arrays one after another along axis 0."""
        raise NotImplementedError

    def where(self, condition: Any, x: Any, y: Any) -> Any:
        raise NotImplementedError

    def astype(self, x: Any, dtype: Any) -> Any:
        """``x`` cast to ``dtype`` (where :meth:`casts_up` allows it)."""
        raise NotImplementedError

    def zeros_like(self, x: Any) -> Any:
        raise NotImplementedError

    def output_zeros(self, output: Any, like_input: Any) -> Any:
        """Zeros like one output leaf ``(batch, ...)``: the previous output before the first
        step (``like_input``, ``(time, batch, ...)``, gives the batch size where need be)."""
        return self.zeros_like(output)

    def false_like(self, x: Any) -> Any:
        """A bool array of ``x``'s shape, all False."""
        return self.zeros_like(x) != 0

    def logical_or(self, x: Any, y: Any) -> Any:
        return x | y

    def any_over_time(self, mask: Any) -> Any:
        """``(time, batch)`` bool -> ``(batch,)``: whether any step is True."""
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

    def kept_per_step(self, mask: Any) -> tuple[list[bool], list[bool]] | None:
        """For a ``(time, batch)`` mask with concrete values, whether each step keeps every
        sample and whether it keeps any, read to the host once; None where the values are
        symbolic (traced)."""
        values = self.host_values(mask)
        return None if values is None else (values.all(axis=1).tolist(), values.any(axis=1).tolist())

    def kept_span(self, mask: Any) -> tuple[Any, Any] | None:
        """For a traced loop whose time length may be data-dependent: ``(start, stop)``, the
        steps from the first that keeps a sample to the last (or the last step alone if none
        does), as scalars of the framework, for :meth:`scan`'s ``span``; None where the loop
        runs every step."""
        return None

    def masks_outputs_after_loop(self, states: list[Any]) -> bool:
        """A traced loop of a step whose outputs are its states (``states``: those leaves, ``(batch,
        ...)``) carries the states alone, not the previous output; with a mask and every output kept,
        it also carries a flag and masks each step's outputs (False), or masks them all after the
        loop (True, :meth:`kept_so_far`): whichever is faster on the framework (measured)."""
        return False

    def kept_so_far(self, mask: Any) -> Any:
        """``(time, batch)`` bool: whether ``mask`` keeps the sample at this step or an earlier one
        (where :meth:`masks_outputs_after_loop`)."""
        raise NotImplementedError

    def zero_unless_over_time(self, kept: Any, ys: list[Any]) -> list[Any]:
        """``ys``, leaves ``(time, batch, ...)``, with zeros where ``kept`` ``(time, batch)`` is False."""
        return [self.where(kept[(..., *(None,) * (len(self.shape(y)) - 2))], y, self.zeros_like(y)) for y in ys]

    def to_bool(self, x: Any) -> Any:
        """Nonzero keeps: a numeric mask as booleans."""
        return x if self.is_bool(x) else x != 0

    # -- the loop ----------------------------------------------------------
    def run(self, call: Any, states: list[Any], inputs: list[Any], mask: Any | None) -> Any:
        """Run one call's loop (``rnnscan._loop.LoopCall``); a backend may compile it first."""
        return call(self, states, inputs, mask)

    def runs_python_loops(self) -> bool:
        """True where the loop is best a plain Python loop now (eager execution)."""
        return True

    def scan(
        self, body: Callable[..., Any], carry: Any, xs: list[Any], unroll: int = 1, span: tuple[Any, Any] | None = None
    ) -> tuple[Any, list[Any]]:
        """The backend's traced loop primitive, used where :meth:`runs_python_loops` is False:
        ``body(carry, xs_t) -> (carry, ys_t)`` at every step of axis 0 of ``xs``; returns the
        last carry and the ``ys`` stacked along time.

        ``carry`` is a tuple of lists of arrays; ``ys_t`` a list of arrays. ``unroll``
        matters only where :attr:`unrolls_natively` (the loop runs blocks of steps elsewhere).
        ``span``, where :meth:`kept_span` gives one: ``(start, stop)``, run only those steps;
        the ``ys`` of the others are zeros.
        """
        raise NotImplementedError

    def checkpoints_in_loops(self) -> bool:
        """True where :meth:`checkpoint` works inside :meth:`scan`'s body (else the loop runs
        its remat segments one after another in Python)."""
        return True

    def random_state_kept(self) -> Any:
        """A context in which the framework's global random state ends as it began."""
        return contextlib.nullcontext()

    def eagerly(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function`` run as it is, where a compiler tracing it could not (torch.compile: a
        graph break around it); ``function`` itself elsewhere."""
        return function

    def remats(self) -> bool:
        """True where remat can save memory now (there is an autodiff to save it from)."""
        return True

    def checkpoint(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function(carry, xs)`` whose backward pass recomputes it from its arguments
        rather than keeping its residuals (remat). Without autodiff: ``function`` itself."""
        return function

    # -- parallel over time (rnnscan._parallel) --------------------------------
    #: the framework differentiates: :meth:`jvp` is exact (NumPy's is a finite difference)
    differentiable: bool = True

    def jvp(self, f: Callable[..., list[Any]], primals: list[Any], tangents: list[Any]) -> tuple[list[Any], list[Any]]:
        """``(f(*primals), J_f(primals) @ tangents)``: ``f`` takes and returns lists of arrays."""
        raise NotImplementedError

    def map_over_time(self, f: Callable[..., Any]) -> Callable[..., Any] | None:
        """``f`` on ``(batch, ...)`` leaves mapped over a leading time axis (JAX: ``vmap``); None
        where the core runs ``f`` on ``(time * batch, ...)`` rows instead."""
        return None

    def linear_scan(self, a: list[list[Any]], b: list[Any]) -> list[Any]:
        """``h_t = A_t h_{t-1} + b_t`` over axis 0 from ``h_{-1} = 0`` (see :mod:`rnnscan._linear_scan`)."""
        from .. import _linear_scan

        return _linear_scan.odd_even(self, a, b)

    def while_loop(self, cond: Callable[[Any], Any], body: Callable[[Any], Any], carry: Any) -> Any:
        """``while cond(carry): carry = body(carry)``; ``cond`` gives a scalar bool array. Eager: read on the host."""
        while bool(cond(carry)):
            carry = body(carry)
        return carry

    def cond(self, pred: Any, true_fn: Callable[[], Any], false_fn: Callable[[], Any]) -> Any:
        """``true_fn()`` if the scalar bool array ``pred`` holds, else ``false_fn()``."""
        return true_fn() if bool(pred) else false_fn()

    def on_host(self, fn: Callable[..., None], *arrays: Any) -> None:
        """``fn`` called with ``arrays``' values as NumPy arrays when they are computed (eagerly: now)."""
        fn(*(np.asarray(self.host_values(a)) for a in arrays))

    def stop_gradient(self, x: Any) -> Any:
        return x

    def no_grad(self) -> Any:
        """A context in which no autodiff graph is recorded (where the framework records one eagerly)."""
        return contextlib.nullcontext()

    def repeat_time(self, x: Any, n: int) -> Any:
        """``(...)`` -> ``(n, ...)``, ``x`` at every step."""
        raise NotImplementedError

    def max_abs(self, x: Any) -> Any:
        """``max |x|`` over every element: a scalar array (NaN if any is NaN)."""
        raise NotImplementedError

    def clip(self, x: Any, low: float, high: float) -> Any:
        """``x`` within ``[low, high]`` elementwise."""
        raise NotImplementedError

    def ones_like(self, x: Any) -> Any:
        return self.zeros_like(x) + 1

    def records_gradients(self) -> bool:
        """False where no autodiff can be recording now (the parallel loop then skips its last Newton step)."""
        return self.differentiable

    def is_finite(self, x: Any) -> Any:
        raise NotImplementedError

    def scalar(self, value: Any, like: Any) -> Any:
        """A scalar array holding the Python ``value`` (a bool or an int32), on ``like``'s device."""
        return self.asarray(np.asarray(value, np.bool_ if isinstance(value, bool) else np.int32))

    def index_pattern(self, x: Any) -> Any:
        """An array of ``x``'s shape and dtype holding each element's flat index modulo 4093."""
        raise NotImplementedError

    def epsilon(self, x: Any) -> float:
        """The machine epsilon of ``x``'s floating dtype."""
        return float(np.finfo(np.dtype(x.dtype)).eps)
