"""The error catalogue: one row per malformed call, each run on every backend.

A row names the call, says how it spoils the well-formed call `rnn(step, x, [h])` (the
keyword arguments it changes, made from the backend's arrays by a `Kit`), and the error:
its exception type, the argument its message must name and a fragment of the given value
its message must show. The same table renders docs/errors.md (``python tests/test_errors.py``
rewrites it; ``test_doc_in_sync`` fails when the two drift apart).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rnnscan

from frameworks import BACKENDS, Framework, framework

DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"
B, T, D, U = 3, 5, 2, 4  # the well-formed call's batch, time, input features and units
MESSAGE = re.compile(r"^rnnscan\.rnn: `(?P<argument>\w+)` must be (?P<expected>.+); got (?P<given>.+)\.$", re.DOTALL)

# A framework whose arrays are foreign to each backend (NumPy's own foreign is
# PyTorch: NumPy arrays mix into any call, the reverse is refused).
_FOREIGN = {"numpy": "torch", "jax": "torch", "torch": "jax", "tensorflow": "torch"}


class Kit:
    """Arrays of one framework, and the well-formed call each row spoils one part of."""

    def __init__(self, fw: Framework, rng: np.random.Generator, rnn: Callable[..., Any] = rnnscan.rnn) -> None:
        self.fw = fw
        self.rng = rng
        self.rnn = rnn  # the function under test (tf-keras's for the reference rows' comparison)
        self.foreign = framework(_FOREIGN[fw.name])
        self.w = fw.asarray(rng.standard_normal((D, U)).astype(np.float32))
        self.u = fw.asarray(rng.standard_normal((U, U)).astype(np.float32))

    def x(self, *shape: int, dtype: Any = np.float32, fw: Framework | None = None) -> Any:
        return (fw or self.fw).asarray(self.rng.standard_normal(shape).astype(dtype))

    def ints(self, *values: Any, fw: Framework | None = None) -> Any:
        return (fw or self.fw).asarray(np.array(values, dtype=np.int32))

    def keep(self, *shape: int, fw: Framework | None = None) -> Any:
        return (fw or self.fw).asarray(self.rng.random(shape) > 0.3)

    def mixed(self, *shape: int) -> list[Any]:
        """Arrays of `shape` of one call's frameworks, the last one foreign to the backend the call picks."""
        if self.fw.name == "numpy":  # NumPy + PyTorch runs on PyTorch; a JAX array is then foreign
            frameworks = [self.fw, framework("torch"), framework("jax")]
        else:
            frameworks = [self.fw, self.foreign]
        return [self.x(*shape, fw=f) for f in frameworks]

    def new_state(self, x: Any, states: tuple[Any, ...]) -> Any:
        return self.fw.tanh(x @ self.w + states[0] @ self.u)

    def step(self, x: Any, states: tuple[Any, ...]) -> Any:
        h = self.new_state(x, states)
        return h, [h]

    def call(self, **change: Any) -> dict[str, Any]:
        call: dict[str, Any] = dict(step_function=self.step, inputs=self.x(B, T, D), initial_states=[self.x(B, U)])
        call.update(change)
        return call


@dataclass(frozen=True)
class Row:
    name: str
    call: str  # the malformed call, as the catalogue shows it
    change: Callable[[Kit], dict[str, Any]]  # the keyword arguments that spoil the well-formed call
    exception: type[Exception]
    argument: str  # the argument the message names
    given: str  # a fragment of what the message says was given
    ref: bool = False  # one of the errors the reference page of tf.keras.backend.rnn lists
    step_runs: bool = False  # the error is about the step function's first result
    backends: tuple[str, ...] = BACKENDS


def Result(name: str, call: str, change: Callable[[Kit], dict[str, Any]], exception: type, given: str) -> Row:
    """A row whose step function returns something malformed (raised at its first call)."""
    return Row(name, call, change, exception, "step_function", given, step_runs=True)


