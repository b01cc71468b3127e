"""The implementations timed: rnnscan on each backend, and the peers a user would otherwise use.

A per-framework *harness* turns an ``rnn_call(step, x, states, mask) -> outputs``
(rnnscan's, a loop by hand, tf-keras's, Keras 3's) into the two passes, the same
for all, so that only the loop differs: ``forward`` (outputs ``(B, T, U)``) and
``forward+backward`` (gradients of ``sum(outputs**2 * mask)`` with respect to the
weights, in ``Data.params`` order). A built runner runs one pass and waits for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optree

from .._frameworks import FRAMEWORKS, installed, ops
from .by_hand import jax_by_hand, numpy_by_hand, tensorflow_by_hand, torch_by_hand, torch_scan_by_hand
from .workloads import Data

FORWARD, BACKWARD = "forward", "forward+backward"
MODES = (FORWARD, BACKWARD)
XLA = ", XLA"  # a TensorFlow pass compiled by tf.function(jit_compile=True): timed against its XLA peers alone
XLA_MODES = tuple(m + XLA for m in MODES)  # not in --quick
BACKENDS = FRAMEWORKS
BACKEND_MODES = {"numpy": (FORWARD,), "jax": MODES, "torch": MODES, "tensorflow": MODES + XLA_MODES}
KERAS3, FUSED = "keras3", "torch.nn fused"
EXTRAS = {"jax": "jax", "torch": "torch", "tensorflow": "tensorflow", "keras": "bench", "tf_keras": "bench"}

RnnCall = Callable[[Callable[..., Any], Any, Any, Any], Any]
Runner = Callable[[], Any]
Build = Callable[[Data, str], Runner]


@dataclass(frozen=True)
class Impl:
    """One implementation on one backend."""

    backend: str  # the framework whose arrays it runs on
    name: str  # as shown in the table
    build: Build
    rnnscan: bool = False
    needs: tuple[str, ...] = ()  # modules needed beyond the backend's framework
    in_keras_worker: bool = False  # Keras 3 fixes its backend per process: a subprocess per backend, unless
    # this process's Keras is on that backend (harness.keras_runs_here)
    workloads: tuple[str, ...] | None = None  # None: every workload
    note: str = ""  # how it runs, shown under the tables
    quick: bool = True  # part of --quick

    def missing(self) -> str | None:
        """The first module it needs that is not installed, or None."""
        return next((m for m in (self.backend, *self.needs) if not installed(m)), None)


def _rnnscan_call(step: Callable[..., Any], x: Any, states: Any, mask: Any) -> Any:
    import rnnscan

    return rnnscan.rnn(step, x, states, mask=mask)[1]


def tf_keras_call(step: Callable[..., Any], x: Any, states: Any, mask: Any) -> Any:
    """``tf_keras.backend.rnn`` (the reference semantics rnnscan follows)."""
    import tf_keras

    return tf_keras.backend.rnn(step, x, states, mask=mask)[1]


def keras3_call(step: Callable[..., Any], x: Any, states: Any, mask: Any) -> Any:
    """Keras 3's ``rnn`` of the active backend (``keras.src.backend.rnn``; Keras 3 has no public rnn op)."""
    from keras.src import backend

    return backend.rnn(step, x, states, mask=mask)[1]


# -- the harnesses ------------------------------------------------------------------------------
def numpy_harness(rnn_call: RnnCall) -> Build:
    """Forward only (NumPy has no autodiff)."""

    def build(data: Data, _mode: str) -> Runner:
        step = data.workload.make_step(ops("numpy"), data.params)
        return lambda: rnn_call(step, data.x, data.states, data.mask)

    return build


