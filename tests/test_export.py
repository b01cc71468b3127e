"""Every export path keeps one loop op, with dynamic lengths where the format allows, and gives
eager rnnscan's numbers in the runtime that serves it (docs/export.md).

Each path exports a masked recurrent step once and runs the exported program at two (batch, time)
sizes (TFLite: one fixed size), against ``rnnscan.rnn`` called eagerly on the same arrays.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

from frameworks import installed

D, U = 3, 4
SIZES = ((2, 5), (3, 9))
ATOL = 1e-5


def _weights(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=(D, U)).astype("float32"), (rng.normal(size=(U, U)) * 0.5).astype("float32")


def _data(rng: np.random.Generator, batch: int, time: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(batch, time, D)`` and lengths in ``[0, time]``, the longest ``time``."""
    lengths = rng.integers(0, time + 1, size=batch)
    lengths[0] = time
    return rng.normal(size=(batch, time, D)).astype("float32"), lengths


# -- JAX ------------------------------------------------------------------------------------------

jax_only = pytest.mark.skipif(not installed("jax"), reason="jax is not installed")


@jax_only
def test_jax_export_symbolic_batch_and_time(rng: np.random.Generator) -> None:
    """``jax.export`` with symbolic ``b, t``, array lengths, and Keras 3's ``input_length=timesteps``
    (a symbolic dimension: masks nothing), serialised and deserialised: one ``stablehlo.while``."""
    import jax
    import jax.numpy as jnp
    from jax import export

    import rnnscan

    w, u = (jnp.asarray(a) for a in _weights(rng))

    def step(x_t, states):
        h = jnp.tanh(x_t @ w + states[0] @ u)
        return h, [h]

    def model(x, lengths):
        h0 = jnp.zeros((x.shape[0], U))
        _, by_length, _ = rnnscan.rnn(step, x, [h0], input_length=lengths)
        _, whole, (h,) = rnnscan.rnn(step, x, [h0], input_length=x.shape[1])
        return by_length, whole, h

    b, t = export.symbolic_shape("b, t")
    exported = export.export(jax.jit(model))(
        jax.ShapeDtypeStruct((b, t, D), jnp.float32), jax.ShapeDtypeStruct((b,), jnp.int32)
    )
    assert exported.mlir_module().count("stablehlo.while") == 2  # one loop per rnn() call
    served = export.deserialize(exported.serialize())
    for batch, time in SIZES:
        x, lengths = _data(rng, batch, time)
        got = served.call(jnp.asarray(x), jnp.asarray(lengths, jnp.int32))
        h0 = jnp.zeros((batch, U))
        expected = (
            rnnscan.rnn(step, jnp.asarray(x), [h0], input_length=jnp.asarray(lengths))[1],
            *(lambda r: (r[1], r[2][0]))(rnnscan.rnn(step, jnp.asarray(x), [h0])),
        )
        for g, e in zip(got, expected):
            assert g.shape == e.shape
            np.testing.assert_allclose(np.asarray(g), np.asarray(e), atol=ATOL)


@jax_only
def test_jax_export_refuses_remat_with_a_symbolic_time(rng: np.random.Generator) -> None:
    import jax
    import jax.numpy as jnp
    from jax import export

    import rnnscan

    def step(x_t, states):
        h = jnp.tanh(x_t[:, :1] + states[0])
        return h, [h]

    b, t = export.symbolic_shape("b, t")
    with pytest.raises(ValueError) as error:
        export.export(jax.jit(lambda x: rnnscan.rnn(step, x, [jnp.zeros((x.shape[0], 1))], remat=True)[1]))(
            jax.ShapeDtypeStruct((b, t, D), jnp.float32)
        )
    assert str(error.value) == (
        "rnnscan.rnn: `remat` must be False when the number of time steps is symbolic (jax export: the count "
        "of recomputed segments could be 0, and a loop over a symbolic length must not be empty); export with "
        "a fixed time length to keep remat; got remat=True with a symbolic time dimension."
    )
    # with b symbolic and t fixed, remat exports
    exported = export.export(jax.jit(lambda x: rnnscan.rnn(step, x, [jnp.zeros((x.shape[0], 1))], remat=True)[1]))(
        jax.ShapeDtypeStruct((b, 9, D), jnp.float32)
    )
    x = jnp.asarray(rng.normal(size=(2, 9, D)).astype("float32"))
    np.testing.assert_allclose(
        np.asarray(exported.call(x)), np.asarray(rnnscan.rnn(step, x, [jnp.zeros((2, 1))])[1]), atol=ATOL
    )


