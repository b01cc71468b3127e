"""PyTorch specifics: ``torch.autograd.gradcheck``, dtypes and devices, gradients to
states and constants, and ``torch.compile(fullgraph=True)`` (the scan higher-order
op) against tf-keras and against eager.

The semantic and differential suites already run on PyTorch eagerly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rnnscan  # noqa: E402

from cases import Case, Config, configurations  # noqa: E402
from frameworks import framework  # noqa: E402
from oracle import assert_matches_reference, assert_trees_close, case_and_reference  # noqa: E402

FW = framework("torch")

# A spread of the differential suite's configurations: every mask kind, both
# directions, zero_output_for_mask, return_all_outputs, time-major, input_length,
# constants, nested, rank-3 states and outputs that are the states themselves.
COMPILE_CONFIGS = configurations()[1::29]

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _masked_tanh(x: Any, h0: Any, c: Any, w: Any, u: Any, mask: Any, **kwargs: Any) -> Any:
    """rnn() of h' = tanh(x w + h u + c) with a mask, as a tuple of tensors."""

    def step(x_t: Any, states: Any) -> Any:
        h, const = states
        h = torch.tanh(x_t @ w + h @ u + const)
        return h * 1.5 - 0.25, [h]

    last, outputs, (h,) = rnnscan.rnn(step, x, [h0], mask=mask, constants=[c], **kwargs)
    return last, outputs, h


def _tensors(rng: np.random.Generator, dtype: Any = torch.float64, device: str = "cpu", batch: int = 3, time: int = 5):
    d, units = 2, 4

    def normal(*shape: int, scale: float = 1.0) -> Any:
        return torch.tensor(rng.standard_normal(shape) * scale, dtype=dtype, device=device)

    mask = rng.random((batch, time)) > 0.3
    mask[0, 0] = False
    x, h0, c = normal(batch, time, d), normal(batch, units), normal(batch, units, scale=0.3)
    w, u = normal(d, units, scale=0.5), normal(units, units, scale=0.5)
    return (x, h0, c, w, u), torch.tensor(mask, device=device)


# -- autograd ------------------------------------------------------------------


@pytest.mark.parametrize("zero_output", [False, True], ids=["keep", "zero"])
@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "back"])
def test_gradcheck_with_mask(rng: np.random.Generator, go_backwards: bool, zero_output: bool) -> None:
    """Gradients to inputs, initial state, constants and weights, against float64 finite differences."""
    args, mask = _tensors(rng)
    args = tuple(a.requires_grad_() for a in args)

    def fn(*args: Any) -> Any:
        return _masked_tanh(*args, mask=mask, go_backwards=go_backwards, zero_output_for_mask=zero_output)

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradcheck_with_input_length(rng: np.random.Generator) -> None:
    args, _ = _tensors(rng)
    args = tuple(a.requires_grad_() for a in args)
    lengths = torch.tensor([5, 2, 0])

    def fn(*args: Any) -> Any:
        return _masked_tanh(*args, mask=None, input_length=lengths, go_backwards=True)

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradients_reach_states_and_constants_only_through_kept_steps(rng: np.random.Generator) -> None:
    """A sample masked at every step keeps its initial state: d(final state)/d(h0) is the identity
    there, and the constants (used only by the step function) get no gradient from it."""
    args, mask = _tensors(rng, dtype=torch.float32)
    mask[0] = False
    x, h0, c, w, u = (a.requires_grad_() for a in args)
    _, _, h = _masked_tanh(x, h0, c, w, u, mask=mask)
    h[0].sum().backward()
    assert torch.equal(h0.grad[0], torch.ones(4))
    assert torch.count_nonzero(h0.grad[1:]) == 0
    assert torch.count_nonzero(c.grad) == 0
    for weight in (w, u):
        assert weight.grad is None or torch.count_nonzero(weight.grad) == 0