def returning(result: Callable[[Kit, Any], Any]) -> Callable[[Kit], dict[str, Any]]:
    """The change to a step function returning ``result(kit, h)``, h the well-formed new state."""
    return lambda k: dict(step_function=lambda x, states: result(k, k.new_state(x, states)))


def _no_states(x: Any, _states: Any) -> Any:  # a step of no states
    return x, []


def _drop_axis_1(_x: Any, states: Any) -> Any:  # the state without its axis 1
    return states[0][:, 0], [states[0][:, 0]]


def _echo(x: Any, _states: Any) -> Any:  # its input as the output and the new state
    return x, [x]


def _unknown_time(k: Kit) -> dict[str, Any]:
    """The call in a tf.function traced for inputs of shape (3, None, 2), not yet traced."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([B, None, D], tf.float32)], autograph=False)
    def run(x: Any) -> Any:
        return k.rnn(k.step, x, [tf.zeros([B, U])], unroll=True)

    return {"traced": run}


# Each row: the name and the call as the catalogue shows it; then the keyword arguments the call
# changes, the exception, the argument its message names (a Result's: step_function) and a
# fragment of what it says was given.
# fmt: off
ROWS = [
    # -- the step function itself, and the flags
    Row("step_not_callable", "`step_function=None`",
        lambda _: dict(step_function=None), TypeError, "step_function", "NoneType"),
    Row("step_a_string", "`step_function='lstm'`",
        lambda _: dict(step_function="lstm"), TypeError, "step_function", "str 'lstm'"),
    Row("go_backwards_str", "`go_backwards='yes'`",
        lambda _: dict(go_backwards="yes"), TypeError, "go_backwards", "str 'yes'"),
    Row("unroll_float", "`unroll=1.5`",
        lambda _: dict(unroll=1.5), TypeError, "unroll", "float 1.5"),
    Row("unroll_zero", "`unroll=0`",
        lambda _: dict(unroll=0), ValueError, "unroll", "int 0"),
    Row("remat_str", "`remat='yes'`",
        lambda _: dict(remat="yes"), TypeError, "remat", "str 'yes'"),
    Row("remat_negative", "`remat=-2`",
        lambda _: dict(remat=-2), ValueError, "remat", "int -2"),
    Row("time_major_none", "`time_major=None`",
        lambda _: dict(time_major=None), TypeError, "time_major", "NoneType"),
    Row("zero_output_float", "`zero_output_for_mask=0.0`",
        lambda _: dict(zero_output_for_mask=0.0), TypeError, "zero_output_for_mask", "float 0.0"),
    Row("return_all_outputs_str", "`return_all_outputs='last'`",
        lambda _: dict(return_all_outputs="last"), TypeError, "return_all_outputs", "str 'last'"),
    # -- inputs
    Row("inputs_rank2", "`inputs` of shape (3, 5): no feature axis",
        lambda k: dict(inputs=k.x(B, T)), ValueError, "inputs", "shape (3, 5)", ref=True),
    Row("inputs_nested_rank2", "nested `inputs` with one leaf of shape (3, 5)",
        lambda k: dict(inputs={"a": k.x(B, T, D), "b": k.x(B, T)}), ValueError, "inputs", "shape (3, 5)", ref=True),
    Row("inputs_time_major_rank2", "`inputs` of shape (5, 3) with `time_major=True`",
        lambda k: dict(inputs=k.x(T, B), time_major=True), ValueError, "inputs", "shape (5, 3)", ref=True),
    Row("inputs_nested_time_mismatch", "nested `inputs` of 5 and 6 time steps",
        lambda k: dict(inputs={"a": k.x(B, T, D), "b": k.x(B, T + 1, D)}), ValueError, "inputs", "shape (3, 6, 2)"),
    Row("inputs_nested_batch_mismatch", "nested `inputs` of batch 3 and 2",
        lambda k: dict(inputs=(k.x(B, T, D), k.x(B - 1, T, D))), ValueError, "inputs", "shape (2, 5, 2)"),
    Row("inputs_time_major_batch_mismatch", "nested time-major `inputs` of batch 3 and 2",
        lambda k: dict(inputs=[k.x(T, B, D), k.x(T, B - 1, D)], time_major=True), ValueError, "inputs",
        "shape (5, 2, 2)"),
    Row("inputs_zero_time", "`inputs` of shape (3, 0, 2): an empty time axis",
        lambda k: dict(inputs=k.x(B, 0, D)), ValueError, "inputs", "shape (3, 0, 2)"),
    Row("inputs_zero_time_time_major", "`inputs` of shape (0, 3, 2) with `time_major=True`",
        lambda k: dict(inputs=k.x(0, B, D), time_major=True), ValueError, "inputs", "shape (0, 3, 2)"),
    Row("inputs_empty_structure", "`inputs={}`: no arrays",
        lambda _: dict(inputs={}), ValueError, "inputs", "no arrays"),
    Row("inputs_none", "`inputs=None`",
        lambda _: dict(inputs=None), ValueError, "inputs", "no arrays"),
    Row("inputs_string", "`inputs='abc'`",
        lambda _: dict(inputs="abc"), TypeError, "inputs", "str 'abc'"),
    Row("inputs_two_frameworks", "nested `inputs` whose leaves come from two frameworks",
        lambda k: dict(inputs=dict(zip("012", k.mixed(B, T, D)))), TypeError, "inputs", "array ("),
    # -- initial_states
    Row("states_dict", "`initial_states={'h': h}`: not a list or tuple",
        lambda k: dict(initial_states={"h": k.x(B, U)}), TypeError, "initial_states", "dict of length 1"),
    Row("states_rank1", "a state of shape (3,): no feature axis",
        lambda k: dict(initial_states=[k.x(B)]), ValueError, "initial_states", "shape (3,)"),
    Row("states_batch_mismatch", "a state of batch 2 for inputs of batch 3",
        lambda k: dict(initial_states=[k.x(B - 1, U)]), ValueError, "initial_states", "shape (2, 4)"),
    Row("states_string", "`initial_states=['abc']`",
        lambda _: dict(initial_states=["abc"]), TypeError, "initial_states", "str 'abc'"),
    Row("states_two_frameworks", "states from two frameworks",
        lambda k: dict(initial_states=k.mixed(B, U)), TypeError, "initial_states", "array ("),
    # -- constants
    Row("constants_dict", "`constants={'c': c}`: not a list or tuple",
        lambda k: dict(constants={"c": k.x(B, U)}), TypeError, "constants", "dict of length 1"),
    Row("constants_foreign", "`constants` from another framework",
        lambda k: dict(constants=[k.x(B, U, fw=k.foreign)]), TypeError, "constants", "array ("),
    # -- mask
    Row("mask_without_states", "a `mask` with `initial_states=[]`",
        lambda k: dict(step_function=_no_states, initial_states=[], mask=k.keep(B, T)), ValueError, "initial_states",
        "no states", ref=True),
    Row("mask_wrong_batch", "`mask` of shape (2, 5) for inputs (3, 5, 2)",
        lambda k: dict(mask=k.keep(B - 1, T)), ValueError, "mask", "shape (2, 5)"),
    Row("mask_wrong_time", "`mask` of shape (3, 6) for inputs (3, 5, 2)",
        lambda k: dict(mask=k.keep(B, T + 1)), ValueError, "mask", "shape (3, 6)"),
    Row("mask_batch_major_with_time_major", "`mask` of shape (3, 5) (batch-major) with time-major inputs (5, 3, 2)",
        lambda k: dict(inputs=k.x(T, B, D), mask=k.keep(B, T), time_major=True), ValueError, "mask", "shape (3, 5)"),
    Row("mask_rank1", "`mask` of shape (3,)",
        lambda k: dict(mask=k.keep(B)), ValueError, "mask", "shape (3,)"),
    Row("mask_rank4", "`mask` of shape (3, 5, 1, 1)",
        lambda k: dict(mask=k.keep(B, T, 1, 1)), ValueError, "mask", "shape (3, 5, 1, 1)"),
    Row("mask_last_axis_2", "`mask` of shape (3, 5, 2)",
        lambda k: dict(mask=k.keep(B, T, 2)), ValueError, "mask", "shape (3, 5, 2)"),
    Row("mask_scalar", "`mask=True`",
        lambda _: dict(mask=True), ValueError, "mask", "shape ()"),
    Row("mask_list", "`mask` as a Python list of lists",
        lambda _: dict(mask=[[1] * T] * B), TypeError, "mask", "list of length 3"),
    Row("mask_foreign", "`mask` from another framework",
        lambda k: dict(mask=k.keep(B, T, fw=k.foreign)), TypeError, "mask", "array ("),
    # -- input_length
    Row("input_length_negative", "`input_length=[2, -1, 5]`",
        lambda k: dict(input_length=k.ints(2, -1, 5)), ValueError, "input_length", "lengths from -1 to 5"),
    Row("input_length_too_long", "`input_length=[2, 6, 5]` for 5 time steps",
        lambda k: dict(input_length=k.ints(2, 6, 5)), ValueError, "input_length", "lengths from 2 to 6"),
    Row("input_length_int_negative", "`input_length=-1`",
        lambda _: dict(input_length=-1), ValueError, "input_length", "int -1"),
    Row("input_length_int_too_long", "`input_length=6` for 5 time steps",
        lambda _: dict(input_length=T + 1), ValueError, "input_length", "int 6"),
    Row("input_length_float", "`input_length` of dtype float32",
        lambda k: dict(input_length=k.x(B)), TypeError, "input_length", "dtype float32"),
    Row("input_length_rank2", "`input_length` of shape (3, 1)",
        lambda k: dict(input_length=k.ints([2], [2], [2])), ValueError, "input_length", "shape (3, 1)"),
    Row("input_length_wrong_batch", "`input_length` of shape (2,) for batch 3",
        lambda k: dict(input_length=k.ints(2, 3)), ValueError, "input_length", "shape (2,)"),
    Row("input_length_list", "`input_length=[2, 3, 5]` as a Python list",
        lambda _: dict(input_length=[2, 3, 5]), TypeError, "input_length", "list of length 3"),
    Row("input_length_bool", "`input_length=True`",
        lambda _: dict(input_length=True), TypeError, "input_length", "bool True"),
    Row("input_length_foreign", "`input_length` from another framework",
        lambda k: dict(input_length=k.ints(2, 3, 5, fw=k.foreign)), TypeError, "input_length", "array ("),
    # -- what the step function returns (checked at its first call)
    Result("step_not_a_pair", "step returns `h`",
           returning(lambda _, h: h), TypeError, "shape (3, 4)"),
    Result("step_triple", "step returns `(h, [h], h)`",
           returning(lambda _, h: (h, [h], h)), TypeError, "tuple of length 3"),
    Result("step_states_not_a_list", "step returns `(h, h)`: new_states not a list",
           returning(lambda _, h: (h, h)), TypeError, "shape (3, 4)"),
    Result("step_too_many_states", "step returns `(h, [h, h])` for one state",
           returning(lambda _, h: (h, [h, h])), ValueError, "2 new states"),
    Result("step_no_states", "step returns `(h, [])` for one state",
           returning(lambda _, h: (h, [])), ValueError, "0 new states"),
    Result("step_state_structure", "step returns `(h, [{'h': h}])` for an array state",
           returning(lambda _, h: (h, [{"h": h}])), ValueError, "PyTreeSpec({'h': *})"),
    Result("step_state_shape", "step returns a new state of shape (3, 2) for a state (3, 4)",
           returning(lambda _, h: (h, [h[:, :2]])), ValueError, "shape (3, 2)"),
    Result("step_state_rank", "step returns a new state of shape (3, 4) for a state (3, 2, 4)",
           lambda k: dict(initial_states=[k.x(B, 2, U)], step_function=_drop_axis_1), ValueError, "shape (3, 4)"),
    Result("step_state_dtype", "step returns a float32 new state for an int32 state",
           lambda k: dict(initial_states=[k.x(B, D, dtype=np.int32)], step_function=_echo), TypeError, "dtype float32"),
    Result("step_state_foreign", "step returns a new state from another framework",
           returning(lambda k, h: (h, [k.x(B, U, fw=k.foreign)])), TypeError, "of shape (3, 4)"),
    Result("step_output_none", "step returns `(None, [h])`",
           returning(lambda _, h: (None, [h])), ValueError, "NoneType"),
    Result("step_output_no_batch", "step returns an output of shape (4,)",
           returning(lambda _, h: (h[0], [h])), ValueError, "shape (4,)"),
    Result("step_output_rank1", "step returns an output of shape (3,)",
           returning(lambda _, h: (h[:, 0], [h])), ValueError, "shape (3,)"),
    Result("step_output_batch", "step returns an output of batch 2",
           returning(lambda _, h: (h[:2], [h])), ValueError, "shape (2, 4)"),
    Result("step_output_foreign", "step returns an output from another framework",
           returning(lambda k, h: (k.x(B, 5, fw=k.foreign), [h])), TypeError, "of shape (3, 5)"),
    # -- a time axis of unknown length (only TensorFlow graphs have one)
    Row("unroll_unknown_time", "`unroll=True` in a `tf.function` whose inputs have time `None`",
        _unknown_time, ValueError, "unroll", "unknown time dimension", ref=True, backends=("tensorflow",)),
]
# fmt: on

EVERY_BACKEND = [r for r in ROWS if r.backends == BACKENDS]
SOME_BACKENDS = [pytest.param(r, b, id=f"{r.name}-{b}") for r in ROWS if r.backends != BACKENDS for b in r.backends]
REFERENCE = [r for r in ROWS if r.ref]
# The reference page lists a ValueError for a mask without states, but tf-keras's loop runs such a call.
TF_KERAS_RUNS = {"mask_without_states"}


def _raise(row: Row, kit: Kit) -> tuple[BaseException, int]:
    """Make the row's call with `kit.rnn`; return the exception it raised and how often the step function ran."""
    call = kit.call(**row.change(kit))
    if "traced" in call:
        with pytest.raises(row.exception) as info:
            call["traced"].get_concrete_function()
        return info.value, 0
    calls = [0]
    step = call.pop("step_function")
    if callable(step):
        user_step = step

        def step(*args: Any) -> Any:
            calls[0] += 1
            return user_step(*args)

    with pytest.raises(row.exception) as info:
        kit.rnn(step, **call)
    return info.value, calls[0]