# -- PyTorch --------------------------------------------------------------------------------------

torch_only = pytest.mark.skipif(not installed("torch"), reason="torch is not installed")


def _torch_model(rng: np.random.Generator, nested: bool = False):  # noqa: ANN202 - a torch.nn.Module
    import torch

    import rnnscan

    w, u = (torch.as_tensor(a) for a in _weights(rng))

    class Model(torch.nn.Module):
        """A masked loop by lengths; with ``nested``, its state a dict holding a tuple."""

        def __init__(self) -> None:
            super().__init__()
            self.w, self.u = torch.nn.Parameter(w), torch.nn.Parameter(u)

        def step(self, x_t, states):
            h = states[0]["h"][0] if nested else states[0]
            h = torch.tanh(x_t @ self.w + h @ self.u)
            return h, [{"h": (h,)} if nested else h]

        def forward(self, x, lengths):
            h0 = torch.zeros(x.shape[0], U)
            _, outputs, (h,) = rnnscan.rnn(self.step, x, [{"h": (h0,)} if nested else h0], input_length=lengths)
            return outputs, h["h"][0] if nested else h

    return Model()


def _torch_data(rng: np.random.Generator, batch: int, time: int):  # noqa: ANN202
    import torch

    x, lengths = _data(rng, batch, time)
    return torch.as_tensor(x), torch.as_tensor(lengths)


def _scan_ops(graph_module) -> int:  # noqa: ANN001
    import torch

    return sum(node.target is torch.ops.higher_order.scan for node in graph_module.graph.nodes)


@torch_only
@pytest.mark.parametrize("strict", [False, True], ids=["non-strict", "strict"])
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_torch_export_dynamic_batch_and_time(strict: bool, nested: bool, rng: np.random.Generator) -> None:
    """Non-strict export is torch 2.13's default and Keras's ``format="torch"``; on main it failed
    (Dynamo cannot call an optree spec's methods in the scan body). One scan op."""
    import torch

    model = _torch_model(rng, nested)
    batch, time = torch.export.Dim("batch", min=2), torch.export.Dim("time", min=2)
    program = torch.export.export(
        model, _torch_data(rng, 2, 4), dynamic_shapes=({0: batch, 1: time}, {0: batch}), strict=strict
    )
    assert _scan_ops(program.graph_module) == 1
    for size in SIZES:
        args = _torch_data(rng, *size)
        for got, expected in zip(program.module()(*args), model(*args)):
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


@torch_only
def test_torch_export_keras_input_length_timesteps(rng: np.random.Generator) -> None:
    """Keras 3 passes ``input_length=timesteps``: under non-strict export a ``torch.SymInt``."""
    import torch

    import rnnscan

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.as_tensor(_weights(rng)[0]))

        def step(self, x_t, states):
            h = torch.tanh(x_t @ self.w + states[0])
            return h, [h]

        def forward(self, x):
            return rnnscan.rnn(self.step, x, [torch.zeros(x.shape[0], U)], input_length=x.shape[1])[1]

    model = Model()
    program = torch.export.export(
        model, (torch.randn(2, 4, D),), dynamic_shapes=({1: torch.export.Dim("time", min=2)},), strict=False
    )
    assert _scan_ops(program.graph_module) == 1
    x = torch.as_tensor(_data(rng, 2, 7)[0])
    torch.testing.assert_close(program.module()(x), model(x), atol=ATOL, rtol=0)


