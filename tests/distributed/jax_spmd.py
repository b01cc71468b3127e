"""rnnscan.rnn under JAX SPMD on 8 virtual CPU devices, against the same program on one device.

Run by tests/test_distributed.py in a fresh process (XLA reads the device count once, when
JAX starts). Prints one JSON line per check (common.report).
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import functools  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import assert_close, fresh_seed, report  # noqa: E402
from hlo import collectives, operand_shapes  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import rnnscan  # noqa: E402

# Global batch 24 (3 per data shard); no other dimension is 24 or 3, so the compiled
# loop's shapes tell whether it runs on a shard or on the whole batch.
B, T, DA, DB, U = 24, 7, 5, 2, 4
SHARD = B // 8
rng = np.random.default_rng(fresh_seed())


def f32(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def lstm_step(params: dict, x_t: tuple, states: tuple) -> tuple:
    """LSTM-like: inputs a pair (a, b), the state a (h, c) pair, then the bias as a constant."""
    (h, c), bias = states
    xa, xb = x_t
    z = xa @ params["wa"] + xb @ params["wb"] + h @ params["u"] + bias
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return h, [(h, c)]


def loss_and_outputs(params, xa, xb, seq, h0, c0, *, config: dict, batch: int):
    """A scalar loss summing per-sample terms over the batch, divided by the global batch size."""
    kwargs = {k: config[k] for k in ("go_backwards", "zero_output_for_mask", "time_major", "return_all_outputs")}
    kwargs[config["seq"]] = seq
    last, outputs, [(h, c)] = rnnscan.rnn(
        functools.partial(lstm_step, params), (xa, xb), [(h0, c0)], constants=[params["b"]], **kwargs
    )
    weights = jnp.arange(1, outputs.shape[-1] + 1, dtype=outputs.dtype)
    per_sample = jnp.sum(outputs**2 * weights, axis=(0, 2) if config["time_major"] else (1, 2))
    per_sample += jnp.sum(last * weights, -1) + jnp.sum(jnp.tanh(h) * c, -1)
    return jnp.sum(per_sample) / batch, (last, outputs, h, c)


def data(config: dict) -> tuple:
    params = {"wa": f32(DA, 4 * U, scale=0.5), "wb": f32(DB, 4 * U, scale=0.5), "u": f32(U, 4 * U, scale=0.5)}
    params["b"] = f32(4 * U, scale=0.3)
    shape = (T, B) if config["time_major"] else (B, T)
    xa, xb = f32(*shape, DA), f32(*shape, DB)
    if config["seq"] == "mask":
        seq = rng.random(shape) > 0.3
    else:
        seq = rng.integers(0, T + 1, B).astype(np.int32)
        seq[rng.integers(0, B)] = T  # the longest sequence fills the time axis
    return params, xa, xb, seq, f32(B, U), f32(B, U)


def shardings(mesh, config: dict) -> tuple:
    """Weights replicated; inputs, masks and states split over batch."""
    batch_axis = P(None, "data") if config["time_major"] else P("data")
    over_batch = NamedSharding(mesh, P("data"))
    seq = NamedSharding(mesh, batch_axis) if config["seq"] == "mask" else over_batch
    return (NamedSharding(mesh, P()), NamedSharding(mesh, batch_axis), NamedSharding(mesh, batch_axis), seq) + (
        over_batch,
        over_batch,
    )


CONFIGS = {
    "mask": dict(seq="mask"),
    "mask_go_backwards_zero_output": dict(seq="mask", go_backwards=True, zero_output_for_mask=True),
    "input_length_go_backwards": dict(seq="input_length", go_backwards=True),
    "input_length_last_output_only": dict(seq="input_length", return_all_outputs=False),
    "time_major_mask_go_backwards": dict(seq="mask", time_major=True, go_backwards=True),
}
DEFAULTS = dict(go_backwards=False, zero_output_for_mask=False, time_major=False, return_all_outputs=True)


def assert_trees_close(actual, expected, what: str) -> None:
    leaves, tree = jax.tree.flatten_with_path(expected)
    assert jax.tree.structure(actual) == jax.tree.structure(expected), what
    for (path, r), a in zip(leaves, jax.tree.leaves(actual)):
        assert_close(a, r, f"{what} {jax.tree_util.keystr(path)}")


def one_device(fn, args):
    return fn(*jax.device_put(args, jax.devices()[0]))


def weight_shapes(params: dict) -> set[tuple[int, ...]]:
    """A weight's shape, transposed, or with unit dimensions added (XLA's layouts of its gradient)."""
    shapes = {np.shape(p) for p in params.values()}
    shapes |= {s[::-1] for s in shapes}
    return shapes | {(1, *s) for s in shapes} | {(*s, 1) for s in shapes}


def check_data_parallel(name: str) -> dict:
    config = {**DEFAULTS, **CONFIGS[name]}
    mesh = jax.make_mesh((8,), ("data",))
    args = data(config)
    loss = functools.partial(loss_and_outputs, config=config, batch=B)
    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 4, 5), has_aux=True))
    forward = jax.jit(lambda *a: loss(*a)[0])

    sharded_args = jax.device_put(args, shardings(mesh, config))
    # One compilation each, whose text is read below and whose executable gives the numbers.
    grad_compiled = grad.lower(*sharded_args).compile()
    forward_compiled = forward.lower(*sharded_args).compile()
    (value, aux), grads = grad_compiled(*sharded_args)
    (ref_value, ref_aux), ref_grads = one_device(grad, args)
    assert_close(value, ref_value, "loss")
    for what, a, r in zip(("last_output", "outputs", "h", "c"), aux, ref_aux):
        assert_close(a, r, what)
    assert_trees_close(grads, ref_grads, "gradient")
    assert_close(forward_compiled(*sharded_args), ref_value, "forward loss")

    # The outputs stay split over batch: no device holds another's samples.
    batch_dim = 1 if config["time_major"] and config["return_all_outputs"] else 0
    out_spec = aux[1].sharding.spec
    assert len(out_spec) > batch_dim and out_spec[batch_dim] == "data", f"outputs sharded {out_spec}"
    assert grads[1].sharding.spec[0] == "data", f"state gradient sharded {grads[1].sharding.spec}"

    # The compiled programs: each shard runs its own loop on its own 3 samples.
    fwd = collectives(forward_compiled.as_text())
    bwd = collectives(grad_compiled.as_text())
    assert len(fwd.whiles) >= 1 and len(bwd.whiles) >= 2, (len(fwd.whiles), len(bwd.whiles))
    for w in fwd.whiles + bwd.whiles:
        dims = {d for s in operand_shapes(w) for d in s}
        assert B not in dims and SHARD in dims, f"a loop over the whole batch: {w.shape}"
    assert not fwd.in_loops, f"collectives in the forward loop: {[i.line for i in fwd.in_loops]}"
    moved = [i for i in fwd.outside + bwd.outside + bwd.in_loops if i.opcode != "all-reduce"]
    assert not moved, f"the batch moves between devices: {[i.line[:200] for i in moved]}"
    # In the backward loop, JAX's transposed scan adds each step's weight-gradient term into
    # a replicated accumulator, so GSPMD all-reduces that term (weight-shaped) per step.
    shapes = weight_shapes(args[0])
    not_weights = [i for i in bwd.in_loops if not set(operand_shapes(i)) <= shapes]
    assert not not_weights, f"non-gradient all-reduce in a loop: {[i.line[:200] for i in not_weights]}"
    return {
        "loss": float(value),
        "forward_loop_collectives": 0,
        "backward_loop_all_reduces": len(bwd.in_loops),
        "outside_all_reduces": len(fwd.outside) + len(bwd.outside),
    }


def check_hand_written_scan_all_reduces_as_rnnscan() -> dict:
    """The per-step gradient all-reduce is JAX's, not rnnscan's: a bare lax.scan compiles the same."""
    mesh = jax.make_mesh((8,), ("data",))
    config = {**DEFAULTS, **CONFIGS["mask"]}
    params, xa, xb, mask, h0, c0 = data(config)

    def hand(params, xa, xb, mask, h0, c0):
        def body(carry, inp):
            (h, c), (a_t, b_t, m_t) = carry, inp
            out, [(h2, c2)] = lstm_step(params, (a_t, b_t), ((h, c), params["b"]))
            keep = m_t[:, None]
            return (jnp.where(keep, h2, h), jnp.where(keep, c2, c)), out

        (h, c), outs = jax.lax.scan(body, (h0, c0), (xa.swapaxes(0, 1), xb.swapaxes(0, 1), mask.T))
        return (jnp.sum(outs**2) + jnp.sum(jnp.tanh(h) * c)) / B

    args = jax.device_put((params, xa, xb, mask, h0, c0), shardings(mesh, config))
    program = collectives(jax.jit(jax.grad(hand)).lower(*args).compile().as_text())
    ours = collectives(
        jax.jit(jax.grad(lambda *a: loss_and_outputs(*a, config=config, batch=B)[0])).lower(*args).compile().as_text()
    )
    kinds = {i.opcode for i in program.in_loops}
    assert kinds == {i.opcode for i in ours.in_loops} == {"all-reduce"}, (kinds, {i.opcode for i in ours.in_loops})
    assert len(program.in_loops) == len(ours.in_loops), (len(program.in_loops), len(ours.in_loops))
    return {"hand_scan_loop_all_reduces": len(program.in_loops), "rnnscan_loop_all_reduces": len(ours.in_loops)}


def shard_map_fn():
    if hasattr(jax, "shard_map"):
        return jax.shard_map
    from jax.experimental.shard_map import shard_map

    return shard_map


def check_shard_map(name: str, lengths_rule: str = "", vma: str = "off") -> dict:
    """Each device calls rnn on its own 3 samples; the loss and the weight gradients are psum'd.

    ``vma="off"`` (``check_vma=False``): each shard's gradients are its own and a psum sums
    them, once, after the loops. With JAX's default ``check_vma=True`` (``vma="implicit"``),
    JAX sums the gradient of a replicated input itself: the transpose of the ``pvary`` it
    inserts where the weights meet the shard's data, inside the step, is a psum, so it runs
    at every backward step (and psum'ing again would count it 8 times). ``vma="varying"``
    casts the weights to varying first (``jax.lax.pcast(..., to="varying")``): the gradients
    are the shard's own again and one explicit psum sums them after the loops.
    """
    config = {**DEFAULTS, **CONFIGS[name]}
    mesh = jax.make_mesh((8,), ("data",))
    args = data(config)
    if lengths_rule == "full_length_in_every_shard":
        args[3][::SHARD] = T
    elif lengths_rule == "shards_shorter_than_batch":
        args[3][:] = rng.integers(0, T, B)
        args[3][-1] = T  # the longest is in the last shard alone

    def per_shard(params, xa, xb, seq, h0, c0):
        if vma == "varying":
            params = jax.lax.pcast(params, "data", to="varying")
        loss = functools.partial(loss_and_outputs, config=config, batch=B)
        (value, aux), (g_params, g_h0, g_c0) = jax.value_and_grad(loss, argnums=(0, 4, 5), has_aux=True)(
            params, xa, xb, seq, h0, c0
        )
        if vma != "implicit":
            g_params = jax.lax.psum(g_params, "data")
        return jax.lax.psum(value, "data"), g_params, g_h0, g_c0, aux[1]

    seq_spec = P(None, "data") if config["time_major"] and config["seq"] == "mask" else P("data")
    x_spec = P(None, "data") if config["time_major"] else P("data")
    out_spec = P(None, "data") if config["time_major"] else P("data")
    step = jax.jit(
        shard_map_fn()(
            per_shard,
            mesh=mesh,
            in_specs=(P(), x_spec, x_spec, seq_spec, P("data"), P("data")),
            out_specs=(P(), P(), P("data"), P("data"), out_spec),
            check_vma=vma != "off",
        )
    )
    loss = functools.partial(loss_and_outputs, config=config, batch=B)
    ref = jax.jit(jax.value_and_grad(loss, argnums=(0, 4, 5), has_aux=True))
    (ref_value, ref_aux), (ref_params, ref_h0, ref_c0) = one_device(ref, args)
    placed = jax.device_put(args, shardings(mesh, config))
    compiled = step.lower(*placed).compile()
    value, g_params, g_h0, g_c0, outputs = compiled(*placed)
    if lengths_rule == "shards_shorter_than_batch":
        # tf-keras's backward input_length rule reads the longest length of the batch rnn sees:
        # under shard_map that is each shard's own batch, so the outputs differ (docs/scaling.md).
        differs = not np.allclose(outputs, ref_aux[1], rtol=1e-5, atol=1e-6)
        assert differs, "a shard's local maximum length should change which steps are kept"
        return {"outputs_differ_from_one_device": differs}
    assert_close(value, ref_value, "loss")
    assert_close(outputs, ref_aux[1], "outputs")
    for key in ref_params:
        assert_close(g_params[key], ref_params[key], f"gradient {key}")
    assert_close(g_h0, ref_h0, "gradient h0")
    assert_close(g_c0, ref_c0, "gradient c0")

    program = collectives(compiled.as_text())
    assert {i.opcode for i in program.in_loops + program.outside} == {"all-reduce"}, program
    if vma == "implicit":
        assert program.in_loops, "JAX's implicit psum of replicated weights runs in the backward loop"
        assert all(set(operand_shapes(i)) <= weight_shapes(args[0]) for i in program.in_loops), program.in_loops
    else:
        assert not program.in_loops, f"collectives in a loop: {[i.line[:200] for i in program.in_loops]}"
    return {
        "loss": float(value),
        "all_reduces_in_loops": len(program.in_loops),
        "all_reduces_after_the_loops": len(program.outside),
    }


def check_shard_map_carry(case: str, check_vma: bool = True) -> dict:
    """Under ``check_vma`` (JAX's default), rnn's loop carry must be as varying as the shard's data.

    ``case="output_not_a_state"``: the step outputs ``2 * h``, not a state, so the loop also
    carries the previous output. ``case="initial_state_made_in_the_shard"``: the initial
    state is ``jnp.zeros(...)`` made inside the shard (as Keras's ``get_initial_state`` does),
    not an input. Either works on one device, so it must work under shard_map. With
    ``check_vma=False`` there are no varying types to match (the gradients are psum'd here).
    """
    mesh = jax.make_mesh((8,), ("data",))
    params = {"w": f32(DA, U, scale=0.5), "u": f32(U, U, scale=0.5)}
    x, mask, h0 = f32(B, T, DA), rng.random((B, T)) > 0.3, f32(B, U)
    if case == "initial_state_made_in_the_shard":
        h0[:] = 0

    def loss(params, x, mask, h0):
        def step(x_t, states):
            h = jnp.tanh(x_t @ params["w"] + states[0] @ params["u"])
            return (2 * h if case == "output_not_a_state" else h), [h]

        if case == "initial_state_made_in_the_shard":
            h0 = jnp.zeros((x.shape[0], U), x.dtype)
        last, outputs, _ = rnnscan.rnn(step, x, [h0], mask=mask, go_backwards=True)
        return (jnp.sum(outputs**2) + jnp.sum(last)) / B

    def per_shard(params, x, mask, h0):
        value, grads = jax.value_and_grad(loss)(params, x, mask, h0)
        if not check_vma:  # with check_vma, JAX has summed the gradients of the replicated weights
            grads = jax.lax.psum(grads, "data")
        return jax.lax.psum(value, "data"), grads

    specs = (P(), P("data"), P("data"), P("data"))
    step = jax.jit(shard_map_fn()(per_shard, mesh=mesh, in_specs=specs, out_specs=P(), check_vma=check_vma))
    over_batch = NamedSharding(mesh, P("data"))
    value, grads = step(jax.device_put(params, NamedSharding(mesh, P())), *jax.device_put((x, mask, h0), over_batch))
    ref_value, ref_grads = one_device(jax.jit(jax.value_and_grad(loss)), (params, x, mask, h0))
    assert_close(value, ref_value, "loss")
    assert_trees_close(grads, ref_grads, "gradient")
    return {"loss": float(value)}


def check_model_parallel(name: str) -> dict:
    """A 2x4 mesh: batch over "data", the hidden units of every weight over "model"."""
    config = {**DEFAULTS, **CONFIGS[name]}
    mesh = jax.make_mesh((2, 4), ("data", "model"))
    units = 8  # 2 per model shard
    gates = "ifgo"
    params = {f"w_{g}": f32(DA, units, scale=0.5) for g in gates}
    params |= {f"u_{g}": f32(units, units, scale=0.5) for g in gates}
    bias = f32(4, units, scale=0.3)
    shape = (T, B) if config["time_major"] else (B, T)
    x = f32(*shape, DA)
    seq = rng.random(shape) > 0.3 if config["seq"] == "mask" else rng.integers(1, T + 1, B).astype(np.int32)
    h0, c0 = f32(B, units), f32(B, units)

    def step(params, x_t, states):
        (h, c), bias = states
        z = {g: x_t @ params[f"w_{g}"] + h @ params[f"u_{g}"] + bias[k] for k, g in enumerate(gates)}
        c = jax.nn.sigmoid(z["f"]) * c + jax.nn.sigmoid(z["i"]) * jnp.tanh(z["g"])
        h = jax.nn.sigmoid(z["o"]) * jnp.tanh(c)
        return h, [(h, c)]

    def loss(params, bias, x, seq, h0, c0):
        kwargs = {k: config[k] for k in ("go_backwards", "zero_output_for_mask", "time_major")}
        kwargs[config["seq"]] = seq
        last, outputs, [(h, c)] = rnnscan.rnn(
            functools.partial(step, params), x, [(h0, c0)], constants=[bias], **kwargs
        )
        value = (jnp.sum(outputs**2) + jnp.sum(last) + jnp.sum(jnp.tanh(h) * c)) / B
        return value, outputs

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 4, 5), has_aux=True))
    args = (params, bias, x, seq, h0, c0)
    batch_axis = P(None, "data") if config["time_major"] else P("data")
    placed = jax.device_put(
        args,
        (
            NamedSharding(mesh, P(None, "model")),
            NamedSharding(mesh, P(None, "model")),
            NamedSharding(mesh, batch_axis),
            NamedSharding(mesh, batch_axis if config["seq"] == "mask" else P("data")),
            NamedSharding(mesh, P("data", "model")),
            NamedSharding(mesh, P("data", "model")),
        ),
    )
    assert placed[0]["u_i"].addressable_shards[0].data.shape == (units, units // 4)
    (value, outputs), grads = grad(*placed)
    (ref_value, ref_outputs), ref_grads = one_device(grad, args)
    assert_close(value, ref_value, "loss")
    assert_close(outputs, ref_outputs, "outputs")
    assert_trees_close(grads, ref_grads, "gradient")
    forward = jax.jit(lambda *a: loss(*a)[0])
    in_loop = collectives(forward.lower(*placed).compile().as_text()).in_loops
    # h @ u with u split by output units needs all of h: the forward loop exchanges it.
    assert in_loop, "a unit-sharded recurrence must communicate inside the loop"
    return {
        "loss": float(value),
        "weight_shard_shape": [units, units // 4],
        "forward_loop_collectives": sorted({i.opcode for i in in_loop}),
    }


def main() -> None:
    assert len(jax.devices()) == 8, jax.devices()
    part = functools.partial
    for name in CONFIGS:
        report(f"data_parallel[{name}]", part(check_data_parallel, name))
    report("hand_written_scan_all_reduces_as_rnnscan", check_hand_written_scan_all_reduces_as_rnnscan)
    for name in ("mask_go_backwards_zero_output", "time_major_mask_go_backwards", "input_length_last_output_only"):
        report(f"shard_map[{name}]", part(check_shard_map, name))
    name = "mask_go_backwards_zero_output"
    report(f"shard_map[{name}, check_vma: JAX sums in the loop]", part(check_shard_map, name, vma="implicit"))
    report(f"shard_map[{name}, check_vma, weights cast to varying]", part(check_shard_map, name, vma="varying"))
    for case in ("output_not_a_state", "initial_state_made_in_the_shard"):
        report(f"shard_map[check_vma, {case}]", part(check_shard_map_carry, case))
        report(f"shard_map[check_vma=False, {case}]", part(check_shard_map_carry, case, check_vma=False))
    name = "input_length_go_backwards"
    report(f"shard_map[{name}, full length in every shard]", part(check_shard_map, name, "full_length_in_every_shard"))
    report(f"shard_map[{name}, local rule]", part(check_shard_map, name, "shards_shorter_than_batch"))
    for name in ("mask", "input_length_go_backwards", "time_major_mask_go_backwards"):
        report(f"model_parallel[{name}]", part(check_model_parallel, name))


if __name__ == "__main__":
    main()
