"""`remat` and `unroll=k`: the same results and gradients as the plain loop, for every
combination of the loop's options, on every backend, eager and compiled.

The plain loop (`remat=False`, `unroll=False`) is the reference: it is the loop the
differential suite checks against tf-keras.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest

import rnnscan

from frameworks import Framework, framework, gradient, installed

TIME, BATCH, FEATURES, UNITS = 11, 3, 2, 4  # 11: no block size below divides it


@dataclass(frozen=True)
class Options:
    cell: str  # "aliased": return h, [h]; "general": an output of its own; "lstm": nested (h, c), output h
    mask: str  # "none", "mask", "input_length"
    go_backwards: bool
    zero_output_for_mask: bool
    return_all_outputs: bool
    time_major: bool
    constants: bool

    @property
    def id(self) -> str:
        flags = [self.cell, self.mask, "back" if self.go_backwards else "fwd"]
        flags += [n for n in ("zero_output_for_mask", "time_major", "constants") if getattr(self, n)]
        return "-".join(flags + ([] if self.return_all_outputs else ["last"]))


def _options() -> list[Options]:
    """Every cell x mask kind x direction, the other flags rotating (each meets every row both ways)."""
    rows = []
    for i, (cell, mask, back) in enumerate(
        itertools.product(("aliased", "general", "lstm"), ("none", "mask", "input_length"), (False, True))
    ):
        rows.append(Options(cell, mask, back, i % 2 == 0, i % 3 != 0, i % 4 == 1, i % 5 < 3))
    return rows


OPTIONS = _options()


def _step(fw: Framework, weights: dict, cell: str):
    def step(x_t, states):
        h = states[0][0] if cell == "lstm" else states[0]
        bias = states[-1] if len(states) > 1 else 0.0
        pre = x_t @ weights["w"] + h @ weights["u"] + bias
        if cell == "lstm":
            c = states[0][1] * fw.sigmoid(pre) + fw.tanh(pre)
            h = fw.tanh(c)
            return h, [(h, c)]
        h = fw.tanh(pre)
        return (h, [h]) if cell == "aliased" else (h * 2.0 - 0.5, [h])

    return step


def _problem(rng: np.random.Generator, options: Options) -> dict:
    shape = (TIME, BATCH, FEATURES) if options.time_major else (BATCH, TIME, FEATURES)
    data = {
        "x": rng.standard_normal(shape),
        "h": rng.standard_normal((BATCH, UNITS)),
        "c": rng.standard_normal((BATCH, UNITS)),
        "bias": rng.standard_normal((UNITS,)) * 0.3,
        "w": rng.standard_normal((FEATURES, UNITS)) * 0.5,
        "u": rng.standard_normal((UNITS, UNITS)) * 0.5,
    }
    mask = rng.random((BATCH, TIME)) > 0.35
    mask[0, 0] = False  # a masked first step
    if options.time_major:
        mask = mask.T
    data["mask"] = mask
    data["lengths"] = np.array([TIME, 4, 0])[:BATCH]
    return data


def _call(fw: Framework, options: Options, data: dict, x, h, c, w, u, bias, **loop):
    states = [(h, c)] if options.cell == "lstm" else [h]
    kwargs = dict(
        go_backwards=options.go_backwards,
        zero_output_for_mask=options.zero_output_for_mask,
        return_all_outputs=options.return_all_outputs,
        time_major=options.time_major,
        constants=[bias] if options.constants else None,
    )
    if options.mask == "mask":
        kwargs["mask"] = fw.asarray(data["mask"])
    elif options.mask == "input_length":
        kwargs["input_length"] = fw.asarray(data["lengths"])
    return rnnscan.rnn(_step(fw, {"w": w, "u": u}, options.cell), x, states, **kwargs, **loop)


def _arrays(fw: Framework, data: dict, dtype=np.float32) -> list:
    return [fw.asarray(data[k].astype(dtype)) for k in ("x", "h", "c", "w", "u", "bias")]


def _loss(fw: Framework, options: Options, data: dict, loop: dict):
    def loss(*arrays):
        last, outputs, states = _call(fw, options, data, *arrays, **loop)
        # c and bias reach the loss through the loop only for some options; 0 * ... gives
        # them a zero gradient (not None) otherwise
        total = fw.sum(outputs * outputs) + fw.sum(last) + 0.0 * (fw.sum(arrays[2]) + fw.sum(arrays[5]))
        import optree

        for leaf in optree.tree_leaves(states):
            total = total + fw.sum(leaf * 0.5)
        return total

    return loss


LOOPS = [
    pytest.param({"remat": True}, id="remat_sqrt"),
    pytest.param({"remat": 3}, id="remat_3"),
    pytest.param({"remat": 4, "unroll": 2}, id="remat_4_unroll_2"),
    pytest.param({"unroll": 3}, id="unroll_3"),
    pytest.param({"unroll": 16}, id="unroll_16"),
]


# Each row of options meets two loop layouts, each layout every cell, mask kind and direction.
RESULT_CASES = [
    pytest.param(o, LOOPS[j].values[0], id=f"{o.id}-{LOOPS[j].id}")
    for i, o in enumerate(OPTIONS)
    for j in (i % len(LOOPS), (i + 2) % len(LOOPS))
]
GRADIENT_CASES = [
    pytest.param(o, LOOPS[i % 4].values[0], id=f"{o.id}-{LOOPS[i % 4].id}") for i, o in enumerate(OPTIONS[::2])
]


@pytest.mark.parametrize("options, loop", RESULT_CASES)
def test_results_equal_the_plain_loop(backend, rng, options, loop):
    data = _problem(rng, options)
    expected = backend.tree_numpy(_call(backend, options, data, *_arrays(backend, data)))
    got = backend.tree_numpy(_call(backend, options, data, *_arrays(backend, data), **loop))
    _assert_trees_equal(got, expected, rtol=1e-5)


@pytest.mark.parametrize("options, loop", GRADIENT_CASES)
def test_gradients_equal_the_plain_loop(diff_backend, rng, options, loop):
    fw = diff_backend
    data = _problem(rng, options)
    params = [data[k].astype(np.float32) for k in ("x", "h", "c", "w", "u", "bias")]
    expected = gradient(fw, _loss(fw, options, data, {}), params)
    got = gradient(fw, _loss(fw, options, data, loop), params)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def _assert_trees_equal(got, expected, rtol):
    import optree

    g_leaves, g_spec = optree.tree_flatten(got)
    e_leaves, e_spec = optree.tree_flatten(expected)
    assert g_spec == e_spec
    for g, e in zip(g_leaves, e_leaves):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=rtol, atol=1e-6)


# -- compiled -------------------------------------------------------------------------

COMPILED_OPTIONS = OPTIONS[1::3]


@pytest.mark.skipif(not installed("jax"), reason="jax is not installed")
@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("options", COMPILED_OPTIONS, ids=[o.id for o in COMPILED_OPTIONS])
def test_jax_jit_and_grad(rng, options, loop):
    import jax

    fw = framework("jax")
    data = _problem(rng, options)
    arrays = _arrays(fw, data)
    loss = _loss(fw, options, data, loop)
    plain = _loss(fw, options, data, {})
    value, grads = jax.jit(jax.value_and_grad(loss, argnums=tuple(range(6))))(*arrays)
    e_value, e_grads = jax.value_and_grad(plain, argnums=tuple(range(6)))(*arrays)
    np.testing.assert_allclose(value, e_value, rtol=1e-5)
    for g, e in zip(grads, e_grads):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not installed("tensorflow"), reason="tensorflow is not installed")
@pytest.mark.parametrize("shapes", ["static", "unknown_time"])
@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("options", COMPILED_OPTIONS, ids=[o.id for o in COMPILED_OPTIONS])
def test_tf_function_with_gradient_tape(rng, options, loop, shapes):
    import tensorflow as tf

    fw = framework("tensorflow")
    data = _problem(rng, options)
    arrays = _arrays(fw, data)
    if shapes == "unknown_time":  # the inputs' time axis is unknown while the graph is built
        spec = tf.TensorSpec([None, BATCH, FEATURES] if options.time_major else [BATCH, None, FEATURES])
    else:
        spec = tf.TensorSpec(arrays[0].shape)

    # the weights as variables, as TensorFlow code holds them: tf.recompute_grad differentiates
    # a segment by its arguments and the variables it reads (a captured tensor gets no gradient)
    w, u = tf.Variable(arrays[3]), tf.Variable(arrays[4])

    def value_and_grads(loop, x, h, c, bias):
        with tf.GradientTape() as tape:
            tape.watch([x, h, c, bias])
            value = _loss(fw, options, data, loop)(x, h, c, w, u, bias)
        return value, tape.gradient(value, [x, h, c, bias, w, u])

    @tf.function(input_signature=[spec] + [tf.TensorSpec(arrays[i].shape) for i in (1, 2, 5)])
    def compiled(x, h, c, bias):
        return value_and_grads(loop, x, h, c, bias)

    tensors = [arrays[i] for i in (0, 1, 2, 5)]
    if shapes == "unknown_time" and "remat" in loop:
        # TensorFlow's segments are laid out while the graph is built (tf.recompute_grad
        # fails inside a tf.while_loop): refused before the loop is built
        with pytest.raises(ValueError, match=r"`remat` must be False when the number of time steps is unknown"):
            compiled(*tensors)
        return
    value, grads = compiled(*tensors)
    e_value, e_grads = value_and_grads({}, *tensors)
    np.testing.assert_allclose(value.numpy(), e_value.numpy(), rtol=1e-5)
    for g, e in zip(grads, e_grads):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
@pytest.mark.parametrize("loop", [LOOPS[1], LOOPS[3]])
@pytest.mark.parametrize("options", COMPILED_OPTIONS[:2], ids=[o.id for o in COMPILED_OPTIONS[:2]])
def test_torch_compile_fullgraph(rng, options, loop):
    import torch

    torch._dynamo.reset()
    fw = framework("torch")
    data = _problem(rng, options)
    loss = _loss(fw, options, data, loop)
    arrays = [a.requires_grad_() for a in _arrays(fw, data)]
    value = torch.compile(loss, fullgraph=True)(*arrays)
    grads = torch.autograd.grad(value, arrays)
    e_value = _loss(fw, options, data, {})(*arrays)
    e_grads = torch.autograd.grad(e_value, arrays)
    np.testing.assert_allclose(value.detach().numpy(), e_value.detach().numpy(), rtol=1e-5)
    for g, e in zip(grads, e_grads):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
@pytest.mark.parametrize("options", COMPILED_OPTIONS[:2], ids=[o.id for o in COMPILED_OPTIONS[:2]])
def test_torch_func_grad_and_vmap_with_remat(rng, options):
    """torch.func refuses torch.utils.checkpoint's hooks and old-style autograd.Functions: under
    its transforms remat keeps the residuals, with the eager gradients (float64, also batched by vmap)."""
    import torch
    from torch.func import grad, vmap

    fw = framework("torch")
    data = _problem(rng, options)
    arrays = _arrays(fw, data, np.float64)
    loss = _loss(fw, options, data, {"remat": 3})
    expected = torch.autograd.grad(_loss(fw, options, data, {})(*[a.requires_grad_() for a in arrays]), arrays)
    arrays = [a.detach() for a in arrays]
    got = grad(loss, argnums=tuple(range(len(arrays))))(*arrays)
    batched = vmap(grad(loss, argnums=3), in_dims=(None, None, None, 0, None, None))(
        *arrays[:3], torch.stack([arrays[3], arrays[3]]), *arrays[4:]
    )
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-10, atol=1e-12)
    for b in batched:
        np.testing.assert_allclose(b.numpy(), expected[3].numpy(), rtol=1e-10, atol=1e-12)


# -- random steps ---------------------------------------------------------------------


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
def test_torch_dropout_draws_the_same_in_the_recomputation(rng):
    """A step with dropout: remat recomputes each segment with the RNG state it first ran
    with, so the gradient is the one of the loop that kept its residuals."""
    import torch

    x = torch.as_tensor(rng.standard_normal((BATCH, TIME, UNITS)).astype(np.float32))
    w = torch.as_tensor(rng.standard_normal((UNITS, UNITS)).astype(np.float32) * 0.5).requires_grad_()

    def step(x_t, states):
        h = torch.tanh(torch.nn.functional.dropout(x_t + states[0] @ w, p=0.5, training=True))
        return h, [h]

    grads = []
    for remat in (False, 3):
        torch.manual_seed(7)
        _, outputs, _ = rnnscan.rnn(step, x, [torch.zeros(BATCH, UNITS)], remat=remat)
        grads.append(torch.autograd.grad(outputs.square().sum(), w)[0])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not installed("jax"), reason="jax is not installed")
def test_jax_dropout_with_explicit_keys(rng):
    """JAX keys are explicit: a per-step key passed as an input draws the same in the
    recomputation, so remat changes nothing."""
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(rng.standard_normal((BATCH, TIME, UNITS)).astype(np.float32))
    keys = jax.random.split(jax.random.key(3), BATCH * TIME).reshape(BATCH, TIME)
    key_data = jax.random.key_data(keys)

    def loss(w, remat):
        def step(inputs, states):
            x_t, k = inputs
            keep = jax.random.bernoulli(jax.random.wrap_key_data(k[0]), 0.5, x_t.shape)
            h = jnp.tanh(jnp.where(keep, x_t + states[0] @ w, 0.0) * 2.0)
            return h, [h]

        _, outputs, _ = rnnscan.rnn(step, (x, key_data), [jnp.zeros((BATCH, UNITS))], remat=remat)
        return jnp.sum(outputs**2)

    w = jnp.asarray(rng.standard_normal((UNITS, UNITS)).astype(np.float32) * 0.5)
    np.testing.assert_allclose(jax.grad(loss)(w, 3), jax.grad(loss)(w, False), rtol=1e-5, atol=1e-6)


# -- memory ---------------------------------------------------------------------------


@pytest.mark.skipif(not installed("jax"), reason="jax is not installed")
def test_jax_remat_keeps_fewer_residuals():
    """XLA's own account of the compiled gradient's temporaries (no timing): with remat they
    grow as O(sqrt(T)), without it as O(T). `python -m rnnscan bench --suite long` measures the rest."""
    import jax
    import jax.numpy as jnp

    time, batch, units = 2000, 8, 64
    x = jnp.ones((batch, time, units)) * 0.1
    w = jnp.eye(units) * 0.5

    def temporaries(remat):
        def loss(w):
            def step(x_t, states):
                h = jnp.tanh(x_t + states[0] @ w)
                return h, [h]

            last, _, _ = rnnscan.rnn(step, x, [jnp.zeros((batch, units))], return_all_outputs=False, remat=remat)
            return jnp.sum(last)

        return jax.jit(jax.grad(loss)).lower(w).compile().memory_analysis().temp_size_in_bytes

    plain, remat = temporaries(False), temporaries(True)
    assert remat * 8 < plain, (remat, plain)


@pytest.mark.skipif(not installed("tensorflow"), reason="tensorflow is not installed")
def test_tf_graph_holds_one_segment_function_however_many_segments(rng):
    """Remat segments laid out in a graph call one function, kept as a call (not inlined):
    the graph's function library does not grow with the number of segments."""
    import tensorflow as tf

    batch, units = 3, 4
    w = tf.Variable(rng.standard_normal((units, units)).astype(np.float32))

    def step(x_t, states):
        h = tf.tanh(x_t + states[0] @ w)
        return h, [h]

    def graph(time):
        @tf.function
        def train(x):
            with tf.GradientTape() as tape:
                last, _, _ = rnnscan.rnn(step, x, [tf.zeros((batch, units))], return_all_outputs=False, remat=5)
            return tape.gradient(last, w)

        return train.get_concrete_function(tf.TensorSpec((batch, time, units))).graph.as_graph_def()

    few, many = graph(20), graph(80)
    assert len(many.library.function) == len(few.library.function)
    calls = [n for n in many.node if n.op in ("PartitionedCall", "StatefulPartitionedCall")]
    assert len(calls) >= 80 // 5
    assert all(f.attr["_noinline"].b for f in many.library.function if "segment" in f.signature.name)


