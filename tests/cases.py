"""The differential suite's calls: a `Config` (which rnn() features a call uses), the
NumPy data of one call (`make_case`), and one family of step functions written once for
every framework (`@`, `+`, `*`, indexing, tanh and sigmoid exist on all four), so that
rnnscan and the tf-keras oracle run the same step.

Two generators share these pieces: `configurations()`, the fixed covering grid, and
`configs()` with `case_data()`, the hypothesis strategies of the property test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from frameworks import Framework

# Which steps a mask keeps ("random": about 65% of them; "all_masked_rows": random with the
# first sample wholly masked; "single_step": one step per sample), and its array form.
MASKS = ("none", "random", "all_masked_rows", "first_step_masked", "all_on", "all_off", "single_step")
MASK_FORMATS = ("bool2d", "int2d", "float3d")
INPUTS = ("array", "tuple", "dict")  # one input array, or two in a tuple or dict
CELLS = ("tanh", "gated", "linear")
# A second state besides h: none, of shape (batch, units) or (batch, K, units), bare or as {"s": s}.
EXTRA_STATES = ("none", "rank2", "rank3", "nested_rank2", "nested_rank3")

UNITS, DIM_A, DIM_B, MIDDLE, K = 4, 3, 2, 2, 2


@dataclass(frozen=True)
class Config:
    go_backwards: bool = False
    mask: str = "none"
    mask_format: str = "bool2d"
    zero_output_for_mask: bool = False
    return_all_outputs: bool = True
    time_major: bool = False
    input_length: bool = False
    constants: bool = False
    inputs: str = "array"
    input_rank: int = 3  # 4: inputs (batch, time, MIDDLE, DIM_A)
    cell: str = "tanh"
    extra_state: str = "none"
    nested_output: bool = False  # the output is {"y": ..., "s": ...} (needs an extra state)
    alias_output: bool = False  # the step returns its new states themselves as the output
    tuple_states: bool = False  # initial_states is a tuple, not a list

    def __post_init__(self) -> None:
        assert self.mask in MASKS and self.mask_format in MASK_FORMATS and self.inputs in INPUTS
        assert self.cell in CELLS and self.extra_state in EXTRA_STATES and self.input_rank in (3, 4)
        assert not self.nested_output or self.extra_state != "none", "a nested output needs an extra state"

    @property
    def id(self) -> str:
        flags = [
            "back" if self.go_backwards else "fwd",
            self.mask if self.mask == "none" else f"{self.mask}_{self.mask_format}",
            "zero" if self.zero_output_for_mask else "keep",
            "all" if self.return_all_outputs else "last",
            "tmaj" if self.time_major else "bmaj",
            self.cell,
        ]
        flags += [n for n in ("input_length", "constants") if getattr(self, n)]
        flags += [f"{self.inputs}_inputs"] if self.inputs != "array" else []
        flags += ["rank4_inputs"] if self.input_rank == 4 else []
        flags += [f"{self.extra_state}_state"] if self.extra_state != "none" else []
        flags += [n for n in ("nested_output", "alias_output", "tuple_states") if getattr(self, n)]
        return "-".join(flags)


# The grid's masks: every pattern that has a tf-keras corner, each in one array form.
GRID_MASKS = (
    ("none", "bool2d"),
    ("random", "bool2d"),
    ("random", "float3d"),
    ("all_masked_rows", "int2d"),
    ("first_step_masked", "bool2d"),
)
# A strength-2 covering array over the four secondary features (every pair of
# values of every two features appears): 5 rows instead of the 16 of the product.
_FEATURE_ROWS = ((0, 0, 0, 0), (0, 1, 1, 1), (1, 0, 1, 1), (1, 1, 0, 1), (1, 1, 1, 0))


def configurations() -> list[Config]:
    """The fixed grid: the full product of the loop flags x mask kinds (80 rows), crossed with
    a covering of input_length, constants, nesting and rank-3 states (5 rows). The cell, the
    aliased output, tuple states and the form of un-nested inputs rotate with the row numbers,
    so that each meets every loop flag both ways."""
    configs = []
    for i, (back, (mask, form), zero, keep_all, tmaj) in enumerate(
        itertools.product((False, True), GRID_MASKS, (False, True), (True, False), (False, True))
    ):
        for j, (length, const, nested, rank3) in enumerate(_FEATURE_ROWS):
            rank = "rank3" if rank3 else "rank2"
            configs.append(
                Config(
                    back,
                    mask,
                    form,
                    zero,
                    keep_all,
                    tmaj,
                    input_length=bool(length),
                    constants=bool(const),
                    inputs="dict" if nested else ("array", "tuple")[(i // 4 + j) % 2],
                    input_rank=4 if not nested and (i // 8 + j) % 3 == 0 else 3,
                    cell=CELLS[(i + j) % 3],
                    extra_state=f"nested_{rank}" if nested else rank if rank3 else "none",
                    nested_output=bool(nested),
                    alias_output=(i + j) % 2 == 1,
                    tuple_states=(i // 2 + j) % 2 == 1,
                )
            )
    return configs


@st.composite
def configs(draw: st.DrawFn) -> Config:
    """Any configuration, every feature drawn independently."""
    extra = draw(st.sampled_from(EXTRA_STATES))
    return Config(
        go_backwards=draw(st.booleans()),
        mask=draw(st.sampled_from(MASKS)),
        mask_format=draw(st.sampled_from(MASK_FORMATS)),
        zero_output_for_mask=draw(st.booleans()),
        return_all_outputs=draw(st.booleans()),
        time_major=draw(st.booleans()),
        input_length=draw(st.booleans()),
        constants=draw(st.booleans()),
        inputs=draw(st.sampled_from(INPUTS)),
        input_rank=draw(st.sampled_from((3, 4))),
        cell=draw(st.sampled_from(CELLS)),
        extra_state=extra,
        nested_output=extra != "none" and draw(st.booleans()),
        alias_output=draw(st.booleans()),
        tuple_states=draw(st.booleans()),
    )


def case_data() -> st.SearchStrategy[dict[str, Any]]:
    """`make_case`'s other arguments: batch and time from 1, the dtype, the data's seed."""
    return st.fixed_dictionaries(
        {
            "batch": st.integers(1, 4),
            "time": st.integers(1, 7),
            "dtype": st.sampled_from(("float32", "float64")),
            "seed": st.integers(0, 2**32 - 1),
        }
    )


@dataclass
class Case:
    """NumPy data for one call; `kwargs(fw)` and `call(rnn, fw)` convert it to a framework's arrays."""

    config: Config
    inputs: Any
    initial_states: list[Any] | tuple[Any, ...]
    constants: list[Any] | None
    mask: np.ndarray | None
    input_length: np.ndarray | None
    weights: dict[str, np.ndarray]

    def step(self, fw: Framework) -> Callable[..., Any]:
        return make_step(fw, fw.tree(self.weights), self.config)

    def kwargs(self, fw: Framework, unroll: bool = False) -> dict[str, Any]:
        c = self.config
        return dict(
            go_backwards=c.go_backwards,
            mask=None if self.mask is None else fw.asarray(self.mask),
            constants=None if self.constants is None else fw.tree(self.constants),
            unroll=unroll,
            input_length=None if self.input_length is None else fw.asarray(self.input_length),
            time_major=c.time_major,
            zero_output_for_mask=c.zero_output_for_mask,
            return_all_outputs=c.return_all_outputs,
        )

    def call(self, rnn: Callable[..., Any], fw: Framework, unroll: bool = False) -> Any:
        result = rnn(self.step(fw), fw.tree(self.inputs), fw.tree(self.initial_states), **self.kwargs(fw, unroll))
        return fw.tree_numpy(result)


