"""``rnn()``: validate, normalise, pick the backend, run the loop, shape the result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _tree
from . import _validate as v
from . import _validate_options as o
from ._loop import LoopCall
from ._plan import Plan, segment_length
from .backends import Backend, _compat, backend_for, framework_of


def rnn(
    step_function: Callable[[Any, tuple[Any, ...]], tuple[Any, Sequence[Any]]],
    inputs: Any,
    initial_states: Any,
    go_backwards: bool = False,
    mask: Any = None,
    constants: Sequence[Any] | None = None,
    unroll: bool | int = False,
    input_length: Any = None,
    time_major: bool = False,
    zero_output_for_mask: bool = False,
    return_all_outputs: bool = True,
    *,
    remat: bool | int = False,
    parallel: bool = False,
    max_iterations: int | None = None,
    tolerance: float | None = None,
) -> tuple[Any, Any, Any]:
    """Iterate ``step_function`` over the time axis of ``inputs``, as ``tf.keras.backend.rnn``.

    Args:
        step_function: ``(input_t, states) -> (output_t, new_states)``. ``input_t``
            has the structure of ``inputs`` with leaves ``(batch, ...)``; ``states``
            is a tuple: the current states followed by the ``constants``;
            ``new_states`` is a list or tuple like ``initial_states``.
        inputs: ``(batch, time, ...)`` (``(time, batch, ...)`` with ``time_major``),
            rank >= 3, or a nested structure (tuple, list, dict, namedtuple) of
            such arrays sharing batch and time. Its framework picks the backend:
            NumPy, JAX, PyTorch or TensorFlow.
        initial_states: a list or tuple of states, each an array ``(batch, ...)``
            or a nested structure of them (a single array is one state).
        go_backwards: process time in reverse; ``outputs`` come in processing
            order (the reversed sequence).
        mask: ``(batch, time)`` or ``(batch, time, 1)``, bool or numeric
            (nonzero keeps). At a masked step every state keeps its previous
            value and the output repeats the previous output (zeros before the
            first step), or is zeros with ``zero_output_for_mask``.
        constants: values appended to the states at every step.
        unroll: True: a fully unrolled Python loop instead of the backend's loop
            (it needs a static number of time steps). An int k: k steps per
            iteration of a traced loop (``lax.scan(unroll=k)``, a ``tf.while_loop``
            or torch scan body of k steps; eager loops are unchanged). False or 1: none.
        input_length: with no ``mask``, a ``(batch,)`` integer array of lengths
            masking the steps past each length, or a 0-d one (one length for every
            sample). An int masks nothing, symbolic sizes (``jax.export``,
            ``torch.SymInt``) included.
        time_major: inputs and outputs are ``(time, batch, ...)``.
        zero_output_for_mask: masked steps output zeros.
        return_all_outputs: if False, ``outputs`` is ``(batch, 1, ...)``, the last output.
        remat: keyword-only. True: run the loop in segments of about sqrt(T) steps
            whose residuals the backward pass recomputes from the carry saved at each
            segment's start (training memory O(sqrt(T)) carries instead of O(T)
            residuals); an int k: segments of k steps; False: keep every residual.
            Results and gradients are the same. No effect on NumPy.
        parallel: keyword-only. True: solve for every time step at once by Newton
            iterations (one batched step call and one JVP per state leaf over the whole
            sequence, then a log-depth linear scan, per iteration); see "Parallel over
            time" in the docs. Fast for steps whose new states depend on the states
            elementwise (minGRU, diagonal GRU/LSTM, IndRNN, SRU, QRNN, diagonal SSMs; a
            linear one converges in one iteration). Results and gradients are the
            loop's, within float tolerance: a step that mixes state units, or one that
            does not converge within ``max_iterations``, runs the sequential loop instead,
            with a ``RuntimeWarning``. The step must be deterministic; with a batch of B,
            a constant array whose first axis has size B is taken as per-sample. Not with
            ``unroll=True`` or ``remat``; the number of time steps must be static.
        max_iterations: keyword-only, with ``parallel=True``: the most Newton iterations
            (default 32).
        tolerance: keyword-only, with ``parallel=True``: the residual
            ``max |h_t - f(h_{t-1}, x_t)|`` allowed, relative to ``1 + max |h|`` (default:
            ``eps ** 0.75`` of the states' dtype, about 6e-6 in float32).

    Returns:
        ``(last_output, outputs, new_states)``: ``last_output`` ``(batch, ...)``,
        ``outputs`` ``(batch, time, ...)`` (structured like the step's output) and
        ``new_states`` structured like ``initial_states``.
    """
    v.check_step_function(step_function)
    go_backwards, time_major, zero_output_for_mask, return_all_outputs = v.as_flags(
        go_backwards=go_backwards,
        time_major=time_major,
        zero_output_for_mask=zero_output_for_mask,
        return_all_outputs=return_all_outputs,
    )
    unroll, remat = o.as_unroll(unroll), o.as_remat(remat)
    parallel_options = o.as_parallel(parallel, max_iterations, tolerance, unroll=unroll, remat=remat)
    input_leaves, inputs_spec = _tree.flatten(inputs)
    state_seq = v.as_state_sequence(initial_states, _is_array)
    state_leaves, states_spec = _tree.flatten(state_seq)
    constants = v.as_constants(constants, _is_array)

    backend = backend_for([*input_leaves, *state_leaves])
    if backend is None:
        given = v.describe(input_leaves[0]) if input_leaves else v.describe(inputs)
        raise TypeError(
            f"rnnscan.rnn: `inputs` must be NumPy, JAX, PyTorch or TensorFlow arrays (or a nested "
            f"structure of them); got {given}."
        )
    v.check_same_framework(backend, "inputs", input_leaves, arrays_only=True)
    v.check_same_framework(backend, "initial_states", state_leaves, arrays_only=True)
    v.check_same_framework(backend, "constants", _tree.leaves(constants), arrays_only=False)
    device = backend.device_of(next((x for x in input_leaves if backend.owns(x)), None))
    input_leaves = [backend.asarray(x, device=device) for x in input_leaves]
    state_leaves = [backend.asarray(s, device=device) for s in state_leaves]
    constant_leaves, constants_spec = _tree.flatten(constants)
    constants = _tree.unflatten(constants_spec, [_as_constant(backend, c, device) for c in constant_leaves])

    time_steps, batch = v.check_inputs(backend, input_leaves, time_major)
    v.check_states(backend, state_leaves, batch)
    if mask is not None:
        mask = v.as_mask(backend, mask, has_states=bool(state_leaves), device=device)
        v.check_mask(backend, mask, time_steps=time_steps, batch=batch, time_major=time_major)
        lengths = None
    else:
        lengths = v.as_lengths(backend, input_length, batch=batch, time_steps=time_steps, device=device)
    o.check_static_time(unroll, time_steps)
    o.check_remat_time(backend, remat, time_steps)
    if parallel_options is not None:
        o.check_parallel(backend, state_leaves, time_steps)

    # Normalise once: time first, masks as (time, batch) bool, in processing order.
    if not time_major:
        input_leaves = [backend.swap_batch_time(x) for x in input_leaves]
    step_mask = None
    if mask is not None:
        step_mask = _mask_in_processing_order(backend, mask, time_major, go_backwards)
    elif lengths is not None:
        step_mask = _lengths_to_mask(backend, lengths, input_leaves[0], go_backwards)
    if go_backwards:
        input_leaves = [backend.flip_time(x) for x in input_leaves]

    call = LoopCall(
        step_function=step_function,
        constants=constants,
        inputs_spec=inputs_spec,
        states_spec=states_spec,
        batch=batch,
        zero_output_for_mask=zero_output_for_mask,
        return_all_outputs=return_all_outputs,
        unroll_fully=unroll is True,
        plan=Plan(unroll=1 if unroll is True else unroll, segment=segment_length(remat, time_steps)),
        parallel=parallel_options,
    )
    state_leaves, last_leaves, output_leaves, output_spec = backend.run(call, state_leaves, input_leaves, step_mask)

    if output_leaves is None:
        output_leaves = [backend.expand_front(o) for o in last_leaves]
    if not time_major:
        output_leaves = [backend.swap_batch_time(o) for o in output_leaves]
    return (
        _tree.unflatten(output_spec, last_leaves),
        _tree.unflatten(output_spec, output_leaves),
        _tree.unflatten(states_spec, state_leaves),
    )


_compat.tf_call_unconverted(rnn)


def _is_array(x: Any) -> bool:
    return framework_of(x) is not None


def _as_constant(backend: Backend, x: Any, device: Any) -> Any:
    """A constant leaf as the backend's array, as states are; Python scalars stay as they are."""
    return backend.asarray(x, device=device) if isinstance(x, (np.ndarray, np.generic)) or backend.owns(x) else x


def _mask_in_processing_order(backend: Backend, mask: Any, time_major: bool, go_backwards: bool) -> Any:
    """A ``(batch, time[, 1])`` (or time-major) mask as ``(time, batch)`` bool, reversed if need be."""
    if len(backend.shape(mask)) == 3:
        mask = mask[..., 0]
    mask = backend.to_bool(mask)
    if not time_major:
        mask = backend.swap_batch_time(mask)
    return backend.flip_time(mask) if go_backwards else mask


def _lengths_to_mask(backend: Backend, lengths: Any, inputs: Any, go_backwards: bool) -> Any:
    """``(time, batch)`` bool: step ``t`` of the processing order is kept.

    ``lengths`` is ``(batch,)``, or ``()`` for one length shared by every sample;
    ``inputs`` ``(time, batch, ...)`` gives the time and batch sizes. Forward, sample
    ``b`` keeps ``t < lengths[b]``. Backward, tf-keras keeps ``t > max(lengths) - 1 -
    lengths[b]``: the last ``lengths[b]`` processing steps when the longest length
    equals the number of time steps.
    """
    t = backend.reshape(backend.arange(backend.time_steps(inputs), like=lengths), (-1, 1))
    shared = len(backend.shape(lengths)) == 0
    if shared:  # a 0-d length: (time, 1), broadcast to (time, batch) below
        lengths = backend.reshape(lengths, (1,))
    if go_backwards:
        mask = backend.reshape(backend.max_length(lengths) - 1 - lengths, (1, -1)) < t
    else:
        mask = backend.reshape(lengths, (1, -1)) > t
    if shared:
        mask = backend.logical_or(mask, backend.false_like(inputs[(..., *(0,) * (len(backend.shape(inputs)) - 2))]))
    return mask
