"""The layer configurations both Keras suites run (Keras 3 per backend, tf-keras in process)."""

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