# -- dtypes and devices -----------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, rtol", [(torch.float32, 1e-5), (torch.float64, 1e-12), (torch.bfloat16, 3e-2)], ids=str
)
@pytest.mark.parametrize("device", DEVICES)
def test_dtype_and_device_are_kept(rng: np.random.Generator, dtype: Any, rtol: float, device: str) -> None:
    args64, mask64 = _tensors(rng)
    expected = _masked_tanh(*args64, mask=mask64, go_backwards=True)
    args = tuple(a.to(device=device, dtype=dtype) for a in args64)
    got = _masked_tanh(*args, mask=mask64.to(device), go_backwards=True)
    for g, e in zip(got, expected):
        assert g.dtype == dtype and g.device.type == device
        np.testing.assert_allclose(FW.to_numpy(g), e.numpy(), rtol=rtol, atol=rtol)


def _autocast_step(w: Any, u: Any) -> Any:
    def step(x_t: Any, states: Any) -> Any:
        h = torch.tanh(x_t @ w + states[0] @ u)  # bfloat16 under autocast: its matmuls cast down
        return h * 1.5 - 0.25, [h]

    return step


def test_autocast_carries_states_in_their_own_dtype(rng: np.random.Generator) -> None:
    """Under ``torch.autocast`` a float32 state comes back bfloat16 from the step: it is cast up (lossless),
    and results and gradients are the hand-written loop's that does the same."""
    (x, h0, _, w, u), mask = _tensors(rng, dtype=torch.float32)
    w, u = w.requires_grad_(), u.requires_grad_()
    step = _autocast_step(w, u)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        last, outputs, (h,) = rnnscan.rnn(step, x, [h0], mask=mask)
        state, output, by_hand = h0, None, []
        for t in range(x.shape[1]):
            new_output, (new_state,) = step(x[:, t], (state,))
            kept = mask[:, t, None]
            state = torch.where(kept, new_state.float(), state)
            output = torch.where(kept, new_output, torch.zeros_like(new_output) if output is None else output)
            by_hand.append(output)
    assert (h.dtype, outputs.dtype, last.dtype) == (torch.float32, torch.bfloat16, torch.bfloat16)
    torch.testing.assert_close(h, state, rtol=0, atol=0)
    torch.testing.assert_close(outputs, torch.stack(by_hand, 1), rtol=0, atol=0)
    got = torch.autograd.grad(outputs.float().sum() + h.sum(), (w, u))
    expected = torch.autograd.grad(torch.stack(by_hand, 1).float().sum() + state.sum(), (w, u))
    for g, e in zip(got, expected):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6)


def test_autocast_still_refuses_a_state_cast_down(rng: np.random.Generator) -> None:
    """Only a lossless cast up is made: a bfloat16 state whose step returns float32 is refused, as is any
    dtype change outside autocast."""
    x, h0 = _tensors(rng, dtype=torch.float32)[0][:2]
    message = (
        "rnnscan.rnn: `step_function` must be returning new state 0 of the state's dtype Tensor of shape (3, 4) "
        "and dtype {state}; got Tensor of shape (3, 4) and dtype {new}."
    )
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(TypeError) as error:
        rnnscan.rnn(lambda x_t, s: (s[0].float(), [s[0].float()]), x, [h0.bfloat16()])
    assert str(error.value) == message.format(state="bfloat16", new="float32")
    with pytest.raises(TypeError) as error:
        rnnscan.rnn(lambda x_t, s: (s[0].bfloat16(), [s[0].bfloat16()]), x, [h0])
    assert str(error.value) == message.format(state="float32", new="bfloat16")


@pytest.mark.parametrize("masking", ["meta mask", "numpy mask", "numpy input_length"])
def test_meta_tensors_need_no_values(masking: str) -> None:
    """On the meta device every value read to the host fails: the loop reads none. A NumPy
    mask or input_length is put on the inputs' device (else ``where`` would mix devices)."""
    x, h0, c = torch.empty(3, 7, 2, device="meta"), torch.empty(3, 4, device="meta"), torch.empty(4, device="meta")
    w, u = torch.empty(2, 4, device="meta"), torch.empty(4, 4, device="meta")
    kwargs: dict[str, Any] = {
        "meta mask": {"mask": torch.empty(3, 7, dtype=torch.bool, device="meta")},
        "numpy mask": {"mask": np.arange(7)[None, :] < np.array([[7], [3], [1]])},
        "numpy input_length": {"mask": None, "input_length": np.array([7, 3, 1])},
    }[masking]
    last, outputs, h = _masked_tanh(x, h0, c, w, u, zero_output_for_mask=True, **kwargs)
    assert (last.shape, outputs.shape, h.shape) == ((3, 4), (3, 7, 4), (3, 4))
    assert {t.device.type for t in (last, outputs, h)} == {"meta"}