def _check(row: Row, error: BaseException, step_calls: int) -> None:
    assert type(error) is row.exception, f"{type(error).__name__}: {error}"
    match = MESSAGE.match(str(error))
    assert match, f"message not of the catalogue's form: {error}"
    assert match["argument"] == row.argument, str(error)
    assert row.given in match["given"], f"{row.given!r} not in {match['given']!r}"
    # Raised before any loop runs: argument errors before the step function is called,
    # result errors at its first call.
    assert step_calls == (1 if row.step_runs else 0)


@pytest.mark.parametrize("row", EVERY_BACKEND, ids=[r.name for r in EVERY_BACKEND])
def test_error(backend: Framework, rng: np.random.Generator, row: Row) -> None:
    _check(row, *_raise(row, Kit(backend, rng)))


@pytest.mark.parametrize(("row", "backend_name"), SOME_BACKENDS)
def test_error_where_expressible(row: Row, backend_name: str, rng: np.random.Generator) -> None:
    _check(row, *_raise(row, Kit(framework(backend_name), rng)))


@pytest.mark.parametrize("row", REFERENCE, ids=[r.name for r in REFERENCE])
def test_reference_errors_are_raised_as_tf_keras_raises_them(row: Row, rng: np.random.Generator) -> None:
    """The errors tf-keras's reference page lists: tf-keras raises the row's exception type for the
    same call on TensorFlow tensors (code catching tf-keras's error catches rnnscan's)."""
    import tf_keras

    kit = Kit(framework("tensorflow"), rng, rnn=tf_keras.backend.rnn)
    if row.name in TF_KERAS_RUNS:  # rnnscan refuses what the page says is refused
        kit.rnn(**kit.call(**row.change(kit)))
        return
    _raise(row, kit)


