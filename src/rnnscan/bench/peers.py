"""The implementations timed: rnnscan on each backend, and the peers a user would otherwise use.

Every implementation is an :class:`Impl`. Most are built in this process by a
per-framework *harness* (``numpy_harness``, ``jax_harness``, ``torch_harness``,
``tensorflow_harness``) around an ``rnn``-like callable
``rnn_call(step, x, states, mask) -> outputs``: rnnscan's, a loop written by hand,
tf-keras's, or (in :mod:`rnnscan.bench.keras3_worker`) Keras 3's. The harness
makes the forward pass (all outputs) and the forward+backward pass (gradients of
``sum(outputs**2 * mask)`` with respect to the weights) the same way for all of
them, so that only the loop differs. ``torch.nn.RNN``/``torch.nn.LSTM`` (fused
kernels, no step function) have their own builder. Frameworks are imported
inside the functions, never at module level.

Each built callable runs one pass, waits for its result and returns it:
the outputs ``(B, T, U)`` for ``forward``, the list of gradients in the order of
``Data.params`` for ``forward+backward``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .workloads import OPS, Data, tree_leaves, tree_map

FORWARD = "forward"
BACKWARD = "forward+backward"
MODES = (FORWARD, BACKWARD)
BACKENDS = ("numpy", "jax", "torch", "tensorflow")
BACKEND_MODES = {"numpy": (FORWARD,), "jax": MODES, "torch": MODES, "tensorflow": MODES}

RnnCall = Callable[[Callable[..., Any], Any, Any, Any], Any]
Runner = Callable[[], Any]


@dataclass(frozen=True)
class Impl:
    """One implementation on one backend."""

    backend: str  # the framework whose arrays it runs on
    name: str  # as shown in the table
    is_rnnscan: bool
    requires: tuple[str, ...]  # modules that must be importable
    build: Callable[[Data, str], Runner] | None  # None: run by the Keras 3 worker
    workloads: tuple[str, ...] | None = None  # None: every workload
    note: str = ""  # how it differs from the others, shown in the output
    quick: bool = True  # part of --quick
    max_time: int | None = None  # skipped above this T (compile time grows with T)

    @property
    def keras3(self) -> bool:
        """Run in a Keras 3 subprocess (Keras fixes its backend per process)."""
        return self.build is None

    def missing(self) -> str | None:
        """The first required module that is not installed, or None."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                return module
        return None


def _rnnscan_call(step: Callable[..., Any], x: Any, states: Any, mask: Any) -> Any:
    import rnnscan

    return rnnscan.rnn(step, x, states, mask=mask)[1]


def _first_output(states: Any, zeros_like: Callable[[Any], Any]) -> Any:
    """The output before the first step: zeros shaped like the first state leaf (``h`` in every workload)."""
    return zeros_like(tree_leaves(states)[0])


def _arrays(data: Data, convert: Callable[[Any], Any]) -> tuple[dict[str, Any], Any, Any, Any]:
    """``(params, x, mask, states)`` of ``data`` converted to a framework's arrays."""
    params = {k: convert(v) for k, v in data.params.items()}
    return params, convert(data.x), convert(data.mask), tree_map(convert, data.states)


def _merge(where: Callable[..., Any], m2: Any, m3: Any, new: Any, old: Any) -> Any:
    """``where(mask, new, old)`` on every state leaf, the mask broadcast to rank 2 or 3."""
    if isinstance(new, dict):
        return {k: _merge(where, m2, m3, new[k], old[k]) for k in new}
    if isinstance(new, (list, tuple)):
        return [_merge(where, m2, m3, n, o) for n, o in zip(new, old)]
    return where(m2 if len(new.shape) == 2 else m3, new, old)


def _scan_body(step: Callable[..., Any], where: Callable[..., Any], copy: Callable[[Any], Any] = lambda a: a) -> Any:
    """A scan body ``((states, out), (x_t, m_t)) -> ((states, out), out)`` with the masked update written out;
    ``copy`` applied to what it returns."""

    def body(carry: Any, xs: Any) -> Any:
        states, out = carry
        x_t, m_t = xs
        m2 = m_t[:, None]
        new_out, new_states = step(x_t, states)
        states = _merge(where, m2, m2[..., None], new_states, states)
        out = where(m2, new_out, out)
        return (tree_map(copy, states), copy(out)), copy(out)

    return body


