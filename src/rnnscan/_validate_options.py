"""The checks of the loop's options: ``unroll``, ``remat`` and ``parallel`` (and what each needs of
the time axis), in the form of every ``rnn()`` error (:mod:`._validate`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validate import _error, describe

if TYPE_CHECKING:
    from .backends._base import Backend


def check_static_time(unroll: bool | int, time_steps: Any) -> None:
    if unroll is True and time_steps is None:
        raise _error(
            ValueError,
            "unroll",
            "False when the number of time steps is not fixed (unrolling requires a fixed number of timesteps)",
            "unroll=True with an unknown time dimension",
        )


def check_remat_time(backend: Backend, remat: bool | int, time_steps: Any) -> None:
    if remat is False:
        return
    if time_steps is None and not backend.checkpoints_in_loops():
        raise _error(
            ValueError,
            "remat",
            f"False when the number of time steps is unknown in a {backend.name} graph (its recomputed "
            "segments are laid out while the graph is built)",
            f"remat={remat!r} with an unknown time dimension",
        )
    if backend.is_symbolic_int(time_steps) and backend.remats():
        raise _error(
            ValueError,
            "remat",
            f"False when the number of time steps is symbolic ({backend.name} export: the count of "
            "recomputed segments could be 0, and a loop over a symbolic length must not be empty); "
            "export with a fixed time length to keep remat",
            f"remat={remat!r} with a symbolic time dimension",
        )


def as_unroll(unroll: Any) -> bool | int:
    """``unroll``: True (a full unroll), or the steps per loop iteration (False means 1)."""
    if isinstance(unroll, (bool, np.bool_)):
        return bool(unroll) or 1
    if not isinstance(unroll, (int, np.integer)):
        raise _error(TypeError, "unroll", "a bool or a positive int (steps per loop iteration)", describe(unroll))
    if unroll < 1:
        raise _error(ValueError, "unroll", "a bool or a positive int (steps per loop iteration)", describe(unroll))
    return int(unroll)


def as_remat(remat: Any) -> bool | int:
    """``remat``: False, True (segments of about sqrt(T) steps) or the steps per segment."""
    if isinstance(remat, (bool, np.bool_)):
        return bool(remat)
    expected = "a bool or a positive int (steps per recomputed segment)"
    if not isinstance(remat, (int, np.integer)):
        raise _error(TypeError, "remat", expected, describe(remat))
    if remat < 1:
        raise _error(ValueError, "remat", expected, describe(remat))
    return int(remat)


def as_parallel(parallel: Any, max_iterations: Any, tolerance: Any, *, unroll: bool | int, remat: bool | int) -> Any:
    """The options of ``parallel=True`` (``rnnscan._parallel.Options``), or None for the loop; checked
    before any array is looked at."""
    from ._parallel import MAX_ITERATIONS, Options

    if not isinstance(parallel, (bool, np.bool_)):
        raise _error(TypeError, "parallel", "a bool", describe(parallel))
    for name, value in (("max_iterations", max_iterations), ("tolerance", tolerance)):
        if value is not None and not parallel:
            expected = "None when `parallel` is False (it is an option of parallel=True)"
            raise _error(ValueError, name, expected, f"{name}={value!r}")
    if not parallel:
        return None
    _check_positive("max_iterations", max_iterations, (int, np.integer), "a positive int (the most Newton iterations)")
    _check_positive(
        "tolerance",
        tolerance,
        (int, float, np.integer, np.floating),
        "a positive float (the residual allowed, relative to 1 + max |state|)",
    )
    if unroll is True or unroll > 1:
        raise _error(
            ValueError, "unroll", "False when `parallel=True` (no loop is left to unroll)", f"unroll={unroll!r}"
        )
    if remat is not False:
        raise _error(
            ValueError,
            "remat",
            "False when `parallel=True` (it keeps O(T) arrays, and no loop is left to segment)",
            f"remat={remat!r}",
        )
    return Options(
        max_iterations=MAX_ITERATIONS if max_iterations is None else int(max_iterations),
        tolerance=None if tolerance is None else float(tolerance),
    )


def _check_positive(name: str, value: Any, kinds: tuple[type, ...], expected: str) -> None:
    """None, or a finite positive number of ``kinds`` (a bool is not one)."""
    if value is None:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, kinds):
        raise _error(TypeError, name, f"None or {expected}", describe(value))
    if not value > 0 or not np.isfinite(value):
        raise _error(ValueError, name, f"None or {expected}", describe(value))


def check_parallel(backend: Backend, state_leaves: Sequence[Any], time_steps: Any) -> None:
    """``parallel=True`` needs a static number of time steps and floating states (it differentiates them)."""
    if time_steps is None:
        raise _error(
            ValueError,
            "parallel",
            "False when the number of time steps is unknown (the parallel scan is laid out for a static length)",
            "parallel=True with an unknown time dimension",
        )
    for leaf in state_leaves:
        if backend.is_integer(leaf) or backend.is_bool(leaf):
            expected = "floating arrays when `parallel=True` (their Jacobian is taken)"
            raise _error(TypeError, "initial_states", expected, describe(leaf))
