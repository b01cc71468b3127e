"""Differential tests: rnnscan.rnn against tf_keras.backend.rnn on every backend."""

from __future__ import annotations

import pytest

import rnnscan

from cases import configurations
from oracle import assert_matches_reference, case_and_reference

CONFIGS = configurations()


def test_enough_configurations():
    assert len(CONFIGS) >= 300
    assert len({c.id for c in CONFIGS}) == len(CONFIGS)


@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unroll"])
@pytest.mark.parametrize("config", CONFIGS, ids=[c.id for c in CONFIGS])
def test_matches_tf_keras(backend, config, unroll):
    case, expected = case_and_reference(config)
    assert_matches_reference(case.call(rnnscan.rnn, backend, unroll=unroll), expected)
