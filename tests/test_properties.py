"""Property-based differential tests: random calls nobody hand-picked, rnnscan vs tf_keras.backend.rnn.

Hypothesis draws a `Spec`: shapes (batch and time from 1), input rank and
nesting, dtype, a mask (random, all on, all off, a single kept step; bool, int or
float, 2-D or 3-D), `input_length`, every flag, and a step function from a small
family (linear, tanh, gated; with or without constants; extra states of rank 2
or 3, flat or nested; a flat or nested output). The data come from the spec's
seed, so the tf-keras reference of one spec is computed once and shared by the
four backends (the `ci` profile is derandomized: every backend sees the same
specs). `pytest --hypothesis-profile=long` runs 20x more examples.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import optree
from hypothesis import given
from hypothesis import strategies as st

import rnnscan

from frameworks import Framework, framework

MASKS = ("none", "random", "all_on", "all_off", "single_step")
MASK_FORMATS = ("bool2d", "int2d", "float3d")
STEPS = ("linear", "tanh", "gated")
EXTRA_STATES = ("none", "rank2", "rank3", "nested_rank2", "nested_rank3")
NESTING = ("none", "tuple", "dict")


@dataclass(frozen=True)
class Spec:
    batch: int
    time: int
    input_rank: int
    nesting: str
    dtype: str
    mask: str
    mask_format: str
    input_length: bool
    go_backwards: bool
    unroll: bool
    time_major: bool
    zero_output_for_mask: bool
    return_all_outputs: bool
    step: str
    constants: bool
    extra_state: str
    nested_output: bool
    seed: int


specs = st.builds(
    Spec,
    batch=st.integers(1, 4),
    time=st.integers(1, 7),
    input_rank=st.sampled_from((3, 4)),
    nesting=st.sampled_from(NESTING),
    dtype=st.sampled_from(("float32", "float64")),
    mask=st.sampled_from(MASKS),
    mask_format=st.sampled_from(MASK_FORMATS),
    input_length=st.booleans(),
    go_backwards=st.booleans(),
    unroll=st.booleans(),
    time_major=st.booleans(),
    zero_output_for_mask=st.booleans(),
    return_all_outputs=st.booleans(),
    step=st.sampled_from(STEPS),
    constants=st.booleans(),
    extra_state=st.sampled_from(EXTRA_STATES),
    nested_output=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)

UNITS, DIM_A, DIM_B, MIDDLE, K = 3, 2, 3, 2, 2


@dataclass
class Data:
    """NumPy arrays of one spec."""

    inputs: Any
    states: list[Any]
    constants: list[Any] | None
    mask: np.ndarray | None
    input_length: np.ndarray | None
    weights: dict[str, np.ndarray]


def make_data(spec: Spec) -> Data:
    rng = np.random.default_rng(spec.seed)
    dtype = np.dtype(spec.dtype)
    b, t = spec.batch, spec.time

    def normal(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(dtype)

    def seq(*feature: int) -> np.ndarray:
        x = normal(b, t, *feature)
        return np.ascontiguousarray(np.swapaxes(x, 0, 1)) if spec.time_major else x

    middle = (MIDDLE,) if spec.input_rank == 4 else ()
    a = seq(*middle, DIM_A)
    inputs: Any = a
    if spec.nesting == "tuple":
        inputs = (a, seq(DIM_B))
    elif spec.nesting == "dict":
        inputs = {"a": a, "b": seq(DIM_B)}
    scale = 0.4 if spec.step == "linear" else 0.8
    weights = {name: normal(*shape, scale=scale) for name, shape in _weight_shapes().items()}
    states: list[Any] = [normal(b, UNITS)]
    if spec.extra_state != "none":
        s = normal(b, K, UNITS) if spec.extra_state.endswith("rank3") else normal(b, UNITS)
        states.append({"s": s} if spec.extra_state.startswith("nested") else s)
    constants = [normal(b, UNITS)] if spec.constants else None
    mask = _mask(spec, rng)
    lengths = rng.integers(0, t + 1, size=b).astype(np.int32) if spec.input_length else None
    return Data(inputs, states, constants, mask, lengths, weights)


def _weight_shapes() -> dict[str, tuple[int, ...]]:
    return {"Wa": (DIM_A, UNITS), "Wb": (DIM_B, UNITS), "U": (UNITS, UNITS), "G": (UNITS, UNITS), "V": (UNITS, UNITS)}


def _mask(spec: Spec, rng: np.random.Generator) -> np.ndarray | None:
    b, t = spec.batch, spec.time
    if spec.mask == "none":
        return None
    if spec.mask == "random":
        keep = rng.random((b, t)) > 0.4
    elif spec.mask == "all_on":
        keep = np.ones((b, t), bool)
    elif spec.mask == "all_off":
        keep = np.zeros((b, t), bool)
    else:  # single_step: each sample keeps one step
        keep = np.zeros((b, t), bool)
        keep[np.arange(b), rng.integers(0, t, size=b)] = True
    if spec.time_major:
        keep = np.ascontiguousarray(keep.T)
    if spec.mask_format == "int2d":
        return keep.astype(np.int32)
    if spec.mask_format == "float3d":
        return (keep * rng.uniform(0.5, 2.0, keep.shape)).astype(np.float32)[..., None]
    return keep


def make_step(spec: Spec, fw: Framework, w: dict[str, Any]) -> Any:
    """One member of the family, written with operations all four frameworks share."""

    def step(x: Any, states: tuple[Any, ...]) -> Any:
        xa = x if spec.nesting == "none" else x[0] if spec.nesting == "tuple" else x["a"]
        za = xa @ w["Wa"]
        if spec.input_rank == 4:  # (batch, MIDDLE, units) -> (batch, units)
            za = za[:, 0] + za[:, -1] * 0.5
        if spec.nesting != "none":
            za = za + (x[1] if spec.nesting == "tuple" else x["b"]) @ w["Wb"]
        h = states[0]
        z = za + h @ w["U"]
        if spec.constants:
            z = z + states[-1] * 0.5
        if spec.step == "linear":
            h_new = z * 0.5
        elif spec.step == "tanh":
            h_new = fw.tanh(z)
        else:
            gate = fw.sigmoid(za + h @ w["G"])
            h_new = gate * h + (1.0 - gate) * fw.tanh(z)
        new_states: list[Any] = [h_new]
        output: Any = h_new * 2.0 - 0.5
        if spec.extra_state != "none":
            nested = spec.extra_state.startswith("nested")
            s = states[1]["s"] if nested else states[1]
            h_b = h_new[:, None, :] if spec.extra_state.endswith("rank3") else h_new
            s_new = fw.tanh(s @ w["V"] + h_b)
            new_states.append({"s": s_new} if nested else s_new)
            if spec.nested_output:
                output = {"y": output, "s": s_new * 1.5}
        return output, new_states

    return step


def run(rnn: Any, spec: Spec, fw: Framework, unroll: bool) -> Any:
    data = make_data(spec)
    result = rnn(
        make_step(spec, fw, fw.tree(data.weights)),
        fw.tree(data.inputs),
        fw.tree(data.states),
        go_backwards=spec.go_backwards,
        mask=None if data.mask is None else fw.asarray(data.mask),
        constants=None if data.constants is None else fw.tree(data.constants),
        unroll=unroll,
        input_length=None if data.input_length is None else fw.asarray(data.input_length),
        time_major=spec.time_major,
        zero_output_for_mask=spec.zero_output_for_mask,
        return_all_outputs=spec.return_all_outputs,
    )
    last, outputs, states = fw.tree_numpy(result)
    return last, outputs, list(states)


@functools.lru_cache(maxsize=512)
def reference(spec: Spec) -> Any:
    """tf-keras's symbolic loop (unroll=False): the reference for both of rnnscan's loops."""
    import tf_keras

    return run(tf_keras.backend.rnn, spec, framework("tensorflow"), unroll=False)


def assert_same(actual: Any, expected: Any, spec: Spec, backend: str) -> None:
    a_leaves, a_spec = optree.tree_flatten(actual)
    e_leaves, e_spec = optree.tree_flatten(expected)
    assert a_spec.num_leaves == e_spec.num_leaves, (a_spec, e_spec)
    # JAX runs float64 data in float32 unless x64 is enabled.
    single = spec.dtype == "float32" or backend == "jax"
    rtol, atol = (1e-4, 1e-5) if single else (1e-9, 1e-12)
    for a, e in zip(a_leaves, e_leaves):
        assert a.shape == e.shape
        if not (backend == "jax" and spec.dtype == "float64"):
            assert a.dtype == e.dtype, (a.dtype, e.dtype)
        # Finite data give finite results: rnnscan invents no NaN or inf.
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


@given(spec=specs)
def test_matches_tf_keras(backend: Framework, spec: Spec) -> None:
    expected = reference(spec)
    actual = run(rnnscan.rnn, spec, backend, unroll=spec.unroll)
    for a, e in zip(actual, expected):
        assert_same(a, e, spec, backend.name)
    assert optree.tree_structure(actual[1]) == optree.tree_structure(expected[1])
    if not spec.return_all_outputs:
        assert optree.tree_leaves(actual[1])[0].shape[1 - spec.time_major] == 1