def make_case(config: Config, rng: np.random.Generator, batch: int = 3, time: int = 6, dtype: Any = np.float32) -> Case:
    """Fresh normal data of `dtype` for `config`: inputs (batch, time[, MIDDLE], features)
    (time-major if set), states (batch, units) [and the extra state], lengths from 0 to time."""

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    def seq(*feature: int) -> np.ndarray:
        x = normal(batch, time, *feature)
        return np.ascontiguousarray(np.swapaxes(x, 0, 1)) if config.time_major else x

    a = seq(*((MIDDLE,) if config.input_rank == 4 else ()), DIM_A)
    inputs = {"array": lambda: a, "tuple": lambda: (a, seq(DIM_B)), "dict": lambda: {"a": a, "b": seq(DIM_B)}}
    shapes = {"Wa": (DIM_A, UNITS), "Wb": (DIM_B, UNITS), "U": (UNITS, UNITS), "G": (UNITS, UNITS), "V": (UNITS, UNITS)}
    weights = {name: normal(*shape) * 0.5 for name, shape in shapes.items()}
    states: list[Any] = [normal(batch, UNITS)]
    if config.extra_state != "none":
        s = normal(batch, K, UNITS) if config.extra_state.endswith("rank3") else normal(batch, UNITS)
        states.append({"s": s} if config.extra_state.startswith("nested") else s)
    constants = [normal(batch, UNITS)] if config.constants else None
    mask = make_mask(config, rng, batch, time)
    lengths = rng.integers(0, time + 1, size=batch).astype(np.int32) if config.input_length else None
    initial_states = tuple(states) if config.tuple_states else states
    return Case(config, inputs[config.inputs](), initial_states, constants, mask, lengths, weights)


