"""tf-keras's `backend.rnn` symbolic loop (unroll=False), the reference for every backend,
and the one comparator of rnnscan's results against it."""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import optree

from cases import Case, Config, make_case
from frameworks import Framework, framework

# The one deliberate difference in structure: tf-keras's symbolic loop returns `new_states` as a
# tuple (its while_loop's loop variables; its unrolled path returns the step's own list), whatever
# container `initial_states` came in. rnnscan returns `new_states` in the container of
# `initial_states` (README, "Semantics"). Only that outer container may differ; the structure
# inside it, and that of last_output and outputs, is tf-keras's.
STATES_CONTAINER_EXCEPTION = "new_states: the container of initial_states, where tf-keras returns a tuple"

# rtol, atol by the dtype a backend computes in.
TOLERANCES = {np.dtype(np.float32): (1e-5, 1e-6), np.dtype(np.float64): (1e-9, 1e-12)}


@dataclass(frozen=True)
class Reference:
    """tf-keras's (last_output, outputs, new_states) as NumPy for `case`."""

    case: Case
    result: tuple[Any, Any, Any]


def reference(case: Case) -> Reference:
    """tf-keras's result for `case`."""
    import tf_keras

    return Reference(case, case.call(tf_keras.backend.rnn, framework("tensorflow"), unroll=False))


@functools.cache
def case_and_reference(
    config: Config, batch: int = 3, time: int = 6, dtype: str = "float32", seed: int | None = None
) -> tuple[Case, Reference]:
    """The case of `config` (data seeded by `seed`, by default by the config's id) and tf-keras's result on it."""
    rng = np.random.default_rng(zlib.crc32(config.id.encode()) if seed is None else seed)
    case = make_case(config, rng, batch=batch, time=time, dtype=dtype)
    return case, reference(case)


def assert_trees_close(actual: Any, expected: Any, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Same number of leaves, same shapes, values within `rtol`/`atol` (structure not compared)."""
    a_leaves, a_spec = optree.tree_flatten(actual)
    e_leaves, e_spec = optree.tree_flatten(expected)
    assert a_spec.num_leaves == e_spec.num_leaves, (a_spec, e_spec)
    for a, e in zip(a_leaves, e_leaves):
        assert a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def assert_matches_reference(
    result: Any,
    expected: Reference,
    *,
    backend: Framework | None = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """rnnscan's `(last_output, outputs, new_states)` as NumPy against tf-keras's: the structure of
    all three (but for STATES_CONTAINER_EXCEPTION), then every leaf's shape, dtype and values.

    Each leaf has tf-keras's dtype, or the one `backend` stores the case's data in (JAX without
    x64 keeps float64 data as float32). Tolerances follow that dtype unless given.
    """
    (last, outputs, states), (e_last, e_outputs, e_states) = result, expected.result
    assert optree.tree_structure(last) == optree.tree_structure(e_last), ("last_output", last, e_last)
    assert optree.tree_structure(outputs) == optree.tree_structure(e_outputs), ("outputs", outputs, e_outputs)
    # STATES_CONTAINER_EXCEPTION: tf-keras's tuple (this fails first if tf-keras ever changes it) ...
    assert type(e_states) is tuple, type(e_states)
    # ... against the caller's container, with tf-keras's structure inside.
    initial = expected.case.initial_states
    assert type(states) is type(initial), (STATES_CONTAINER_EXCEPTION, type(states), type(initial))
    assert optree.tree_structure(tuple(states)) == optree.tree_structure(e_states), ("new_states", states, e_states)
    for a, e in zip(optree.tree_leaves(result), optree.tree_leaves(expected.result)):
        dtype = e.dtype if backend is None else backend.to_numpy(backend.asarray(np.zeros(1, e.dtype))).dtype
        assert (a.shape, a.dtype) == (e.shape, dtype), ((a.shape, a.dtype), (e.shape, dtype))
        default_rtol, default_atol = TOLERANCES[dtype]
        np.testing.assert_allclose(
            a, e, rtol=default_rtol if rtol is None else rtol, atol=default_atol if atol is None else atol
        )
