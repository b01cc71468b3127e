"""Every argument check of ``rnn()``.

Each error names the argument, what was expected and what was given, and is
raised before any loop runs (the step function's result is checked on its first
call, before the masked update or any output is produced).
"""

from __future__ import annotations

import collections.abc
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _tree
from .backends import framework_of

if TYPE_CHECKING:
    from .backends._base import Backend

_FLAGS = ("go_backwards", "time_major", "zero_output_for_mask", "return_all_outputs")


def describe(x: Any) -> str:
    """A short description of a value for error messages: type, shape, dtype."""
    shape = getattr(x, "shape", None)
    if shape is not None and hasattr(x, "dtype"):
        dims = tuple(None if d is None else int(d) for d in _dims(shape))
        dtype = str(x.dtype).rsplit(".", 1)[-1].removeprefix("<dtype: '").removesuffix("'>")
        return f"{type(x).__name__} of shape {dims} and dtype {dtype}"
    if isinstance(x, (list, tuple, dict)):
        return f"{type(x).__name__} of length {len(x)}"
    return f"{type(x).__name__} {x!r}" if isinstance(x, (bool, int, float, str)) else type(x).__name__


def _dims(shape: Any) -> list[Any]:
    as_list = getattr(shape, "as_list", None)  # tf.TensorShape
    if as_list is not None:
        return as_list() if shape.rank is not None else []
    return list(shape)


def _error(kind: type[Exception], argument: str, expected: str, given: str) -> Exception:
    return kind(f"rnnscan.rnn: `{argument}` must be {expected}; got {given}.")


def check_step_function(step_function: Any) -> None:
    if not callable(step_function):
        raise _error(
            TypeError,
            "step_function",
            "a callable (input_t, states) -> (output_t, new_states)",
            describe(step_function),
        )


def as_flags(**flags: Any) -> tuple[bool, ...]:
    """The flags, in ``_FLAGS`` order, as Python bools (NumPy's bools are bools too)."""
    for name in _FLAGS:
        value = flags[name]
        if not isinstance(value, (bool, np.bool_)):
            raise _error(TypeError, name, "a bool", describe(value))
    return tuple(bool(flags[name]) for name in _FLAGS)


def as_state_sequence(initial_states: Any, is_array: Callable[[Any], bool]) -> list[Any] | tuple[Any, ...]:
    """``initial_states`` as the list or tuple of states; a single array is one state."""
    if is_array(initial_states):
        return [initial_states]
    if not isinstance(initial_states, collections.abc.Sequence) or isinstance(initial_states, (str, bytes)):
        raise _error(
            TypeError,
            "initial_states",
            "a list or tuple of states (arrays or nested structures of arrays)",
            describe(initial_states),
        )
    return initial_states


def as_constants(constants: Any, is_array: Callable[[Any], bool]) -> tuple[Any, ...]:
    """``constants`` as the tuple appended to the states; a single array is one constant."""
    if constants is None:
        return ()
    if is_array(constants):
        return (constants,)
    if not isinstance(constants, (list, tuple)):
        raise _error(TypeError, "constants", "None or a list or tuple of constants", describe(constants))
    return tuple(constants)


def check_same_framework(backend: Backend, argument: str, leaves: Sequence[Any], arrays_only: bool) -> None:
    """Refuse leaves from another framework (NumPy arrays and Python scalars are accepted)."""
    for leaf in leaves:
        if backend.accepts(leaf):
            continue
        other = framework_of(leaf)
        if other is not None:
            like = "" if argument == "inputs" else " like `inputs`"
            raise _error(
                TypeError,
                argument,
                f"{backend.name} arrays{like} (or NumPy arrays), not arrays of two frameworks",
                f"a {other} array ({describe(leaf)})",
            )
        if arrays_only:
            raise _error(TypeError, argument, f"{backend.name} arrays", describe(leaf))


