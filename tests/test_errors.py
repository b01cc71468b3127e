"""The error catalogue: one row per malformed call, each run on every backend.

Every row states the exception type, the argument its message must name and a
fragment of the given value its message must show. The same table renders
docs/errors.md (``python tests/test_errors.py`` rewrites it; ``test_doc_in_sync``
fails when the two drift apart).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rnnscan

from frameworks import BACKENDS, Framework, framework

DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"
BATCH, TIME, DIM, UNITS = 3, 5, 2, 4
MESSAGE = re.compile(r"^rnnscan\.rnn: `(?P<argument>\w+)` must be (?P<expected>.+); got (?P<given>.+)\.$", re.DOTALL)

# A framework whose arrays are foreign to each backend (NumPy's own foreign is
# PyTorch: NumPy arrays mix into any call, the reverse is refused).
_FOREIGN = {"numpy": "torch", "jax": "torch", "torch": "jax", "tensorflow": "torch"}


class Kit:
    """Arrays of one framework, and the well-formed call each row spoils one part of."""

    def __init__(self, fw: Framework, rng: np.random.Generator) -> None:
        self.fw = fw
        self.rng = rng
        self.foreign = framework(_FOREIGN[fw.name])
        self.w = fw.asarray(rng.standard_normal((DIM, UNITS)).astype(np.float32))
        self.u = fw.asarray(rng.standard_normal((UNITS, UNITS)).astype(np.float32))

    def x(self, *shape: int, dtype: Any = np.float32, fw: Framework | None = None) -> Any:
        return (fw or self.fw).asarray(self.rng.standard_normal(shape).astype(dtype))

    def ints(self, *values: int) -> Any:
        return self.fw.asarray(np.array(values, dtype=np.int32))

    def keep(self, *shape: int, fw: Framework | None = None) -> Any:
        return (fw or self.fw).asarray(self.rng.random(shape) > 0.3)

    def mixed(self) -> list[Framework]:
        """Frameworks of one call's leaves, the last one foreign to the backend the call picks."""
        if self.fw.name == "numpy":  # NumPy + PyTorch runs on PyTorch; a JAX array is then foreign
            return [self.fw, framework("torch"), framework("jax")]
        return [self.fw, self.foreign]

    def new_state(self, x: Any, states: tuple[Any, ...]) -> Any:
        return self.fw.tanh(x @ self.w + states[0] @ self.u)

    def step(self, x: Any, states: tuple[Any, ...]) -> Any:
        h = self.new_state(x, states)
        return h, [h]

    def bad_step(self, result: Callable[[Any, Any], Any]) -> Callable[..., Any]:
        """A step function returning ``result(x, h)``, h the well-formed new state."""

        def step(x: Any, states: tuple[Any, ...]) -> Any:
            return result(x, self.new_state(x, states))

        return step

    def call(self, **spoilt: Any) -> dict[str, Any]:
        call: dict[str, Any] = dict(
            step_function=self.step, inputs=self.x(BATCH, TIME, DIM), initial_states=[self.x(BATCH, UNITS)]
        )
        call.update(spoilt)
        return call


@dataclass(frozen=True)
class Row:
    name: str
    call: str  # the malformed call, as the catalogue shows it
    build: Callable[[Kit], dict[str, Any]]
    exception: type[Exception]
    argument: str
    given: str  # a fragment of what the message says was given
    reference: bool = False  # one of the three errors the reference page lists
    step_runs: bool = False  # the error is about the step function's first result
    backends: tuple[str, ...] = field(default=BACKENDS)