@torch_only
def test_torch_jit_trace_zero_d_input_length(rng: np.random.Generator) -> None:
    """``torch.jit.trace`` hands a shape to the model as a 0-d tensor: one length for every sample."""
    import torch

    import rnnscan

    w = torch.as_tensor(_weights(rng)[0])

    def step(x_t, states):
        h = torch.tanh(x_t @ w + states[0])
        return h, [h]

    def model(x, length):
        return rnnscan.rnn(step, x, [torch.zeros(x.shape[0], U)], input_length=length)[1]

    x = torch.as_tensor(_data(rng, 3, 6)[0])
    traced = torch.jit.trace(model, (x, torch.tensor(6)))
    torch.testing.assert_close(traced(x, torch.tensor(6)), rnnscan.rnn(step, x, [torch.zeros(3, U)])[1])


@torch_only
def test_torch_onnx_export_dynamic_batch_in_onnxruntime(rng: np.random.Generator) -> None:
    """``torch.onnx.export(dynamo=True)``: on main the batch was baked in (onnxruntime refused another)."""
    import onnxruntime
    import torch

    model = _torch_model(rng)
    batch, time = torch.export.Dim("batch", min=2), torch.export.Dim("time", min=2)
    program = torch.onnx.export(
        model, _torch_data(rng, 2, 4), dynamo=True, dynamic_shapes=({0: batch, 1: time}, {0: batch}), verbose=False
    )
    ops = collections.Counter(node.op_type for node in program.model_proto.graph.node)
    assert ops["Scan"] == 1 and ops["Loop"] == 0
    session = onnxruntime.InferenceSession(program.model_proto.SerializeToString())
    names = [i.name for i in session.get_inputs()]
    for size in SIZES:
        args = _torch_data(rng, *size)
        got = session.run(None, dict(zip(names, [a.numpy() for a in args])))
        for g, e in zip(got, model(*args)):
            np.testing.assert_allclose(g, e.detach().numpy(), atol=ATOL)


@torch_only
def test_torch_compile_dynamic_batch_compiles_once(rng: np.random.Generator) -> None:
    """An array ``input_length`` pinned the batch (its error message was formatted unraised)."""
    import torch
    from torch._dynamo.testing import CompileCounter

    model, counter = _torch_model(rng), CompileCounter()
    compiled = torch.compile(model, dynamic=True, backend=counter)
    for batch in (2, 3, 4, 5):
        args = _torch_data(rng, batch, 6)
        for got, expected in zip(compiled(*args), model(*args)):
            torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    assert counter.frame_count == 1


# -- TensorFlow -----------------------------------------------------------------------------------

tf_only = pytest.mark.skipif(not installed("tensorflow"), reason="tensorflow is not installed")


