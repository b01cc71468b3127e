"""Differential tests on the fixed grid: rnnscan.rnn against tf_keras.backend.rnn on every
backend, each of the 400 configurations with rnnscan's loop and unrolled."""

from __future__ import annotations

import pytest

import rnnscan

from cases import configurations
from oracle import assert_matches_reference, case_and_reference

CONFIGS = configurations()


@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unroll"])
@pytest.mark.parametrize("config", CONFIGS, ids=[c.id for c in CONFIGS])
def test_matches_tf_keras(backend, config, unroll):
    case, expected = case_and_reference(config)
    assert_matches_reference(case.call(rnnscan.rnn, backend, unroll=unroll), expected, backend=backend)