def _rows() -> list[Row]:
    rows: list[Row] = []

    def row(*args: Any, **kwargs: Any) -> None:
        rows.append(Row(*args, **kwargs))

    # -- the step function itself, and the flags ---------------------------------
    row(
        "step_not_callable",
        "`step_function=None`",
        lambda k: k.call(step_function=None),
        TypeError,
        "step_function",
        "NoneType",
    )
    row(
        "step_a_string",
        "`step_function='lstm'`",
        lambda k: k.call(step_function="lstm"),
        TypeError,
        "step_function",
        "str 'lstm'",
    )
    row(
        "go_backwards_str",
        "`go_backwards='yes'`",
        lambda k: k.call(go_backwards="yes"),
        TypeError,
        "go_backwards",
        "str 'yes'",
    )
    row("unroll_int", "`unroll=1`", lambda k: k.call(unroll=1), TypeError, "unroll", "int 1")
    row("time_major_none", "`time_major=None`", lambda k: k.call(time_major=None), TypeError, "time_major", "NoneType")
    row(
        "zero_output_float",
        "`zero_output_for_mask=0.0`",
        lambda k: k.call(zero_output_for_mask=0.0),
        TypeError,
        "zero_output_for_mask",
        "float 0.0",
    )
    row(
        "return_all_outputs_str",
        "`return_all_outputs='last'`",
        lambda k: k.call(return_all_outputs="last"),
        TypeError,
        "return_all_outputs",
        "str 'last'",
    )

    # -- inputs --------------------------------------------------------------------
    row(
        "inputs_rank2",
        "`inputs` of shape (3, 5): no feature axis",
        lambda k: k.call(inputs=k.x(BATCH, TIME)),
        ValueError,
        "inputs",
        "shape (3, 5)",
        reference=True,
    )
    row(
        "inputs_nested_rank2",
        "nested `inputs` with one leaf of shape (3, 5)",
        lambda k: k.call(inputs={"a": k.x(BATCH, TIME, DIM), "b": k.x(BATCH, TIME)}),
        ValueError,
        "inputs",
        "shape (3, 5)",
        reference=True,
    )
    row(
        "inputs_time_major_rank2",
        "`inputs` of shape (5, 3) with `time_major=True`",
        lambda k: k.call(inputs=k.x(TIME, BATCH), time_major=True),
        ValueError,
        "inputs",
        "shape (5, 3)",
        reference=True,
    )
    row(
        "inputs_nested_time_mismatch",
        "nested `inputs` of 5 and 6 time steps",
        lambda k: k.call(inputs={"a": k.x(BATCH, TIME, DIM), "b": k.x(BATCH, TIME + 1, DIM)}),
        ValueError,
        "inputs",
        "shape (3, 6, 2)",
    )
    row(
        "inputs_nested_batch_mismatch",
        "nested `inputs` of batch 3 and 2",
        lambda k: k.call(inputs=(k.x(BATCH, TIME, DIM), k.x(BATCH - 1, TIME, DIM))),
        ValueError,
        "inputs",
        "shape (2, 5, 2)",
    )
    row(
        "inputs_time_major_batch_mismatch",
        "nested time-major `inputs` of batch 3 and 2",
        lambda k: k.call(inputs=[k.x(TIME, BATCH, DIM), k.x(TIME, BATCH - 1, DIM)], time_major=True),
        ValueError,
        "inputs",
        "shape (5, 2, 2)",
    )
    row(
        "inputs_zero_time",
        "`inputs` of shape (3, 0, 2): an empty time axis",
        lambda k: k.call(inputs=k.x(BATCH, 0, DIM)),
        ValueError,
        "inputs",
        "shape (3, 0, 2)",
    )
    row(
        "inputs_zero_time_time_major",
        "`inputs` of shape (0, 3, 2) with `time_major=True`",
        lambda k: k.call(inputs=k.x(0, BATCH, DIM), time_major=True),
        ValueError,
        "inputs",
        "shape (0, 3, 2)",
    )
    row(
        "inputs_empty_structure",
        "`inputs={}`: no arrays",
        lambda k: k.call(inputs={}),
        ValueError,
        "inputs",
        "no arrays",
    )
    row("inputs_none", "`inputs=None`", lambda k: k.call(inputs=None), ValueError, "inputs", "no arrays")
    row(
        "inputs_string",
        "`inputs='abc'`",
        lambda k: k.call(inputs="abc"),
        TypeError,
        "inputs",
        "str 'abc'",
    )
    row(
        "inputs_two_frameworks",
        "nested `inputs` whose leaves come from two frameworks",
        lambda k: k.call(inputs={str(i): k.x(BATCH, TIME, DIM, fw=f) for i, f in enumerate(k.mixed())}),
        TypeError,
        "inputs",
        "array (",
    )

    # -- initial_states ------------------------------------------------------------
    row(
        "states_dict",
        "`initial_states={'h': h}`: not a list or tuple",
        lambda k: k.call(initial_states={"h": k.x(BATCH, UNITS)}),
        TypeError,
        "initial_states",
        "dict of length 1",
    )
    row(
        "states_rank1",
        "a state of shape (3,): no feature axis",
        lambda k: k.call(initial_states=[k.x(BATCH)]),
        ValueError,
        "initial_states",
        "shape (3,)",
    )
    row(
        "states_batch_mismatch",
        "a state of batch 2 for inputs of batch 3",
        lambda k: k.call(initial_states=[k.x(BATCH - 1, UNITS)]),
        ValueError,
        "initial_states",
        "shape (2, 4)",
    )
    row(
        "states_string",
        "`initial_states=['abc']`",
        lambda k: k.call(initial_states=["abc"]),
        TypeError,
        "initial_states",
        "str 'abc'",
    )
    row(
        "states_two_frameworks",
        "states from two frameworks",
        lambda k: k.call(initial_states=[k.x(BATCH, UNITS, fw=f) for f in k.mixed()]),
        TypeError,
        "initial_states",
        "array (",
    )

    # -- constants -----------------------------------------------------------------
    row(
        "constants_dict",
        "`constants={'c': c}`: not a list or tuple",
        lambda k: k.call(constants={"c": k.x(BATCH, UNITS)}),
        TypeError,
        "constants",
        "dict of length 1",
    )
    row(
        "constants_foreign",
        "`constants` from another framework",
        lambda k: k.call(constants=[k.x(BATCH, UNITS, fw=k.foreign)]),
        TypeError,
        "constants",
        "array (",
    )

    # -- mask ----------------------------------------------------------------------
    row(
        "mask_without_states",
        "a `mask` with `initial_states=[]`",
        lambda k: k.call(step_function=lambda x, s: (x, []), initial_states=[], mask=k.keep(BATCH, TIME)),
        ValueError,
        "initial_states",
        "no states",
        reference=True,
    )
    row(
        "mask_wrong_batch",
        "`mask` of shape (2, 5) for inputs (3, 5, 2)",
        lambda k: k.call(mask=k.keep(BATCH - 1, TIME)),
        ValueError,
        "mask",
        "shape (2, 5)",
    )
    row(
        "mask_wrong_time",
        "`mask` of shape (3, 6) for inputs (3, 5, 2)",
        lambda k: k.call(mask=k.keep(BATCH, TIME + 1)),
        ValueError,
        "mask",
        "shape (3, 6)",
    )
    row(
        "mask_batch_major_with_time_major",
        "`mask` of shape (3, 5) (batch-major) with time-major inputs (5, 3, 2)",
        lambda k: k.call(inputs=k.x(TIME, BATCH, DIM), mask=k.keep(BATCH, TIME), time_major=True),
        ValueError,
        "mask",
        "shape (3, 5)",
    )
    row(
        "mask_rank1",
        "`mask` of shape (3,)",
        lambda k: k.call(mask=k.keep(BATCH)),
        ValueError,
        "mask",
        "shape (3,)",
    )
    row(
        "mask_rank4",
        "`mask` of shape (3, 5, 1, 1)",
        lambda k: k.call(mask=k.keep(BATCH, TIME, 1, 1)),
        ValueError,
        "mask",
        "shape (3, 5, 1, 1)",
    )
    row(
        "mask_last_axis_2",
        "`mask` of shape (3, 5, 2)",
        lambda k: k.call(mask=k.keep(BATCH, TIME, 2)),
        ValueError,
        "mask",
        "shape (3, 5, 2)",
    )
    row("mask_scalar", "`mask=True`", lambda k: k.call(mask=True), ValueError, "mask", "shape ()")
    row(
        "mask_list",
        "`mask` as a Python list of lists",
        lambda k: k.call(mask=[[1] * TIME] * BATCH),
        TypeError,
        "mask",
        "list of length 3",
    )
    row(
        "mask_foreign",
        "`mask` from another framework",
        lambda k: k.call(mask=k.keep(BATCH, TIME, fw=k.foreign)),
        TypeError,
        "mask",
        "array (",
    )

    # -- input_length --------------------------------------------------------------
    row(
        "input_length_negative",
        "`input_length=[2, -1, 5]`",
        lambda k: k.call(input_length=k.ints(2, -1, 5)),
        ValueError,
        "input_length",
        "lengths from -1 to 5",
    )
    row(
        "input_length_too_long",
        "`input_length=[2, 6, 5]` for 5 time steps",
        lambda k: k.call(input_length=k.ints(2, 6, 5)),
        ValueError,
        "input_length",
        "lengths from 2 to 6",
    )
    row(
        "input_length_int_negative",
        "`input_length=-1`",
        lambda k: k.call(input_length=-1),
        ValueError,
        "input_length",
        "int -1",
    )
    row(
        "input_length_int_too_long",
        "`input_length=6` for 5 time steps",
        lambda k: k.call(input_length=TIME + 1),
        ValueError,
        "input_length",
        "int 6",
    )
    row(
        "input_length_float",
        "`input_length` of dtype float32",
        lambda k: k.call(input_length=k.x(BATCH)),
        TypeError,
        "input_length",
        "dtype float32",
    )
    row(
        "input_length_rank2",
        "`input_length` of shape (3, 1)",
        lambda k: k.call(input_length=k.fw.asarray(np.full((BATCH, 1), 2, np.int32))),
        ValueError,
        "input_length",
        "shape (3, 1)",
    )
    row(
        "input_length_wrong_batch",
        "`input_length` of shape (2,) for batch 3",
        lambda k: k.call(input_length=k.ints(2, 3)),
        ValueError,
        "input_length",
        "shape (2,)",
    )
    row(
        "input_length_list",
        "`input_length=[2, 3, 5]` as a Python list",
        lambda k: k.call(input_length=[2, 3, 5]),
        TypeError,
        "input_length",
        "list of length 3",
    )
    row(
        "input_length_bool",
        "`input_length=True`",
        lambda k: k.call(input_length=True),
        TypeError,
        "input_length",
        "bool True",
    )
    row(
        "input_length_foreign",
        "`input_length` from another framework",
        lambda k: k.call(input_length=k.foreign.asarray(np.array([2, 3, 5], np.int32))),
        TypeError,
        "input_length",
        "array (",
    )

    # -- what the step function returns (checked at its first call) -----------------
    def step_row(name: str, call: str, result: Callable[[Kit, Any, Any], Any], *rest: Any, **kw: Any) -> None:
        row(
            name,
            call,
            lambda k: k.call(step_function=k.bad_step(lambda x, h: result(k, x, h))),
            *rest,
            step_runs=True,
            **kw,
        )

    step_row("step_not_a_pair", "step returns `h`", lambda k, x, h: h, TypeError, "step_function", "shape (3, 4)")
    step_row(
        "step_triple",
        "step returns `(h, [h], h)`",
        lambda k, x, h: (h, [h], h),
        TypeError,
        "step_function",
        "tuple of length 3",
    )
    step_row(
        "step_states_not_a_list",
        "step returns `(h, h)`: new_states not a list",
        lambda k, x, h: (h, h),
        TypeError,
        "step_function",
        "shape (3, 4)",
    )
    step_row(
        "step_too_many_states",
        "step returns `(h, [h, h])` for one state",
        lambda k, x, h: (h, [h, h]),
        ValueError,
        "step_function",
        "2 new states",
    )
    step_row(
        "step_no_states",
        "step returns `(h, [])` for one state",
        lambda k, x, h: (h, []),
        ValueError,
        "step_function",
        "0 new states",
    )
    step_row(
        "step_state_structure",
        "step returns `(h, [{'h': h}])` for an array state",
        lambda k, x, h: (h, [{"h": h}]),
        ValueError,
        "step_function",
        "PyTreeSpec({'h': *})",
    )
    step_row(
        "step_state_shape",
        "step returns a new state of shape (3, 2) for a state (3, 4)",
        lambda k, x, h: (h, [h[:, :2]]),
        ValueError,
        "step_function",
        "shape (3, 2)",
    )
    row(
        "step_state_rank",
        "step returns a new state of shape (3, 4) for a state (3, 2, 4)",
        lambda k: k.call(initial_states=[k.x(BATCH, 2, UNITS)], step_function=lambda x, s: (s[0][:, 0], [s[0][:, 0]])),
        ValueError,
        "step_function",
        "shape (3, 4)",
        step_runs=True,
    )
    row(
        "step_state_dtype",
        "step returns a float32 new state for an int32 state",
        lambda k: k.call(
            initial_states=[k.fw.asarray(np.zeros((BATCH, DIM), np.int32))], step_function=lambda x, s: (x, [x])
        ),
        TypeError,
        "step_function",
        "dtype float32",
        step_runs=True,
    )
    step_row(
        "step_state_foreign",
        "step returns a new state from another framework",
        lambda k, x, h: (h, [k.foreign.asarray(np.zeros((BATCH, UNITS), np.float32))]),
        TypeError,
        "step_function",
        "of shape (3, 4)",
    )
    step_row(
        "step_output_none",
        "step returns `(None, [h])`",
        lambda k, x, h: (None, [h]),
        ValueError,
        "step_function",
        "NoneType",
    )
    step_row(
        "step_output_no_batch",
        "step returns an output of shape (4,)",
        lambda k, x, h: (h[0], [h]),
        ValueError,
        "step_function",
        "shape (4,)",
    )
    step_row(
        "step_output_rank1",
        "step returns an output of shape (3,)",
        lambda k, x, h: (h[:, 0], [h]),
        ValueError,
        "step_function",
        "shape (3,)",
    )
    step_row(
        "step_output_batch",
        "step returns an output of batch 2",
        lambda k, x, h: (h[:2], [h]),
        ValueError,
        "step_function",
        "shape (2, 4)",
    )
    step_row(
        "step_output_foreign",
        "step returns an output from another framework",
        lambda k, x, h: (k.foreign.asarray(np.zeros((BATCH, 5), np.float32)), [h]),
        TypeError,
        "step_function",
        "of shape (3, 5)",
    )

    # -- a time axis of unknown length (only TensorFlow graphs have one) --------------
    row(
        "unroll_unknown_time",
        "`unroll=True` in a `tf.function` whose inputs have time `None`",
        _unknown_time,
        ValueError,
        "unroll",
        "unknown time dimension",
        reference=True,
        backends=("tensorflow",),
    )
    return rows


