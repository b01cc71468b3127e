"""Differential tests: rnnscan.rnn against tf_keras.backend.rnn on every backend."""

from __future__ import annotations

import functools
import zlib

import numpy as np
import optree
import pytest

import rnnscan

from cases import Config, configurations, make_case
from oracle import reference

CONFIGS = configurations()


@functools.cache
def _case_and_reference(config: Config):
    case = make_case(config, np.random.default_rng(zlib.crc32(config.id.encode())))
    return case, reference(case)


def assert_trees_close(actual, expected, rtol=1e-5, atol=1e-6):
    a_leaves, a_spec = optree.tree_flatten(actual)
    e_leaves, e_spec = optree.tree_flatten(expected)
    assert a_spec.num_leaves == e_spec.num_leaves, (a_spec, e_spec)
    for a, e in zip(a_leaves, e_leaves):
        assert a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def test_enough_configurations():
    assert len(CONFIGS) >= 300
    assert len({c.id for c in CONFIGS}) == len(CONFIGS)


@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unroll"])
@pytest.mark.parametrize("config", CONFIGS, ids=[c.id for c in CONFIGS])
def test_matches_tf_keras(backend, config, unroll):
    case, expected = _case_and_reference(config)
    last, outputs, states = case.call(rnnscan.rnn, backend, unroll=unroll)
    e_last, e_outputs, e_states = expected
    assert_trees_close(last, e_last)
    assert_trees_close(outputs, e_outputs)
    assert_trees_close(list(states), list(e_states))
    assert optree.tree_structure(outputs) == optree.tree_structure(e_outputs)
