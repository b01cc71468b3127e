"""Property-based differential tests: calls nobody hand-picked, rnnscan vs tf_keras.backend.rnn.

Hypothesis draws a configuration (every feature of `cases.Config` independently: masks of
every pattern and form, inputs of one or two arrays and rank 3 or 4, the cell, extra states,
nested and aliased outputs, list or tuple states, every flag), the data's batch and time
(from 1), dtype and seed, and the loop (unroll or not). The data come from the seed, so the
tf-keras reference of one draw is computed once and shared by the four backends (the `ci`
profile is derandomized: every backend sees the same draws). `pytest --hypothesis-profile=long`
runs 20x more examples.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import rnnscan

from cases import Config, case_data, configs
from frameworks import Framework
from oracle import assert_matches_reference, case_and_reference


@given(config=configs(), data=case_data(), unroll=st.booleans())
def test_matches_tf_keras(backend: Framework, config: Config, data: dict[str, Any], unroll: bool) -> None:
    case, expected = case_and_reference(config, **data)
    assert_matches_reference(case.call(rnnscan.rnn, backend, unroll=unroll), expected, backend=backend)