def _unknown_time(k: Kit) -> dict[str, Any]:
    """Run the call in a tf.function traced for inputs of shape (3, None, 2); return no call."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([BATCH, None, DIM], tf.float32)], autograph=False)
    def run(x: Any) -> Any:
        return rnnscan.rnn(k.step, x, [tf.zeros([BATCH, UNITS])], unroll=True)

    return {"traced": run}


ROWS = _rows()
EVERY_BACKEND = [r for r in ROWS if r.backends == BACKENDS]
SOME_BACKENDS = [pytest.param(r, b, id=f"{r.name}-{b}") for r in ROWS if r.backends != BACKENDS for b in r.backends]


def _raise(row: Row, fw: Framework, rng: np.random.Generator) -> tuple[BaseException, int]:
    """Make the row's call; return the exception it raised and how often the step function ran."""
    kit = Kit(fw, rng)
    call = row.build(kit)
    calls = [0]
    if "traced" in call:
        run = call["traced"]
        with pytest.raises(row.exception) as info:
            run.get_concrete_function()
        return info.value, 0
    step = call.pop("step_function")
    if callable(step):
        user_step = step

        def step(*args: Any) -> Any:
            calls[0] += 1
            return user_step(*args)

    with pytest.raises(row.exception) as info:
        rnnscan.rnn(step, **call)
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


