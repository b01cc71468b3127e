"""Where Keras 3's own loop is known to be wrong: the named cases, shared by the worker and tests/test_keras.py.

In each named case rnnscan is compared with tf-keras instead, and Keras 3's failure is asserted too,
so that the tests notice when Keras fixes it.
"""

from __future__ import annotations

from typing import Any

# Keras 3's jax and numpy ``backend.rnn`` (keras/src/backend/{jax,numpy}/rnn.py, Keras 3.15): its masked scan
# takes ``states[0]`` for the previous output and broadcasts a (batch, 1) mask; its unrolled loop has no
# zero_output_for_mask; neither passes ``constants`` to the step (scan) or reads input_length / return_all_outputs.
WRONG_ON = ("jax", "numpy")

MASKED_FIRST_STEP = "masked first step after a nonzero initial state repeats the state"
CONV_MASK = "masked ConvLSTM scan: the (batch, 1) mask does not broadcast against rank-3+ states"
UNROLL_ZERO_OUTPUT = "unroll=True ignores zero_output_for_mask"
CONSTANTS = "constants dropped"
INPUT_LENGTH = "input_length ignored (jax, numpy) or refused (torch, tensorflow: `input_length or T` on an array)"
RETURN_ALL_OUTPUTS = "return_all_outputs ignored"
FIRST_STATE_OUTPUT = "masked output taken from the first state"
UNROLL_BACKWARDS_ZERO = (
    "unroll=True with go_backwards and zero_output_for_mask zeroes outputs by the un-reversed mask"
    " (tf-keras's unrolled path too: the symbolic loop is the reference)"
)
TORCH_UNROLL_BACKWARDS = "unroll=True with a mask and go_backwards raises (torch.flip of a tuple)"

# The backends whose Keras 3 loop is wrong in each named case (keras/src/backend/torch/rnn.py: the unrolled
# masked loop calls torch.flip on the tuple of torch.unbind).
WRONG = {
    MASKED_FIRST_STEP: WRONG_ON,
    CONV_MASK: WRONG_ON,
    UNROLL_ZERO_OUTPUT: WRONG_ON,
    CONSTANTS: WRONG_ON,
    INPUT_LENGTH: ("jax", "numpy", "torch", "tensorflow"),
    RETURN_ALL_OUTPUTS: WRONG_ON,
    FIRST_STATE_OUTPUT: WRONG_ON,
    TORCH_UNROLL_BACKWARDS: ("torch",),
    UNROLL_BACKWARDS_ZERO: ("tensorflow",),
}


def zero_output(layer: str, cfg: dict[str, Any]) -> bool:
    """The layer's effective zero_output_for_mask (Bidirectional forces it to return_sequences)."""
    if layer.startswith("Bidirectional"):
        return bool(cfg["return_sequences"])
    if layer.startswith("ConvLSTM"):
        return False  # not passed to ConvLSTM (see rnn_kwargs)
    return bool(cfg.get("zero_output_for_mask", False))


def layer_bug(layer: str, cfg: dict[str, Any], backend: str) -> str | None:
    """The named Keras 3 bug a layer configuration (no initial state, zeros before) meets on `backend`, if any.

    Its reference is tf-keras's symbolic loop (``unroll=False``), which rnnscan follows for both settings.
    """
    if cfg["mask"] is None:
        return None
    backwards = cfg["go_backwards"] or layer.startswith("Bidirectional")
    if backend == "torch" and cfg["unroll"] and backwards:
        return TORCH_UNROLL_BACKWARDS
    if backend == "tensorflow" and cfg["unroll"] and backwards and zero_output(layer, cfg):
        return UNROLL_BACKWARDS_ZERO
    if backend not in WRONG_ON:
        return None
    if cfg["unroll"]:
        return UNROLL_ZERO_OUTPUT if zero_output(layer, cfg) else None
    return CONV_MASK if layer.startswith("ConvLSTM") else None


def rnn_kwargs(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """A configuration row's recurrent layer arguments (ConvLSTM and Bidirectional: no zero_output_for_mask)."""
    keys = ["go_backwards", "return_sequences", "return_state", "unroll"]
    if not name.startswith(("ConvLSTM", "Bidirectional")):
        keys.append("zero_output_for_mask")
    return {k: cfg[k] for k in keys if k in cfg}