def check_inputs(backend: Backend, leaves: Sequence[Any], time_major: bool) -> tuple[Any, Any]:
    """Ranks >= 3 and one batch and time size across nested inputs. Returns ``(time, batch)``."""
    if not leaves:
        raise _error(ValueError, "inputs", "an array or a nested structure holding at least one array", "no arrays")
    layout = "(time, batch, ...)" if time_major else "(batch, time, ...)"
    time_axis, batch_axis = (0, 1) if time_major else (1, 0)
    time_steps = batch = None
    for leaf in leaves:
        shape = backend.shape(leaf)
        if len(shape) < 3:
            raise _error(ValueError, "inputs", f"of rank >= 3, {layout}", describe(leaf))
        t, b = shape[time_axis], shape[batch_axis]
        if t is not None:
            if time_steps is not None and t != time_steps:
                raise _error(ValueError, "inputs", f"nested arrays sharing one time size {time_steps}", describe(leaf))
            time_steps = t
        if b is not None:
            if batch is not None and b != batch:
                raise _error(ValueError, "inputs", f"nested arrays sharing one batch size {batch}", describe(leaf))
            batch = b
    if time_steps == 0:
        raise _error(ValueError, "inputs", f"{layout} with at least one time step", describe(leaves[0]))
    return time_steps, batch


def check_states(backend: Backend, leaves: Sequence[Any], batch: Any) -> None:
    for leaf in leaves:
        shape = backend.shape(leaf)
        if len(shape) < 2:
            raise _error(ValueError, "initial_states", "arrays of rank >= 2, (batch, ...)", describe(leaf))
        if batch is not None and shape[0] is not None and shape[0] != batch:
            raise _error(
                ValueError, "initial_states", f"arrays whose first axis is the batch size {batch}", describe(leaf)
            )


def as_mask(backend: Backend, mask: Any, *, has_states: bool, device: Any) -> Any:
    """The mask as an array of the backend (on ``device`` where that matters), unchecked."""
    if not has_states:
        raise _error(ValueError, "initial_states", "at least one state when `mask` is given", "no states")
    if not backend.accepts(mask) or isinstance(mask, (bool, int, float)):
        check_same_framework(backend, "mask", [mask], arrays_only=True)
    return backend.asarray(mask, device=device)


def check_mask(backend: Backend, mask: Any, *, time_steps: Any, batch: Any, time_major: bool) -> None:
    """A ``(batch, time)`` or ``(batch, time, 1)`` (time-major: time first) bool or numeric array."""
    layout = "(time, batch)" if time_major else "(batch, time)"
    expected = f"of shape {layout} or {layout[:-1]}, 1)"
    shape = backend.shape(mask)
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, None)):
        raise _error(ValueError, "mask", expected, describe(mask))
    want = (time_steps, batch) if time_major else (batch, time_steps)
    for got, size in zip(shape[:2], want):
        if got is not None and size is not None and got != size:
            raise _error(ValueError, "mask", f"{expected} with {layout} = {want}", describe(mask))
    if not (backend.is_bool(mask) or backend.is_numeric(mask)):
        raise _error(TypeError, "mask", "bool or numeric", describe(mask))


def as_lengths(backend: Backend, input_length: Any, *, batch: Any, time_steps: Any, device: Any) -> Any:
    """``input_length`` as the backend's int64 lengths (JAX: its default int), ``(batch,)``, or
    ``()`` for a 0-d array (one length for every sample, as tf-keras reads a 0-d tensor), on
    ``device`` where that matters; None where it masks nothing, checked first: None, or an int
    of any kind (Python, NumPy, or a symbolic size: ``jax.export``'s, ``torch.SymInt``).

    Lengths must lie in ``[0, time_steps]``; this is checked where their values
    are concrete (NumPy, eager PyTorch and TensorFlow, JAX arrays outside a
    trace) and skipped where they are symbolic.
    """
    if input_length is None or backend.is_symbolic_int(input_length):
        return None
    if isinstance(input_length, (int, np.integer)) and not isinstance(input_length, bool):
        if input_length < 0 or (isinstance(time_steps, int) and input_length > time_steps):
            raise _error(ValueError, "input_length", _length_range(time_steps), describe(input_length))
        return None
    check_same_framework(backend, "input_length", [input_length], arrays_only=True)
    if not hasattr(input_length, "shape") or isinstance(input_length, np.generic):
        raise _error(TypeError, "input_length", _lengths_expected(batch), describe(input_length))
    lengths = backend.asarray(input_length, device=device)
    check_lengths(backend, lengths, batch=batch, time_steps=time_steps)
    return backend.as_index(lengths)


def _lengths_expected(batch: Any) -> str:
    # formatted only when raised: the batch size may be symbolic, and reading it would pin it
    return f"None, an int, or an integer array of shape ({batch if batch is not None else 'batch'},) or ()"