@pytest.mark.parametrize("tracer", ["jax.jit", "tf.function"])
def test_input_length_range_is_not_checked_when_traced(tracer: str, rng: np.random.Generator) -> None:
    """Symbolic lengths have no values to check: the call traces and runs (as tf-keras: a length
    past the end masks nothing, a negative one masks every step)."""
    lengths = np.array([T + 2, -1, 2], np.int32)
    fw = framework("jax" if tracer == "jax.jit" else "tensorflow")
    call = Kit(fw, rng).call()
    step, x, states = call["step_function"], call["inputs"], call["initial_states"]
    if tracer == "jax.jit":
        import jax

        run = jax.jit(lambda n: rnnscan.rnn(step, x, states, input_length=n))
    else:
        import tensorflow as tf

        run = tf.function(lambda n: rnnscan.rnn(step, x, states, input_length=n))
    last, outputs, _ = fw.tree_numpy(run(fw.asarray(lengths)))
    full = fw.tree_numpy(rnnscan.rnn(step, x, states))[1]
    np.testing.assert_allclose(outputs[0], full[0], rtol=1e-5)  # past the end: nothing masked
    np.testing.assert_array_equal(outputs[1], 0.0)  # negative: every step masked
    with pytest.raises(ValueError, match="`input_length`"):
        rnnscan.rnn(step, x, states, input_length=fw.asarray(lengths))  # concrete: refused