# -- NumPy ----------------------------------------------------------------------------
def numpy_by_hand(step: Callable[..., Any], x: Any, states: Any, mask: Any) -> Any:
    """The Python loop a NumPy user writes: keep states and outputs where the mask is off."""
    import numpy as np

    m2 = mask.T[:, :, None]
    m3 = m2[..., None]
    out = _first_output(states, np.zeros_like)
    outputs = []
    for t, x_t in enumerate(np.swapaxes(x, 0, 1)):
        new_out, new_states = step(x_t, states)
        states = _merge(np.where, m2[t], m3[t], new_states, states)
        out = np.where(m2[t], new_out, out)
        outputs.append(out)
    return np.stack(outputs, 1)


def numpy_harness(rnn_call: RnnCall) -> Callable[[Data, str], Runner]:
    """Forward only (NumPy has no autodiff)."""

    def build(data: Data, mode: str) -> Runner:
        if mode != FORWARD:
            raise ValueError("NumPy runs the forward pass only")
        step = data.workload.make_step(OPS["numpy"](), data.params)
        return lambda: rnn_call(step, data.x, data.states, data.mask)

    return build


# -- JAX ------------------------------------------------------------------------------
def jax_by_hand(step: Callable[..., Any], x: Any, states: Any, mask: Any) -> Any:
    """``jax.lax.scan`` over time with the masked update written out."""
    import jax
    import jax.numpy as jnp

    carry = (list(states), _first_output(states, jnp.zeros_like))
    _, outputs = jax.lax.scan(_scan_body(step, jnp.where), carry, (jnp.swapaxes(x, 0, 1), mask.T))
    return jnp.swapaxes(outputs, 0, 1)


def jax_harness(rnn_call: RnnCall) -> Callable[[Data, str], Runner]:
    """``jax.jit`` of the forward pass, or of ``jax.grad`` of the loss."""

    def build(data: Data, mode: str) -> Runner:
        import jax
        import jax.numpy as jnp

        ops = OPS["jax"]()
        args = _arrays(data, jnp.asarray)

        def forward(params: Any, x: Any, mask: Any, states: Any) -> Any:
            return rnn_call(data.workload.make_step(ops, params), x, states, mask)

        if mode == FORWARD:
            fwd = jax.jit(forward)
            return lambda: fwd(*args).block_until_ready()

        def loss(params: Any, x: Any, mask: Any, states: Any) -> Any:
            out = forward(params, x, mask, states)
            return jnp.sum(out * out * mask[..., None].astype(out.dtype))

        grad = jax.jit(jax.grad(loss))
        names = list(data.params)

        def run() -> Any:
            grads = jax.block_until_ready(grad(*args))
            return [grads[k] for k in names]

        return run

    return build


# -- PyTorch --------------------------------------------------------------------------
def torch_by_hand(step: Callable[..., Any], x: Any, states: Any, mask: Any) -> Any:
    """The eager Python loop a PyTorch user writes."""
    import torch

    m2 = mask.T[:, :, None]
    out = _first_output(states, torch.zeros_like)
    outputs = []
    for x_t, m2_t, m3_t in zip(x.unbind(1), m2.unbind(0), m2[..., None].unbind(0)):
        new_out, new_states = step(x_t, states)
        states = _merge(torch.where, m2_t, m3_t, new_states, states)
        out = torch.where(m2_t, new_out, out)
        outputs.append(out)
    return torch.stack(outputs, 1)


def torch_scan_by_hand(step: Callable[..., Any], x: Any, states: Any, mask: Any) -> Any:
    """The compilable loop a PyTorch user writes: ``torch._higher_order_ops.scan`` (run under ``torch.compile``).

    The body returns copies of its carry and outputs: the op refuses aliased
    results, and torch 2.13's inductor a carry that autograd also saves.
    """
    import torch
    from torch._higher_order_ops.scan import scan

    init = (tree_map(torch.clone, states), _first_output(states, torch.zeros_like))
    xs = (x.transpose(0, 1).contiguous(), mask.T.contiguous())
    _, outputs = scan(_scan_body(step, torch.where, torch.clone), init, xs)
    return outputs.transpose(0, 1)