def make_mask(config: Config, rng: np.random.Generator, batch: int, time: int) -> np.ndarray | None:
    """The mask of `config`: (batch, time) bool or int32, or (batch, time, 1) float32 with
    kept steps of random nonzero values (transposed to (time, batch[, 1]) if time-major)."""
    if config.mask == "none":
        return None
    keep = rng.random((batch, time)) > 0.35
    if config.mask == "all_masked_rows":
        keep[0] = False
    elif config.mask == "first_step_masked":
        keep[:, 0] = False
    elif config.mask in ("all_on", "all_off"):
        keep[:] = config.mask == "all_on"
    elif config.mask == "single_step":
        keep[:] = False
        keep[np.arange(batch), rng.integers(0, time, size=batch)] = True
    if config.time_major:
        keep = np.ascontiguousarray(keep.T)
    if config.mask_format == "int2d":
        return keep.astype(np.int32)
    if config.mask_format == "float3d":
        return (keep * rng.uniform(0.5, 2.0, keep.shape)).astype(np.float32)[..., None]
    return keep


def make_step(fw: Framework, w: dict[str, Any], config: Config) -> Callable[..., Any]:
    """The step family. With z = xa Wa [+ xb Wb] + h U [+ 0.5 c] (xa's MIDDLE axis, if any,
    folded as xa[:, 0] + 0.5 xa[:, -1] after Wa), the new state h' is tanh(z), 0.5 z (linear)
    or g h + (1 - g) tanh(z) with g = sigmoid(xa Wa + h G) (gated). The extra state becomes
    s' = tanh(s V + h') (h' broadcast over s's middle axis at rank 3). The output is
    2 h' - 0.5, or h' itself with alias_output; with nested_output, {"y": that, "s": 1.5 s'
    (s' itself)}."""
    nested_state = config.extra_state.startswith("nested")
    rank3 = config.extra_state.endswith("rank3")

    def step(x: Any, states: tuple[Any, ...]) -> Any:
        xa = {"array": lambda: x, "tuple": lambda: x[0], "dict": lambda: x["a"]}[config.inputs]()
        za = xa @ w["Wa"]
        if config.input_rank == 4:  # (batch, MIDDLE, units) -> (batch, units)
            za = za[:, 0] + za[:, -1] * 0.5
        if config.inputs != "array":
            za = za + (x[1] if config.inputs == "tuple" else x["b"]) @ w["Wb"]
        h = states[0]
        z = za + h @ w["U"]
        if config.constants:
            z = z + states[-1] * 0.5
        if config.cell == "linear":
            h_new = z * 0.5
        elif config.cell == "tanh":
            h_new = fw.tanh(z)
        else:
            gate = fw.sigmoid(za + h @ w["G"])
            h_new = gate * h + (1.0 - gate) * fw.tanh(z)
        new_states: list[Any] = [h_new]
        out: Any = h_new if config.alias_output else h_new * 2.0 - 0.5
        if config.extra_state != "none":
            s = states[1]["s"] if nested_state else states[1]
            s_new = fw.tanh(s @ w["V"] + (h_new[:, None, :] if rank3 else h_new))
            new_states.append({"s": s_new} if nested_state else s_new)
            if config.nested_output:
                out = {"y": out, "s": s_new if config.alias_output else s_new * 1.5}
        return out, new_states

    return step


def gradient_problem(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """float64 ``[x (2, 5, 3), h0 (2, 4), w (3, 4), u (4, 4)]`` for a tanh step, and a ``(2, 5)``
    bool mask with its first step masked for sample 0: the data of the finite-difference tests."""
    params = [
        rng.standard_normal((2, 5, 3)),
        rng.standard_normal((2, 4)),
        rng.standard_normal((3, 4)) * 0.5,
        rng.standard_normal((4, 4)) * 0.5,
    ]
    mask = rng.random((2, 5)) > 0.3
    mask[0, 0] = False
    return params, mask
