"""tf-keras's `backend.rnn` symbolic loop (unroll=False), the reference for every backend."""

from __future__ import annotations

import functools
import zlib
from typing import Any

import numpy as np
import optree

from cases import Case, Config, make_case
from frameworks import framework


def reference(case: Case) -> Any:
    """tf-keras's (last_output, outputs, new_states) for `case`, as NumPy."""
    import tf_keras

    return case.call(tf_keras.backend.rnn, framework("tensorflow"), unroll=False)


@functools.cache
def case_and_reference(config: Config) -> tuple[Case, Any]:
    """The case of `config` (data seeded by its id) and tf-keras's result on it."""
    case = make_case(config, np.random.default_rng(zlib.crc32(config.id.encode())))
    return case, reference(case)


def assert_trees_close(actual: Any, expected: Any, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Same number of leaves, same shapes, values within `rtol`/`atol`."""
    a_leaves, a_spec = optree.tree_flatten(actual)
    e_leaves, e_spec = optree.tree_flatten(expected)
    assert a_spec.num_leaves == e_spec.num_leaves, (a_spec, e_spec)
    for a, e in zip(a_leaves, e_leaves):
        assert a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def assert_matches_reference(result: Any, expected: Any, atol: float = 1e-6) -> None:
    """`(last_output, outputs, new_states)` as NumPy against tf-keras's, structure included."""
    (last, outputs, states), (e_last, e_outputs, e_states) = result, expected
    assert_trees_close(last, e_last, atol=atol)
    assert_trees_close(outputs, e_outputs, atol=atol)
    assert_trees_close(list(states), list(e_states), atol=atol)
    assert optree.tree_structure(outputs) == optree.tree_structure(e_outputs)