def torch_harness(rnn_call: RnnCall, compile: bool = False) -> Callable[[Data, str], Runner]:
    """Eager (or ``torch.compile``d) forward under ``no_grad``; ``autograd.grad`` of the loss."""

    def build(data: Data, mode: str) -> Runner:
        import torch

        ops = OPS["torch"]()
        x, mask = torch.from_numpy(data.x), torch.from_numpy(data.mask)
        states = tree_map(torch.from_numpy, data.states)
        params = {k: torch.from_numpy(v).requires_grad_(mode != FORWARD) for k, v in data.params.items()}
        step = data.workload.make_step(ops, params)
        weights = list(params.values())
        maskf = mask[..., None].to(x.dtype)

        def forward(x: Any, states: Any, mask: Any) -> Any:
            return rnn_call(step, x, states, mask)

        def loss(x: Any, states: Any, mask: Any) -> Any:
            out = forward(x, states, mask)
            return (out * out * maskf).sum()

        # torch.compile takes the forward pass and the loss; autograd.grad stays outside
        # (inside, it would break the graph); the compiled backward runs all the same.
        if compile:
            forward, loss = torch.compile(forward, fullgraph=True), torch.compile(loss, fullgraph=True)
        if mode == FORWARD:

            def run() -> Any:
                with torch.no_grad():
                    return forward(x, states, mask)

            return run

        def fwd_bwd(x: Any, states: Any, mask: Any) -> Any:
            return torch.autograd.grad(loss(x, states, mask), weights)

        return lambda: list(fwd_bwd(x, states, mask))

    return build


def torch_fused_build(data: Data, mode: str) -> Runner:
    """``torch.nn.RNN`` (tanh) for W1, ``torch.nn.LSTM`` for W2, same weights, masked by packing.

    The padded steps of a packed sequence output zeros where the step-function
    loops repeat the previous output; the loss multiplies by the mask, so the
    outputs, the loss and the gradients compare all the same.
    """
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    batch, time, units = data.shape
    cls = {"W1": torch.nn.RNN, "W2": torch.nn.LSTM}[data.workload.key]
    extra = {"nonlinearity": "tanh"} if cls is torch.nn.RNN else {}
    module = cls(data.x.shape[-1], units, batch_first=True, **extra)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(data.params["W"].T))
        module.weight_hh_l0.copy_(torch.from_numpy(data.params["U"].T))
        module.bias_ih_l0.copy_(torch.from_numpy(data.params["b"]))
        module.bias_hh_l0.zero_()
    module.requires_grad_(mode != FORWARD)
    x, lengths = torch.from_numpy(data.x), torch.from_numpy(data.lengths)
    zeros = tuple(torch.from_numpy(s)[None] for s in data.states)
    h0 = zeros[0] if cls is torch.nn.RNN else zeros
    maskf = torch.from_numpy(data.mask)[..., None].to(x.dtype)

    def forward() -> Any:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = module(packed, h0)
        return pad_packed_sequence(out, batch_first=True, total_length=time)[0]

    if mode == FORWARD:

        def run() -> Any:
            with torch.no_grad():
                return forward()

        return run
    weights = [module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0]

    def run_backward() -> Any:
        out = forward()
        return list(torch.autograd.grad((out * out * maskf).sum(), weights))

    return run_backward


# -- TensorFlow -----------------------------------------------------------------------
def tensorflow_by_hand(step: Callable[..., Any], x: Any, states: Any, mask: Any) -> Any:
    """``tf.while_loop`` over ``TensorArray``s with the masked update written out (for ``tf.function``)."""
    import tensorflow as tf

    time = x.shape[1]
    xs = tf.TensorArray(x.dtype, size=time).unstack(tf.transpose(x, [1, 0, 2]))
    ms = tf.TensorArray(tf.bool, size=time).unstack(tf.transpose(mask))
    outputs = tf.TensorArray(x.dtype, size=time)

    def body(t: Any, states: Any, out: Any, outputs: Any) -> Any:
        m2 = ms.read(t)[:, None]
        new_out, new_states = step(xs.read(t), states)
        states = _merge(tf.where, m2, m2[..., None], new_states, states)
        out = tf.where(m2, new_out, out)
        return t + 1, states, out, outputs.write(t, out)

    loop_vars = (tf.constant(0), list(states), _first_output(states, tf.zeros_like), outputs)
    *_, outputs = tf.while_loop(lambda t, *_: t < time, body, loop_vars)
    return tf.transpose(outputs.stack(), [1, 0, 2])