def _tf_masked(rng: np.random.Generator, signature: list, zeros: bool):  # noqa: ANN202 - a tf.Module
    """A masked loop: a module whose ``serve`` is a ``tf.function`` ``(x, mask) -> (outputs, h)``; ``zeros``:
    ``zero_output_for_mask``, where the loop runs only the span of steps that keep a sample."""
    import tensorflow as tf

    import rnnscan

    class Model(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w, self.u = (tf.Variable(a) for a in _weights(rng))

        def step(self, x_t, states):
            h = tf.tanh(x_t @ self.w + states[0] @ self.u)
            return h, [h]

        @tf.function(input_signature=signature)
        def serve(self, x, mask):
            h0 = tf.zeros(tf.stack([tf.shape(x)[0], U]))
            _, outputs, (h,) = rnnscan.rnn(self.step, x, [h0], mask=mask, zero_output_for_mask=zeros)
            return outputs, h

    return Model()


def _tf_mask(rng: np.random.Generator, batch: int, time: int, keep_first: bool, keep_last: bool) -> np.ndarray:
    """A random mask whose first and last steps keep a sample or none (the span optimisation's cases:
    nothing before or after the span, or padding on either side)."""
    mask = rng.random((batch, time)) > 0.4
    mask[:, 0], mask[:, -1] = keep_first, keep_last
    return mask


ENDS = ((True, False), (False, True))  # (keep_first, keep_last) at each of SIZES


@tf_only
@pytest.mark.parametrize("zeros", [False, True], ids=["every-step", "span"])
def test_tf_saved_model_unknown_batch_and_time(rng: np.random.Generator, zeros: bool, tmp_path) -> None:  # noqa: ANN001
    import tensorflow as tf

    spec = [tf.TensorSpec([None, None, D], tf.float32), tf.TensorSpec([None, None], tf.bool)]
    model = _tf_masked(rng, spec, zeros)
    tf.saved_model.save(model, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))  # (kept: its variables live as long as it does)
    graph = model.serve.get_concrete_function().graph.as_graph_def()
    loops = [n for f in graph.library.function for n in f.node_def if n.op in ("While", "StatelessWhile")]
    loops += [n for n in graph.node if n.op in ("While", "StatelessWhile")]
    assert len(loops) == 1
    for (batch, time), ends in zip(SIZES, ENDS):
        x, mask = rng.normal(size=(batch, time, D)).astype("float32"), _tf_mask(rng, batch, time, *ends)
        for got, expected in zip(loaded.serve(x, mask), model.serve(x, mask)):
            np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=ATOL)


@tf_only
@pytest.mark.parametrize("zeros", [False, True], ids=["every-step", "span"])
def test_tflite_builtins_fixed_length(rng: np.random.Generator, zeros: bool) -> None:
    """Builtin ops only (no TF Select ops): on main the span's Repeat and EnsureShape needed them."""
    import tensorflow as tf

    batch, time = SIZES[1]
    model = _tf_masked(rng, [tf.TensorSpec([batch, time, D]), tf.TensorSpec([batch, time], tf.bool)], zeros)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([model.serve.get_concrete_function()], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    ops = collections.Counter(op["op_name"] for op in interpreter._get_ops_details())
    assert ops["WHILE"] == 1 and not any(name.startswith("Flex") for name in ops)
    x, mask = rng.normal(size=(batch, time, D)).astype("float32"), _tf_mask(rng, batch, time, False, False)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], mask if "mask" in detail["name"] else x)
    interpreter.invoke()
    got = sorted((interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()), key=np.ndim)
    for g, e in zip(got[::-1], model.serve(x, mask)):  # (outputs, h): by rank
        assert g.shape == tuple(e.shape)
        np.testing.assert_allclose(g, e.numpy(), atol=ATOL)


@tf_only
@pytest.mark.parametrize("zeros", [False, True], ids=["every-step", "span"])
def test_tf2onnx_in_onnxruntime(rng: np.random.Generator, zeros: bool) -> None:
    """What Keras 3's TensorFlow-backend ONNX export runs; on main onnxruntime failed in
    ``Reshape node 'Repeat/Reshape_1'``. One ``Loop`` op."""
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec([None, None, D], tf.float32, name="x"), tf.TensorSpec([None, None], tf.bool, name="m")]
    model = _tf_masked(rng, spec, zeros)
    proto, _ = tf2onnx.convert.from_function(model.serve, input_signature=spec, opset=17)
    assert collections.Counter(node.op_type for node in proto.graph.node)["Loop"] == 1
    session = onnxruntime.InferenceSession(proto.SerializeToString())
    for (batch, time), ends in zip(SIZES, ENDS):
        x, mask = rng.normal(size=(batch, time, D)).astype("float32"), _tf_mask(rng, batch, time, *ends)
        for got, expected in zip(session.run(None, {"x": x, "m": mask}), model.serve(x, mask)):
            np.testing.assert_allclose(got, expected.numpy(), atol=ATOL)
