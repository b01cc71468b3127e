"""tf-keras's `backend.rnn` symbolic loop (unroll=False), the reference for every backend."""

from __future__ import annotations

from typing import Any

from cases import Case
from frameworks import framework


def reference(case: Case) -> Any:
    """tf-keras's (last_output, outputs, new_states) for `case`, as NumPy."""
    import tf_keras

    return case.call(tf_keras.backend.rnn, framework("tensorflow"), unroll=False)