def tensorflow_harness(rnn_call: RnnCall, jit_compile: bool = False) -> Callable[[Data, str], Runner]:
    """``tf.function`` (optionally XLA) of the forward pass, or of a ``GradientTape`` pass."""

    def build(data: Data, mode: str) -> Runner:
        import tensorflow as tf

        ops = OPS["tensorflow"]()
        args = _arrays(data, tf.constant)
        names = list(data.params)

        def forward(params: Any, x: Any, mask: Any, states: Any) -> Any:
            return rnn_call(data.workload.make_step(ops, params), x, states, mask)

        def forward_backward(params: Any, x: Any, mask: Any, states: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(params)
                out = forward(params, x, mask, states)
                loss = tf.reduce_sum(out * out * tf.cast(mask, out.dtype)[..., None])
            grads = tape.gradient(loss, params)
            return [grads[k] for k in names]

        fn = tf.function(forward if mode == FORWARD else forward_backward, jit_compile=jit_compile)
        return lambda: fn(*args)

    return build


def tf_keras_call(step: Callable[..., Any], x: Any, states: Any, mask: Any) -> Any:
    """``tf_keras.backend.rnn`` (the reference semantics rnnscan follows)."""
    import tf_keras

    return tf_keras.backend.rnn(step, x, states, mask=mask)[1]


def keras3_call(step: Callable[..., Any], x: Any, states: Any, mask: Any) -> Any:
    """Keras 3's ``rnn`` of the active backend (``keras.src.backend.rnn``; Keras 3 has no public rnn op)."""
    from keras.src import backend

    return backend.rnn(step, x, states, mask=mask)[1]


HARNESSES: dict[str, Callable[[RnnCall], Callable[[Data, str], Runner]]] = {
    "numpy": numpy_harness,
    "jax": jax_harness,
    "torch": torch_harness,
    "tensorflow": tensorflow_harness,
}

KERAS3 = "keras3"
FUSED = "torch.nn fused"  # torch.nn.RNN for W1, torch.nn.LSTM for W2


def implementations() -> list[Impl]:
    """Every implementation, rnnscan's first on each backend."""
    return [
        Impl("numpy", "rnnscan", True, ("numpy",), numpy_harness(_rnnscan_call)),
        Impl("numpy", "loop by hand", False, ("numpy",), numpy_harness(numpy_by_hand)),
        Impl("numpy", KERAS3, False, ("keras",), None, note="keras.src.backend.rnn, numpy backend, subprocess"),
        Impl("jax", "rnnscan", True, ("jax",), jax_harness(_rnnscan_call), note="jax.jit"),
        Impl("jax", "lax.scan by hand", False, ("jax",), jax_harness(jax_by_hand), note="jax.jit"),
        Impl("jax", KERAS3, False, ("jax", "keras"), None, note="jax.jit, subprocess"),
        Impl("torch", "rnnscan", True, ("torch",), torch_harness(_rnnscan_call), note="eager"),
        Impl(
            "torch",
            "rnnscan compiled",
            True,
            ("torch",),
            torch_harness(_rnnscan_call, compile=True),
            note="torch.compile (full grid only)",
            quick=False,
        ),
        Impl(
            "torch",
            "scan by hand compiled",
            False,
            ("torch",),
            torch_harness(torch_scan_by_hand, compile=True),
            note="torch._higher_order_ops.scan under torch.compile (full grid only)",
            quick=False,
        ),
        Impl("torch", "loop by hand", False, ("torch",), torch_harness(torch_by_hand), note="eager"),
        Impl("torch", KERAS3, False, ("torch", "keras"), None, note="eager, subprocess"),
        Impl(
            "torch",
            FUSED,
            False,
            ("torch",),
            torch_fused_build,
            workloads=("W1",),
            note="W1: torch.nn.RNN(nonlinearity='tanh'), W2: torch.nn.LSTM; masked by pack_padded_sequence",
        ),
        Impl(
            "torch",
            FUSED,
            False,
            ("torch",),
            torch_fused_build,
            workloads=("W2",),
            note="W1: torch.nn.RNN(nonlinearity='tanh'), W2: torch.nn.LSTM; masked by pack_padded_sequence",
        ),
        Impl("tensorflow", "rnnscan", True, ("tensorflow",), tensorflow_harness(_rnnscan_call), note="tf.function"),
        Impl(
            "tensorflow",
            "rnnscan XLA",
            True,
            ("tensorflow",),
            tensorflow_harness(_rnnscan_call, jit_compile=True),
            note="tf.function(jit_compile=True)",
            quick=False,
        ),
        Impl(
            "tensorflow",
            "while_loop by hand",
            False,
            ("tensorflow",),
            tensorflow_harness(tensorflow_by_hand),
            note="tf.function",
        ),
        Impl(
            "tensorflow",
            "tf_keras",
            False,
            ("tensorflow", "tf_keras"),
            tensorflow_harness(tf_keras_call),
            note="tf_keras.backend.rnn in tf.function",
        ),
        Impl("tensorflow", KERAS3, False, ("tensorflow", "keras"), None, note="tf.function, subprocess"),
    ]
