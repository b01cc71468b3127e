"""Every private framework API rnnscan uses, each with why, the versions it is for,
and the upstream issue where there is one. Each function imports its framework
when called: the framework is imported already by then.

tests/test_compat.py holds a test per workaround that fails once upstream makes it
unneeded (a strict xfail where the workaround covers an upstream bug).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

# -- torch -----------------------------------------------------------------------


def torch_registered_node(x: Any) -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    """``(flatten, unflatten)`` for optree where ``type(x)`` is registered with torch's own
    pytree registry; None otherwise. torch has no public lookup of its registry
    (torch 2.3 - 2.13: ``torch.utils._pytree.SUPPORTED_NODES``)."""
    from torch.utils import _pytree

    node = _pytree.SUPPORTED_NODES.get(type(x))
    if node is None:
        return None
    return node.flatten_fn, lambda context, children: node.unflatten_fn(list(children), context)


def torch_values_are_hidden(x: Any) -> bool:
    """True where ``x``'s values cannot be read on the host: a functorch-wrapped tensor
    (``vmap``, ``grad``), a fake or meta tensor. No public predicate says so."""
    import torch

    if x.device.type == "meta":
        return True
    if torch._C._functorch.is_functorch_wrapped_tensor(x):
        return True
    from torch._subclasses.fake_tensor import is_fake

    return bool(is_fake(x))


def torch_in_functorch_transform() -> bool:
    """True inside a ``torch.func`` transform (``grad``, ``vjp``, ``jacrev``, ``vmap``, ...), where
    ``torch.utils.checkpoint`` fails ("torch.func.{grad, vjp, jacrev, hessian} don't yet support
    saved tensor hooks", torch 2.13), and so does an ``autograd.Function`` without
    ``setup_context``. No public predicate says whether a transform is active."""
    import torch

    return torch._C._functorch.peek_interpreter_stack() is not None


def torch_prepare_scan_compilation() -> None:
    """What torch 2.13 needs to compile the scan higher-order op right; called while Dynamo traces.

    * Inductor lowers the op to a ``while_loop`` indexed by a captured ``.item()``,
      which fails (DataDependentOutputException) unless the graph being traced
      allows scalar outputs, as ``fullgraph=True`` graphs do: allowed here for
      this graph alone, through the tracing context's private ``ShapeEnv``.
    * Inductor computes wrong gradients for two scan ops chained in one graph when
      it donates the backward's saved buffers (pytorch/pytorch#153679, fixed
      upstream by #193960): donation is turned off. This is a process-wide
      setting, ``torch._functorch.config.donated_buffer``, which torch offers no
      way to scope to one graph: once a compiled rnn() has been traced, every
      compiled backward pass in the process keeps its saved buffers until it ends
      rather than reusing them for its gradients (more peak memory, same results).
    """
    import torch
    import torch._functorch.config

    torch._functorch.config.donated_buffer = False
    context = torch._guards.TracingContext.try_get()
    shape_env = context.fake_mode.shape_env if context is not None and context.fake_mode is not None else None
    if shape_env is not None and not shape_env.allow_scalar_outputs:
        shape_env.settings = dataclasses.replace(shape_env.settings, allow_scalar_outputs=True)


# -- tensorflow ------------------------------------------------------------------


def tf_building_for_xla() -> bool:
    """True while a graph is traced for XLA (``jit_compile=True``), as tf-keras tells it
    (``tensorflow.python.ops.control_flow_util``; no public API says so). True where
    it cannot be told: XLA then gets the bound it needs, at the cost of a condition."""
    import tensorflow as tf

    try:
        from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext
    except ImportError:  # pragma: no cover - a TensorFlow without it
        return True
    return bool(GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def tf_call_unconverted(function: Any) -> Any:
    """Mark ``function`` for AutoGraph to call as is inside a ``tf.function``.

    AutoGraph would otherwise rewrite rnnscan's own Python, which needs no conversion
    (the TensorFlow backend builds its ``tf.while_loop`` itself). ``autograph_info__``
    is AutoGraph's private marker, read without importing TensorFlow, so that the
    core need not import it to set it.
    """
    function.autograph_info__ = frozenset()
    return function


def tf_function_not_inlined(function: Any) -> Any:
    """``function`` as one ``tf.function`` that graphs call rather than inline.

    A remat segment laid out in Python (a graph has one per segment) calls it, so the
    graph holds the segment's function once, not a copy per segment. TensorFlow inlines
    function calls when it first runs a graph, which would bring the copies back:
    ``_noinline``, an attribute ``tf.function`` accepts among its
    ``experimental_attributes`` (tensorflow.python.eager.polymorphic_function.attributes,
    TF 2.x), keeps the calls. Measured on the LSTM of `python -m rnnscan bench --suite long` at
    T=4,000 (63 segments): the first call 10 s and 231 MiB instead of 32 s and 1.08 GiB.
    """
    import tensorflow as tf

    return tf.function(function, autograph=False, experimental_attributes={"_noinline": True})
