"""The upstream bugs behind rnnscan's framework workarounds (src/rnnscan/backends/_compat.py
and the torch scan op's helpers), each shown on plain framework code.

Each test is a strict xfail: it fails today because of the bug, and once upstream fixes
it the test passes, the strict xfail turns the run red, and the workaround can go.
The private APIs rnnscan reads are checked to be there, so that a release that moves
them is noticed here first.
"""

from __future__ import annotations

import numpy as np
import pytest

from frameworks import installed

torch_only = pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
tf_only = pytest.mark.skipif(not installed("tensorflow"), reason="tensorflow is not installed")


def _torch_scan():
    from torch._higher_order_ops.scan import scan

    return scan


def _tanh_scan(scan, x, h0, w):
    """A hand-written scan op over ``x`` (time, batch, units): ``h = tanh(x_t + h @ w)``."""
    import torch

    def body(h, x_t):
        h = torch.tanh(x_t + h @ w)
        return h.clone(), h.clone()

    return scan(body, h0, x)


@torch_only
def test_private_torch_apis_are_there():
    import torch
    import torch._functorch.config
    from torch.utils import _pytree

    assert hasattr(_pytree, "SUPPORTED_NODES") and hasattr(torch._functorch.config, "donated_buffer")
    assert hasattr(torch._C._functorch, "is_functorch_wrapped_tensor")
    assert hasattr(torch._guards.TracingContext, "try_get")


@tf_only
def test_private_tensorflow_api_is_there():
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext  # noqa: F401


@torch_only
@pytest.mark.xfail(
    strict=True,
    reason="pytorch/pytorch#153679: inductor's donated buffers give wrong gradients for two chained "
    "scans (rnnscan turns torch._functorch.config.donated_buffer off while tracing)",
)
def test_torch_chained_scans_with_donated_buffers_have_the_eager_gradients():
    import torch
    import torch._functorch.config

    scan = _torch_scan()
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((12, 3, 4)))
    h0 = torch.tensor(rng.standard_normal((3, 4)))
    w1, w2 = (torch.tensor(rng.standard_normal((4, 4)) * 0.5, requires_grad=True) for _ in range(2))

    def loss(x, h0, w1, w2):
        h, ys = _tanh_scan(scan, x, h0, w1)
        h, ys = _tanh_scan(scan, ys, h, w2)
        return (ys**2).sum() + h.sum()

    eager = torch.autograd.grad(loss(x, h0, w1, w2), [w1, w2])
    torch._dynamo.reset()
    before = torch._functorch.config.donated_buffer
    torch._functorch.config.donated_buffer = True
    try:
        compiled = torch.autograd.grad(torch.compile(loss, fullgraph=True)(x, h0, w1, w2), [w1, w2])
    finally:
        torch._functorch.config.donated_buffer = before
    for c, e in zip(compiled, eager):
        torch.testing.assert_close(c, e, rtol=1e-10, atol=1e-10)


@torch_only
@pytest.mark.xfail(
    strict=True,
    reason="torch 2.13: inductor lowers the scan op with a captured .item(), which a graph that does "
    "not allow scalar outputs refuses (rnnscan allows them for its graph while tracing)",
)
def test_torch_scan_compiles_without_fullgraph():
    import torch

    scan = _torch_scan()
    torch._dynamo.reset()
    x, h0, w = torch.randn(6, 2, 3), torch.randn(2, 3), torch.randn(3, 3)
    h, _ = torch.compile(lambda x, h0, w: _tanh_scan(scan, x, h0, w))(x, h0, w)
    torch.testing.assert_close(h, _tanh_scan(scan, x, h0, w)[0])


@torch_only
@pytest.mark.xfail(
    strict=True,
    reason="torch 2.13: the scan op's backward refuses incoming gradients that alias each other "
    "('scan might be aliasing the input or the output'); rnnscan gives each its own copy",
)
def test_torch_scan_backward_takes_aliased_gradients():
    import torch

    scan = _torch_scan()
    torch._dynamo.reset()
    x, h0 = torch.randn(6, 2, 3), torch.randn(2, 3)
    w = torch.randn(3, 3, requires_grad=True)

    def loss(x, h0, w):
        h, ys = _tanh_scan(scan, x, h0, w)
        return h.sum() + ys.sum()  # autograd hands both one expanded gradient

    (grad,) = torch.autograd.grad(torch.compile(loss, fullgraph=True)(x, h0, w), [w])
    (expected,) = torch.autograd.grad(loss(x, h0, w), [w])
    torch.testing.assert_close(grad, expected)


@tf_only
@pytest.mark.xfail(
    strict=True,
    reason="TensorFlow: tf.recompute_grad inside a tf.while_loop fails on the variables its function "
    "reads (rnnscan lays out remat segments in Python inside graphs instead)",
)
def test_tf_recompute_grad_inside_a_while_loop_with_variables():
    import tensorflow as tf

    w = tf.Variable(tf.random.normal((3, 3)) * 0.5)

    @tf.function
    def grads(x):
        segment = tf.recompute_grad(lambda h, x_t: tf.tanh(x_t + h @ w))

        with tf.GradientTape() as tape:
            _, h = tf.while_loop(lambda t, h: t < 5, lambda t, h: (t + 1, segment(h, x[t])), (0, tf.zeros((2, 3))))
            loss = tf.reduce_sum(h)
        return tape.gradient(loss, w)

    assert grads(tf.random.normal((5, 2, 3))) is not None