def _traced(data: Data, convert: Callable[[Any], Any], rnn_call: RnnCall, fw: str) -> tuple[Any, Callable[..., Any]]:
    """The problem's arrays ``(params, x, mask, states)`` and ``forward(*arrays) -> outputs`` for JAX and TF."""

    def forward(params: Any, x: Any, mask: Any, states: Any) -> Any:
        return rnn_call(data.workload.make_step(ops(fw), params), x, states, mask)

    params = {k: convert(v) for k, v in data.params.items()}
    return (params, convert(data.x), convert(data.mask), optree.tree_map(convert, data.states)), forward


def jax_harness(rnn_call: RnnCall) -> Build:
    """``jax.jit`` of the forward pass, or of ``jax.grad`` of the loss."""

    def build(data: Data, mode: str) -> Runner:
        import jax
        import jax.numpy as jnp

        args, forward = _traced(data, jnp.asarray, rnn_call, "jax")
        if mode == FORWARD:
            fwd = jax.jit(forward)
            return lambda: fwd(*args).block_until_ready()

        def loss(params: Any, x: Any, mask: Any, states: Any) -> Any:
            out = forward(params, x, mask, states)
            return jnp.sum(out * out * mask[..., None].astype(out.dtype))

        grad = jax.jit(jax.grad(loss))
        return lambda: [jax.block_until_ready(grad(*args))[k] for k in data.params]

    return build


def modes_of(backend: str, quick: bool) -> tuple[str, ...]:
    """The passes timed on ``backend``: XLA's not in ``--quick``."""
    return tuple(m for m in BACKEND_MODES[backend] if not (quick and m in XLA_MODES))


def base_mode(mode: str) -> str:
    """The pass of a mode: ``forward`` or ``forward+backward``, XLA or not."""
    return mode.removesuffix(XLA)


def short_mode(mode: str) -> str:
    """``fwd``, ``fwd+bwd``, ``fwd XLA``, ``fwd+bwd XLA``: a mode in a table's line or a plot's label."""
    return ("fwd" if base_mode(mode) == FORWARD else "fwd+bwd") + (" XLA" if mode in XLA_MODES else "")


