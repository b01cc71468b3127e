"""The sizes, data and layer configurations both Keras suites use (Keras 3 per backend, tf-keras in process)."""

from __future__ import annotations

import numpy as np

B, T, D, U = 3, 5, 4, 4


def lengths_mask(left: bool = False) -> np.ndarray:
    """A (B, T) mask: sample 0 whole, the others padded at the end (with `left`, sample 1 at the start too)."""
    mask = np.ones((B, T), bool)
    mask[1, 4:] = False
    mask[2, 2:] = False
    if left:
        mask[1, :2] = False
    return mask


def inputs(rng: np.random.Generator, features: tuple[int, ...], mask: np.ndarray | None) -> np.ndarray:
    """Fresh (B, T, *features) float32 data, zeros where ``mask`` is False (what Masking reads as padding)."""
    x = rng.standard_normal((B, T, *features)).astype("float32")
    if mask is not None:
        x[~mask] = 0.0
    return x


# Every option value in some row, most pairs of values too; Bidirectional ignores go_backwards (it runs both ways).
CONFIGS = [
    dict(mask=None, go_backwards=False, return_sequences=False, return_state=False, unroll=False),
    dict(mask="Masking", go_backwards=True, return_sequences=True, return_state=True, unroll=False),
    dict(
        mask="explicit",
        go_backwards=False,
        return_sequences=True,
        return_state=False,
        unroll=True,
        zero_output_for_mask=True,
    ),
    dict(mask="Masking", go_backwards=False, return_sequences=False, return_state=True, unroll=True),
    dict(
        mask="explicit",
        go_backwards=True,
        return_sequences=True,
        return_state=True,
        unroll=False,
        zero_output_for_mask=True,
    ),
    dict(mask=None, go_backwards=True, return_sequences=True, return_state=False, unroll=True),
]