def check_lengths(backend: Backend, lengths: Any, *, batch: Any, time_steps: Any) -> None:
    """``(batch,)`` or ``()`` integers in ``[0, time_steps]`` (the range where the values are concrete)."""
    shape = backend.shape(lengths)
    if len(shape) > 1 or (len(shape) == 1 and batch is not None and shape[0] is not None and shape[0] != batch):
        raise _error(ValueError, "input_length", _lengths_expected(batch), describe(lengths))
    if not backend.is_integer(lengths):
        raise _error(TypeError, "input_length", _lengths_expected(batch), describe(lengths))
    values = backend.host_values(lengths)
    if values is not None:
        _check_length_range(values, time_steps, describe(lengths))


def _check_length_range(values: np.ndarray, time_steps: Any, given: str) -> None:
    if values.size == 0:
        return
    low, high = int(values.min()), int(values.max())
    if low < 0 or (isinstance(time_steps, int) and high > time_steps):
        raise _error(
            ValueError, "input_length", _length_range(time_steps), f"{given} holding lengths from {low} to {high}"
        )


def _length_range(time_steps: Any) -> str:
    bound = "the number of time steps" if time_steps is None else f"the number of time steps, {time_steps}"
    return f"lengths between 0 and {bound}"


def check_step_output(backend: Backend, result: Any, batch: Any) -> _tree.PyTreeSpec:
    """Check the first ``(output, new_states)`` pair and its output; return the output structure."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise _error(TypeError, "step_function", "returning a pair (output, new_states)", describe(result))
    output = result[0]
    out_leaves, out_spec = _tree.flatten(output)
    if not out_leaves:
        raise _error(ValueError, "step_function", "returning an output holding at least one array", describe(output))
    for leaf in out_leaves:
        if not backend.owns(leaf):
            raise _error(TypeError, "step_function", f"returning {backend.name} arrays as output", describe(leaf))
        shape = backend.shape(leaf)
        if len(shape) < 1 or (batch is not None and shape[0] is not None and shape[0] != batch):
            raise _error(
                ValueError, "step_function", f"returning outputs of shape (batch={batch}, ...)", describe(leaf)
            )
        if len(shape) < 2:
            raise _error(ValueError, "step_function", "returning outputs of rank >= 2, (batch, ...)", describe(leaf))
    return out_spec


def check_step_states(backend: Backend, new_states: Any, initial_states: Sequence[Any]) -> tuple[Any, ...] | None:
    """Check the first ``new_states`` against the states: their number, each one's structure
    (up to container types), shapes and dtypes. Returns, for each state leaf, the dtype its
    new value is cast to (None: none), where the backend casts a lower precision up (torch's
    autocast); None where no leaf needs a cast."""
    if not isinstance(new_states, (list, tuple)):
        raise _error(
            TypeError, "step_function", "returning new_states as a list or tuple like the states", describe(new_states)
        )
    if len(new_states) != len(initial_states):
        raise _error(
            ValueError,
            "step_function",
            f"returning as many new states as initial_states ({len(initial_states)})",
            f"{len(new_states)} new states",
        )
    casts: list[Any] = []
    for i, (new, old) in enumerate(zip(new_states, initial_states)):
        old_leaves, old_spec = _tree.flatten(old)
        if not _tree.matches(old_spec, new):
            raise _error(
                ValueError,
                "step_function",
                f"returning new state {i} with the structure {old_spec}",
                str(_tree.flatten(new)[1]),
            )
        for new_leaf, old_leaf in zip(_tree.leaves_like(old_spec, new), old_leaves):
            casts.append(_check_new_state_leaf(backend, i, new_leaf, old_leaf))
    return tuple(casts) if any(c is not None for c in casts) else None


def _check_new_state_leaf(backend: Backend, i: int, new: Any, old: Any) -> Any:
    """None, or the state's dtype where the new value is cast up to it (see check_step_states)."""
    if not backend.owns(new):
        raise _error(TypeError, "step_function", f"returning new state {i} as {backend.name} arrays", describe(new))
    new_shape, old_shape = backend.shape(new), backend.shape(old)
    same = len(new_shape) == len(old_shape) and all(
        a is None or b is None or a == b for a, b in zip(new_shape, old_shape)
    )
    if not same:
        raise _error(
            ValueError, "step_function", f"returning new state {i} of the state's shape {describe(old)}", describe(new)
        )
    if new.dtype != old.dtype:
        if backend.casts_up(new, old):
            return old.dtype
        raise _error(
            TypeError, "step_function", f"returning new state {i} of the state's dtype {describe(old)}", describe(new)
        )
    return None