# -- the torch segment: a fast path beside torch.utils.checkpoint ------------------------


def _torch_lstm(rng, time_steps, dtype=np.float64):
    """An LSTM-like step closing over leaf weights, its inputs, a mask: ``(step, x, states, mask, weights)``."""
    import torch

    def tensor(*shape, scale=0.5):
        return torch.tensor(rng.standard_normal(shape) * scale, dtype=getattr(torch, np.dtype(dtype).name))

    w, u = tensor(FEATURES, 2 * UNITS).requires_grad_(), tensor(UNITS, 2 * UNITS).requires_grad_()
    x, h, c = tensor(BATCH, time_steps, FEATURES).requires_grad_(), tensor(BATCH, UNITS), tensor(BATCH, UNITS)

    def step(x_t, states):
        z = x_t @ w + states[0] @ u
        c = torch.sigmoid(z[:, :UNITS]) * states[1] + torch.tanh(z[:, UNITS:])
        h = torch.tanh(c)
        return h, [h, c]

    mask = torch.as_tensor(rng.random((BATCH, time_steps)) > 0.3)
    return step, x, [h, c], mask, [w, u, x]


def _torch_grads(step, x, states, mask, wrt, **loop):
    import torch

    last, outputs, new_states = rnnscan.rnn(step, x, states, mask=mask, go_backwards=True, **loop)
    loss = outputs.square().sum() + last.sum() + new_states[1].sum()
    return [loss.detach(), *torch.autograd.grad(loss, wrt)]


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
def test_torch_remat_fast_path_equals_the_reference_checkpoint(rng, monkeypatch):
    """Eagerly, remat's segments after the first are one autograd.Function each, forward
    without autograd (``_torch_segment``): the same loss and gradients as
    torch.utils.checkpoint (the reference) and as keeping the residuals."""
    import torch

    from rnnscan.backends import _torch_segment

    step, x, states, mask, wrt = _torch_lstm(rng, time_steps=13)
    plain = _torch_grads(step, x, states, mask, wrt)
    applied = []
    apply = _torch_segment._Recomputed.apply
    monkeypatch.setattr(_torch_segment._Recomputed, "apply", lambda *a: applied.append(1) or apply(*a))
    fast = _torch_grads(step, x, states, mask, wrt, remat=3)
    assert len(applied) == 4  # segments 2-4 and the last step; the first runs with autograd
    monkeypatch.setattr(_torch_segment.Segment, "__call__", _torch_segment.Segment.reference)
    reference = _torch_grads(step, x, states, mask, wrt, remat=3)
    assert len(applied) == 4
    for f, r, p in zip(fast, reference, plain):
        torch.testing.assert_close(f, r, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(f, p, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
def test_torch_remat_keeps_a_carry_per_segment(rng):
    """What autograd keeps grows as T/k segments' carries plus one segment's residuals, not as
    T steps' residuals: the bytes of the distinct storages saved for the backward pass."""
    import torch

    def saved(time_steps, remat):
        step, x, states, mask, weights = _torch_lstm(rng, time_steps)
        storages = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            rnnscan.rnn(step, x, states, mask=mask, remat=remat)
        # the loop's inputs: x, the weights, the mask (bool, shaped for each leaf rank, time-major)
        inputs = sum(w.nbytes for w in weights[:2]) + x.nbytes + 2 * mask.numel()
        return sum(storages.values()) - inputs

    per_step = (saved(256, False) - saved(64, False)) / 192
    carry = 2 * BATCH * UNITS * 8
    for time_steps, k in ((64, 8), (256, 16)):
        kept = saved(time_steps, k)
        assert kept <= (k + 1) * per_step + (time_steps // k + 1) * carry
        assert kept < time_steps * per_step / 3


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
def test_torch_remat_weight_computed_before_the_loop(rng, monkeypatch):
    """A closed-over tensor computed before the loop (not a leaf) gets its own gradient:
    remat keeps to torch.utils.checkpoint for that loop, as the Function could only reach its leaves."""
    import torch

    from rnnscan.backends import _torch_segment

    step, x, states, mask, (w, u, _) = _torch_lstm(rng, time_steps=10)
    scale = torch.tensor(1.5, dtype=w.dtype, requires_grad=True)

    def grads(**loop):
        scaled = u * scale

        def scaled_step(x_t, states):
            z = x_t @ w + states[0] @ scaled
            h = torch.tanh(z[:, :UNITS] + z[:, UNITS:]) * states[1]
            return h, [h, states[1]]

        return _torch_grads(scaled_step, x, states, mask, [scaled, scale, w], **loop)

    references = []
    reference = _torch_segment.Segment.reference
    monkeypatch.setattr(_torch_segment.Segment, "reference", lambda *a: references.append(1) or reference(*a))
    got = grads(remat=3)
    assert len(references) == 3  # every segment but the first, which found the tensor
    for g, e in zip(got, grads()):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
def test_torch_remat_refuses_a_step_that_changes_the_tensors_it_differentiates(rng):
    """A step that reaches a weight in a later segment that the first did not use would lose
    that weight's gradient: the backward pass refuses it, naming remat."""
    import torch

    step, x, states, mask, (w, u, _) = _torch_lstm(rng, time_steps=9)
    other = torch.randn_like(u, requires_grad=True)
    calls = []

    def switching_step(x_t, states):
        calls.append(1)
        z = x_t @ w + states[0] @ (u if len(calls) <= 4 else other)  # first call, first segment: u
        h = torch.tanh(z[:, :UNITS])
        return h, [h, states[1]]

    last, _, _ = rnnscan.rnn(switching_step, x, states, remat=3)
    with pytest.raises(RuntimeError, match=r"with `remat`, `step_function` must use the same tensors .*remat=False"):
        torch.autograd.grad(last.sum(), [w, other])


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
def test_torch_remat_double_backward(rng):
    """A gradient of a gradient (create_graph) through remat: the recomputation keeps its graph."""
    import torch

    step, x, states, mask, (w, u, _) = _torch_lstm(rng, time_steps=8)

    def second_order(**loop):
        last, outputs, _ = rnnscan.rnn(step, x, states, mask=mask, **loop)
        (g,) = torch.autograd.grad(outputs.square().sum() + last.sum(), [w], create_graph=True)
        return torch.autograd.grad(g.square().sum(), [w, u])

    for g, e in zip(second_order(remat=3), second_order()):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
def test_torch_remat_recomputes_under_the_forward_autocast(rng):
    """The recomputation runs under the autocast state of the forward pass (bfloat16 on the
    CPU here), though the backward pass runs outside it: the gradients of keeping the residuals."""
    import torch

    step, x, states, mask, wrt = _torch_lstm(rng, time_steps=7, dtype=np.float32)
    grads = []
    for remat in (False, 2):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            last, outputs, _ = rnnscan.rnn(step, x, states, mask=mask, remat=remat)
        grads.append(torch.autograd.grad(outputs.float().square().sum() + last.float().sum(), wrt))
    assert grads[1][0].dtype == torch.float32
    for g, e in zip(*grads):
        torch.testing.assert_close(g, e, rtol=0, atol=0)


# -- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"remat": "yes"}, TypeError, r"`remat` must be a bool or a positive int .*; got str 'yes'"),
        ({"remat": 2.0}, TypeError, r"`remat` must be a bool or a positive int .*; got float 2.0"),
        ({"remat": 0}, ValueError, r"`remat` must be a bool or a positive int .*; got int 0"),
        ({"remat": -3}, ValueError, r"`remat` must be a bool or a positive int .*; got int -3"),
        ({"unroll": 0}, ValueError, r"`unroll` must be a bool or a positive int .*; got int 0"),
        ({"unroll": 1.5}, TypeError, r"`unroll` must be a bool or a positive int .*; got float 1.5"),
    ],
)
def test_bad_remat_and_unroll(backend, rng, kwargs, error, message):
    x, h = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 3))

    def step(x_t, states):
        return x_t, [states[0] + x_t]

    with pytest.raises(error, match=message):
        rnnscan.rnn(step, backend.asarray(x), [backend.asarray(h)], **kwargs)


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
def test_torch_compile_of_several_unroll_values_in_one_process(rng):
    """A second compile makes a closed-over int symbolic (automatic dynamic shapes): the
    loop's blocks are still laid out, the same results for each k."""
    import torch

    torch._dynamo.reset()
    x = torch.as_tensor(rng.standard_normal((BATCH, TIME, FEATURES)).astype(np.float32))
    w = torch.as_tensor(rng.standard_normal((FEATURES, UNITS)).astype(np.float32))

    def step(x_t, states):
        h = torch.tanh(x_t @ w + states[0])
        return h, [h]

    def outputs(k):
        return torch.compile(lambda x: rnnscan.rnn(step, x, [torch.zeros(BATCH, UNITS)], unroll=k)[1], fullgraph=True)(
            x
        )

    expected = rnnscan.rnn(step, x, [torch.zeros(BATCH, UNITS)])[1]
    for k in (1, 4, 3):
        torch.testing.assert_close(outputs(k), expected, rtol=1e-5, atol=1e-6)