# -- docs/errors.md ----------------------------------------------------------------


def render() -> str:
    """docs/errors.md: the table above, with the message each call gets on NumPy (TensorFlow where only it applies)."""
    lines = [
        "# Errors",
        "",
        "Every malformed call `rnnscan.rnn` refuses, the exception it raises and its message. A call is",
        "refused before any loop runs: argument errors before the step function is called, errors in what",
        "the step function returns at its first call. Every message has the form",
        "",
        "    rnnscan.rnn: `<argument>` must be <expected>; got <given>.",
        "",
        "The messages below are those of the NumPy backend (TensorFlow for the one row only a TensorFlow",
        "graph can express); other backends name their own array types and frameworks. The calls start",
        f"from `rnn(step, inputs, [h])` with `inputs` of shape ({B}, {T}, {D}), `h` of shape",
        f"({B}, {U}) and `step(x, states) = (h', [h'])`; the column *Call* says what is changed.",
        "Rows marked (ref) are the three errors the reference page of `tf.keras.backend.rnn` lists.",
        "",
        "This file is generated from `tests/test_errors.py` (`python tests/test_errors.py`), whose test",
        "runs every row on every backend and checks that this file is up to date.",
        "",
        "| # | Call | Exception | Message |",
        "|---|------|-----------|---------|",
    ]
    for i, row in enumerate(ROWS, 1):
        name = "numpy" if "numpy" in row.backends else row.backends[0]
        error, _ = _raise(row, Kit(framework(name), np.random.default_rng(i)))
        message = str(error).replace("|", "\\|").replace("\n", " ")
        ref = " (ref)" if row.ref else ""
        lines.append(f"| {i} | {row.call}{ref} | `{type(error).__name__}` | {message} |")
    return "\n".join(lines) + "\n"


def test_doc_in_sync() -> None:
    assert DOC.read_text() == render(), "docs/errors.md is stale: run `python tests/test_errors.py`"


if __name__ == "__main__":
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render())
    print(f"wrote {DOC} ({len(ROWS)} rows)", file=sys.stderr)
