"""Generated rnn() configurations and one family of step functions, written once
for every framework (the operations they use, `@`, `+`, `*`, tanh, indexing,
exist on all four), so that rnnscan and the tf-keras oracle run the same step."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from frameworks import Framework

MASK_KINDS = ("none", "bool2d", "float3d", "all_masked_rows", "first_step_masked")

# A strength-2 covering array over the four secondary features (every pair of
# values of every two features appears): 5 rows instead of the 16 of the product.
_FEATURE_ROWS = ((0, 0, 0, 0), (0, 1, 1, 1), (1, 0, 1, 1), (1, 1, 0, 1), (1, 1, 1, 0))


@dataclass(frozen=True)
class Config:
    go_backwards: bool = False
    mask: str = "none"
    zero_output_for_mask: bool = False
    return_all_outputs: bool = True
    time_major: bool = False
    input_length: bool = False
    constants: bool = False
    nested: bool = False
    rank3_state: bool = False
    alias_output: bool = False  # the step returns its new state itself as the output

    @property
    def id(self) -> str:
        flags = [
            "back" if self.go_backwards else "fwd",
            self.mask,
            "zero" if self.zero_output_for_mask else "keep",
            "all" if self.return_all_outputs else "last",
            "tmaj" if self.time_major else "bmaj",
        ]
        flags += [n for n in ("input_length", "constants", "nested", "rank3_state", "alias_output") if getattr(self, n)]
        return "-".join(flags)


def configurations() -> list[Config]:
    """Full product of the loop flags x mask kinds, crossed with a covering of the rest
    (the output aliasing the state alternates, so it meets every row both ways)."""
    configs = []
    for i, (back, mask, zero, keep_all, tmaj) in enumerate(
        itertools.product((False, True), MASK_KINDS, (False, True), (True, False), (False, True))
    ):
        for j, (length, const, nested, rank3) in enumerate(_FEATURE_ROWS):
            alias = (i + j) % 2 == 1
            configs.append(
                Config(back, mask, zero, keep_all, tmaj, bool(length), bool(const), bool(nested), bool(rank3), alias)
            )
    return configs


@dataclass
class Case:
    """NumPy data for one call; `args(fw)` converts it to a framework's arrays."""

    config: Config
    inputs: Any
    initial_states: list[Any]
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
    units, k, d1, d2 = 4, 2, 3, 2

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    def seq(d: int) -> np.ndarray:
        x = normal(batch, time, d)
        return np.swapaxes(x, 0, 1).copy() if config.time_major else x

    inputs = {"a": seq(d1), "b": seq(d2)} if config.nested else seq(d1)
    weights = {"Wa": normal(d1, units) * 0.5, "U": normal(units, units) * 0.5, "V": normal(units, units) * 0.5}
    if config.nested:
        weights["Wb"] = normal(d2, units) * 0.5
    states: list[Any] = [normal(batch, units)]
    extra = normal(batch, k, units) if config.rank3_state else normal(batch, units)
    if config.nested:
        states.append({"s": extra})
    elif config.rank3_state:
        states.append(extra)
    constants = [normal(batch, units)] if config.constants else None

    mask = _mask(config, rng, batch, time)
    lengths = rng.integers(1, time + 1, size=batch).astype(np.int32) if config.input_length else None
    return Case(config, inputs, states, constants, mask, lengths, weights)


def _mask(config: Config, rng: np.random.Generator, batch: int, time: int) -> np.ndarray | None:
    if config.mask == "none":
        return None
    keep = rng.random((batch, time)) > 0.35
    if config.mask == "all_masked_rows":
        keep[0] = False
    if config.mask == "first_step_masked":
        keep[:, 0] = False
    if config.time_major:
        keep = keep.T.copy()
    if config.mask == "float3d":
        return (keep * rng.uniform(0.5, 2.0, keep.shape)).astype(np.float32)[..., None]
    return keep


def make_step(fw: Framework, w: dict[str, Any], config: Config) -> Callable[..., Any]:
    """h' = tanh(x Wa [+ xb Wb] + h U [+ c]); the extra state s' = tanh(s V + h') (broadcast
    over its middle axis when of rank 3). The output is 2 h' - 0.5 (h' itself with
    alias_output), and with nested set, a dict also holding 1.5 s' (s' itself)."""

    def step(x: Any, states: tuple[Any, ...]) -> Any:
        h = states[0]
        if config.nested:
            z = x["a"] @ w["Wa"] + x["b"] @ w["Wb"]
        else:
            z = x @ w["Wa"]
        z = z + h @ w["U"]
        if config.constants:
            z = z + states[-1]
        h_new = fw.tanh(z)
        new_states: list[Any] = [h_new]
        out: Any = h_new if config.alias_output else h_new * 2.0 - 0.5
        if config.nested or config.rank3_state:
            s = states[1]["s"] if config.nested else states[1]
            h_b = h_new[:, None, :] if config.rank3_state else h_new
            s_new = fw.tanh(s @ w["V"] + h_b)
            new_states.append({"s": s_new} if config.nested else s_new)
            if config.nested:
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