def test_catalogue_size() -> None:
    assert len(ROWS) >= 25
    assert len({r.name for r in ROWS}) == len(ROWS)
    assert sum(r.reference for r in ROWS) >= 3


@pytest.mark.parametrize("row", EVERY_BACKEND, ids=[r.name for r in EVERY_BACKEND])
def test_error(backend: Framework, rng: np.random.Generator, row: Row) -> None:
    _check(row, *_raise(row, backend, rng))


@pytest.mark.parametrize(("row", "backend_name"), SOME_BACKENDS)
def test_error_where_expressible(row: Row, backend_name: str, rng: np.random.Generator) -> None:
    _check(row, *_raise(row, framework(backend_name), rng))


def test_reference_errors_are_value_errors() -> None:
    """The three errors of the reference page are ValueErrors."""
    arguments = {r.argument for r in ROWS if r.reference}
    assert arguments == {"inputs", "unroll", "initial_states"}
    assert all(r.exception is ValueError for r in ROWS if r.reference)


@pytest.mark.parametrize("tracer", ["jax.jit", "tf.function"])
def test_input_length_range_is_not_checked_when_traced(tracer: str, rng: np.random.Generator) -> None:
    """Symbolic lengths have no values to check: the call traces and runs (as tf-keras: a length
    past the end masks nothing, a negative one masks every step)."""
    lengths = np.array([TIME + 2, -1, 2], np.int32)
    fw = framework("jax" if tracer == "jax.jit" else "tensorflow")
    kit = Kit(fw, rng)
    call = kit.call()
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
        f"from `rnn(step, inputs, [h])` with `inputs` of shape ({BATCH}, {TIME}, {DIM}), `h` of shape",
        f"({BATCH}, {UNITS}) and `step(x, states) = (h', [h'])`; the column *Call* says what is changed.",
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
        error, _ = _raise(row, framework(name), np.random.default_rng(i))
        message = str(error).replace("|", "\\|").replace("\n", " ")
        ref = " (ref)" if row.reference else ""
        lines.append(f"| {i} | {row.call}{ref} | `{type(error).__name__}` | {message} |")
    return "\n".join(lines) + "\n"


def test_doc_in_sync() -> None:
    assert DOC.read_text() == render(), "docs/errors.md is stale: run `python tests/test_errors.py`"


if __name__ == "__main__":
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render())
    print(f"wrote {DOC} ({len(ROWS)} rows)", file=sys.stderr)