@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unroll"])
def test_eager_loop_calls_the_step_once_per_time_step(rng: np.random.Generator, unroll: bool) -> None:
    (x, h0, c, w, u), mask = _tensors(rng, dtype=torch.float32, time=9)
    calls = []

    def step(x_t: Any, states: Any) -> Any:
        calls.append(x_t.shape)
        h = torch.tanh(x_t @ w + states[0] @ u)
        return h, [h]

    rnnscan.rnn(step, x, [h0], mask=mask, unroll=unroll)
    assert calls == [(3, 2)] * 9


# -- torch.compile ---------------------------------------------------------------------


def _compiled_call(case: Case, fullgraph: bool = True) -> Any:
    """``rnnscan.rnn`` on ``case`` inside ``torch.compile`` (with ``fullgraph``, any graph break raises), as NumPy."""
    torch._dynamo.reset()  # every case compiles afresh, not as a recompilation of the last
    kwargs = case.kwargs(FW)
    arrays = {name: kwargs.pop(name) for name in ("mask", "constants", "input_length")}
    step = case.step(FW)

    @torch.compile(fullgraph=fullgraph)
    def run(inputs: Any, states: Any, arrays: dict[str, Any]) -> Any:
        return rnnscan.rnn(step, inputs, states, **arrays, **kwargs)

    return FW.tree_numpy(run(FW.tree(case.inputs), FW.tree(case.initial_states), arrays))


@pytest.mark.parametrize("config", COMPILE_CONFIGS, ids=[c.id for c in COMPILE_CONFIGS])
def test_compile_fullgraph_matches_tf_keras_and_eager(config: Config) -> None:
    case, expected = case_and_reference(config)
    got = _compiled_call(case)
    assert_matches_reference(got, expected, atol=1e-5)
    assert_trees_close(got, case.call(rnnscan.rnn, FW), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("config", COMPILE_CONFIGS[:2], ids=[c.id for c in COMPILE_CONFIGS[:2]])
def test_compile_without_fullgraph(config: Config) -> None:
    """``torch.compile(f)`` as most code calls it."""
    case, expected = case_and_reference(config)
    got = _compiled_call(case, fullgraph=False)
    assert_matches_reference(got, expected, atol=1e-5)
    assert_trees_close(got, case.call(rnnscan.rnn, FW), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layers", [1, 2])
def test_compile_gradients_match_eager(rng: np.random.Generator, layers: int) -> None:
    """Two layers chain two scans in one graph (torch 2.13's inductor has got such
    chains' gradients wrong before: pytorch/pytorch#153679). In float64, to compare tightly."""
    args, mask = _tensors(rng, time=12)
    w2 = torch.tensor(rng.standard_normal((4, 4)) * 0.5)
    args = (*args, w2)

    def loss(x: Any, h0: Any, c: Any, w: Any, u: Any, w2: Any = None) -> Any:
        last, outputs, h = _masked_tanh(x, h0, c, w, u, mask=mask, go_backwards=True)
        if layers == 2:
            last, outputs, h = _masked_tanh(outputs, h, c, w2, u, mask=mask)
        return (outputs**2).sum() + last.sum() + h.sum()

    args = args if layers == 2 else args[:-1]
    eager = torch.autograd.grad(loss(*(a.requires_grad_() for a in args)), args)
    compiled = torch.autograd.grad(torch.compile(loss, fullgraph=True)(*args), args)
    for c, e in zip(compiled, eager):
        torch.testing.assert_close(c, e, rtol=1e-10, atol=1e-10)


def test_compile_single_time_step(rng: np.random.Generator) -> None:
    """T=1: the scan op has nothing left to run after the first step."""
    args, mask = _tensors(rng, dtype=torch.float32, time=1)
    mask[:] = True
    mask[0] = False
    fn = torch.compile(lambda *args: _masked_tanh(*args, mask=mask), fullgraph=True)
    for c, e in zip(fn(*args), _masked_tanh(*args, mask=mask)):
        torch.testing.assert_close(c, e)