def tensorflow_harness(rnn_call: RnnCall) -> Build:
    """``tf.function`` of the forward pass, or of a ``GradientTape`` pass; ``jit_compile=True`` in the XLA modes."""

    def build(data: Data, mode: str) -> Runner:
        import tensorflow as tf

        jit_compile, mode = mode in XLA_MODES, base_mode(mode)

        args, forward = _traced(data, tf.constant, rnn_call, "tensorflow")

        def forward_backward(params: Any, x: Any, mask: Any, states: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(params)
                out = forward(params, x, mask, states)
                loss = tf.reduce_sum(out * out * tf.cast(mask, out.dtype)[..., None])
            grads = tape.gradient(loss, params)
            return [grads[k] for k in data.params]

        fn = tf.function(forward if mode == FORWARD else forward_backward, jit_compile=jit_compile)
        return lambda: fn(*args)

    return build


def torch_harness(rnn_call: RnnCall, compile: bool = False) -> Build:
    """Eager (or ``torch.compile``d, ``fullgraph``) forward under ``no_grad``; ``autograd.grad`` of the loss
    (outside the compiled function: inside, it would break the graph; the compiled backward runs all the same)."""

    def build(data: Data, mode: str) -> Runner:
        import torch

        x, mask = torch.from_numpy(data.x), torch.from_numpy(data.mask)
        states = optree.tree_map(torch.from_numpy, data.states)
        params = {k: torch.from_numpy(v).requires_grad_(mode != FORWARD) for k, v in data.params.items()}
        step, maskf = data.workload.make_step(ops("torch"), params), mask[..., None].float()

        def forward(x: Any, states: Any, mask: Any) -> Any:
            return rnn_call(step, x, states, mask)

        def loss(x: Any, states: Any, mask: Any) -> Any:
            out = forward(x, states, mask)
            return (out * out * maskf).sum()

        if compile:
            forward, loss = torch.compile(forward, fullgraph=True), torch.compile(loss, fullgraph=True)
        if mode == FORWARD:
            return torch.no_grad()(lambda: forward(x, states, mask))
        return lambda: list(torch.autograd.grad(loss(x, states, mask), list(params.values())))

    return build


def torch_fused_build(data: Data, mode: str) -> Runner:
    """``torch.nn.RNN`` (tanh) for W1, ``torch.nn.LSTM`` for W2, same weights, masked by packing (the padded
    steps output zeros where the step-function loops repeat the previous output; the loss masks them alike)."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    batch, time, units = data.shape
    lstm = data.workload.key == "W2"
    module = (torch.nn.LSTM if lstm else torch.nn.RNN)(data.x.shape[-1], units, batch_first=True)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(data.params["W"].T))
        module.weight_hh_l0.copy_(torch.from_numpy(data.params["U"].T))
        module.bias_ih_l0.copy_(torch.from_numpy(data.params["b"]))
        module.bias_hh_l0.zero_()
    module.requires_grad_(mode != FORWARD)
    x, lengths = torch.from_numpy(data.x), torch.from_numpy(data.lengths)
    zeros = tuple(torch.from_numpy(s)[None] for s in data.states)
    maskf = torch.from_numpy(data.mask)[..., None].float()

    def forward() -> Any:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = module(packed, zeros if lstm else zeros[0])
        return pad_packed_sequence(out, batch_first=True, total_length=time)[0]

    if mode == FORWARD:
        return torch.no_grad()(forward)
    weights = [module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0]
    return lambda: list(torch.autograd.grad((forward() ** 2 * maskf).sum(), weights))


HARNESSES: dict[str, Callable[[RnnCall], Build]] = {
    "numpy": numpy_harness,
    "jax": jax_harness,
    "torch": torch_harness,
    "tensorflow": tensorflow_harness,
}


def _keras3(backend: str, note: str) -> Impl:
    return Impl(backend, KERAS3, HARNESSES[backend](keras3_call), needs=("keras",), in_keras_worker=True, note=note)


def implementations() -> list[Impl]:
    """Every implementation, rnnscan's first on each backend."""
    np_, jx, th, tf, ours = numpy_harness, jax_harness, torch_harness, tensorflow_harness, _rnnscan_call
    scan = "torch.compile of torch._higher_order_ops.scan"
    fused = "W1: torch.nn.RNN(nonlinearity='tanh'), W2: torch.nn.LSTM; masked by packing"
    return [
        Impl("numpy", "rnnscan", np_(ours), rnnscan=True),
        Impl("numpy", "loop by hand", np_(numpy_by_hand)),
        _keras3("numpy", "keras.src.backend.rnn, numpy backend"),
        Impl("jax", "rnnscan", jx(ours), rnnscan=True, note="jax.jit"),
        Impl("jax", "lax.scan by hand", jx(jax_by_hand), note="jax.jit"),
        _keras3("jax", "jax.jit"),
        Impl("torch", "rnnscan", th(ours), rnnscan=True, note="eager"),
        Impl("torch", "rnnscan compiled", th(ours, True), rnnscan=True, quick=False, note="torch.compile"),
        Impl("torch", "scan by hand compiled", th(torch_scan_by_hand, True), quick=False, note=scan),
        Impl("torch", "loop by hand", th(torch_by_hand), note="eager"),
        Impl("torch", FUSED, torch_fused_build, workloads=("W1", "W2"), note=fused),
        _keras3("torch", "eager"),
        Impl("tensorflow", "rnnscan", tf(ours), rnnscan=True, note="tf.function (XLA rows: jit_compile=True)"),
        Impl("tensorflow", "while_loop by hand", tf(tensorflow_by_hand), note="tf.function"),
        Impl("tensorflow", "tf_keras", tf(tf_keras_call), needs=("tf_keras",), note="tf.function"),
        _keras3("tensorflow", "tf.function"),
    ]
