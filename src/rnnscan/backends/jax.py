"""JAX: ``jax.lax.scan``; works under ``jax.jit``, ``jax.grad`` and ``jax.vmap``; eager calls compiled once."""

from __future__ import annotations

import dataclasses
import inspect
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.export
import jax.numpy as jnp
import numpy as np

# The core (rnnscan._tree, ._loop) imports this module lazily, when a JAX array first arrives
# (backends.get_backend): these imports of the core run after it is loaded, never first.
from .. import _tree
from . import _jax_residuals
from ._base import Backend

if TYPE_CHECKING:
    from .._loop import LoopCall
    from .._step import StepShape


class JaxBackend(Backend):
    name = "jax"

    def owns(self, x: Any) -> bool:
        # jax.Array covers tracers; __jax_array__ is JAX's conversion protocol (keras.Variable)
        return isinstance(x, jax.Array) or hasattr(type(x), "__jax_array__")

    def asarray(self, x: Any, *, device: Any = None) -> Any:
        return jnp.asarray(x)

    def registered_node(self, x: Any) -> tuple[Any, Any] | None:
        if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(x)):
            return None

        def flatten(node: Any) -> tuple[list[Any], Any]:
            return jax.tree_util.tree_flatten(node, is_leaf=lambda child: child is not node)

        return flatten, lambda treedef, children: jax.tree_util.tree_unflatten(treedef, children)

    def is_symbolic_int(self, x: Any) -> bool:
        return jax.export.is_symbolic_dim(x)

    def host_values(self, x: Any) -> Any:
        return None if isinstance(x, jax.core.Tracer) else np.asarray(x)

    def is_bool(self, x: Any) -> bool:
        return x.dtype == jnp.bool_

    def is_integer(self, x: Any) -> bool:
        return jnp.issubdtype(x.dtype, jnp.integer)

    def is_numeric(self, x: Any) -> bool:
        return jnp.issubdtype(x.dtype, jnp.number)

    def swap_batch_time(self, x: Any) -> Any:
        return jnp.swapaxes(x, 0, 1)

    def flip_time(self, x: Any) -> Any:
        return jnp.flip(x, 0)

    def reshape(self, x: Any, shape: Sequence[int]) -> Any:
        return jnp.reshape(x, shape)

    def expand_front(self, x: Any) -> Any:
        return x[None]

    def where(self, condition: Any, x: Any, y: Any) -> Any:
        return jnp.where(condition, x, y)

    def zeros_like(self, x: Any) -> Any:
        return jnp.zeros_like(x)

    def stack(self, xs: Sequence[Any]) -> Any:
        return jnp.stack(xs)

    def unstack(self, x: Any) -> Sequence[Any]:
        return [x[t] for t in range(x.shape[0])]

    def arange(self, n: Any, like: Any) -> Any:
        return jnp.arange(n, dtype=like.dtype)

    def as_index(self, x: Any) -> Any:
        return x.astype(int)  # JAX's default int: int64 with x64 enabled, else int32

    def max_length(self, lengths: Any) -> Any:
        return jnp.max(lengths, initial=0)

    def concat_time(self, xs: list[Any]) -> Any:
        return jnp.concatenate(xs)

    def any_over_time(self, mask: Any) -> Any:
        return jnp.any(mask, axis=0)

    def false_like(self, x: Any) -> Any:
        return jnp.zeros_like(x, dtype=bool)  # keeps x's shard_map varying axes

    def logical_or(self, x: Any, y: Any) -> Any:
        return jnp.logical_or(x, y)

    # -- the loop ----------------------------------------------------------
    unrolls_natively = True

    def runs_python_loops(self) -> bool:
        return False

    #: the backward pass keeps each step's pre-activations only (:mod:`._jax_residuals`); False: all (the reference)
    lean_residuals = True

    def scan(self, body: Any, carry: Any, xs: list[Any], unroll: int = 1) -> tuple[Any, list[Any]]:
        carry = _as_varying_as_updated(body, carry, xs)
        if self.lean_residuals:
            body = _jax_residuals.lean(body, carry, [x[0] for x in xs])
        return jax.lax.scan(body, carry, xs, unroll=unroll)

    def checkpoint(self, function: Any) -> Any:
        return jax.checkpoint(function)

    # -- parallel over time ----------------------------------------------------
    def jvp(self, f: Any, primals: list[Any], tangents: list[Any]) -> tuple[list[Any], list[Any]]:
        return jax.jvp(lambda *p: f(*p), tuple(primals), tuple(tangents))

    def map_over_time(self, f: Any) -> Any:
        return jax.vmap(f)

    def linear_scan(self, a: list[list[Any]], b: list[Any]) -> list[Any]:
        from .. import _linear_scan

        def combine(earlier: Any, later: Any) -> Any:
            return _linear_scan.compose(earlier, later)

        # associative_scan wants one leading size: a broadcasting factor is expanded first
        a = [[jnp.broadcast_to(x, jnp.broadcast_shapes(x.shape, b[i].shape)) for x in row] for i, row in enumerate(a)]
        return jax.lax.associative_scan(combine, (a, list(b)))[1]

    def while_loop(self, cond: Any, body: Any, carry: Any) -> Any:
        return jax.lax.while_loop(cond, body, carry)

    def cond(self, pred: Any, true_fn: Any, false_fn: Any) -> Any:
        return jax.lax.cond(pred, true_fn, false_fn)

    def on_host(self, fn: Any, *arrays: Any) -> None:
        jax.debug.callback(lambda *values: fn(*(np.asarray(v) for v in values)), *arrays)

    def stop_gradient(self, x: Any) -> Any:
        return jax.lax.stop_gradient(x)

    def repeat_time(self, x: Any, n: int) -> Any:
        return jnp.broadcast_to(x, (n, *x.shape))

    def max_abs(self, x: Any) -> Any:
        return jnp.max(jnp.abs(x), initial=0.0)

    def clip(self, x: Any, low: float, high: float) -> Any:
        return jnp.clip(x, low, high)

    def is_finite(self, x: Any) -> Any:
        return jnp.isfinite(x)

    def scalar(self, value: Any, like: Any) -> Any:
        return jnp.asarray(value, bool if isinstance(value, bool) else jnp.int32)

    def index_pattern(self, x: Any) -> Any:
        return (jnp.arange(x.size) % 4093).reshape(x.shape).astype(x.dtype)

    def run(self, call: LoopCall, states: list[Any], inputs: list[Any], mask: Any | None) -> Any:
        """Traced (under ``jit``, ``grad``, ``vmap``): the loop is part of the caller's program.
        Eagerly: the loop compiled once per step function and static configuration (see
        :func:`_compiled_loop`); ``unroll=True`` runs its Python loop as it is."""
        arrays = [*states, *inputs, *([] if mask is None else [mask]), *_tree.leaves(call.constants)]
        if call.unroll_fully or any(isinstance(a, jax.core.Tracer) for a in arrays):
            return call(self, states, inputs, mask)
        return _compiled_loop(self, call, states, inputs, mask)


# Compiled eager loops, per step function (held weakly: an entry goes when its function
# goes) and per program of its first step and static configuration. A fresh jit per call
# would recompile at every call (120-165 ms for a small step); a bare eager lax.scan
# would be compiled into JAX's process-wide primitive cache, which keeps its executables
# alive for good.
_COMPILED: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()
_ENTRIES_PER_FUNCTION = 16


def compiled_loops(step_function: Any) -> list[Any]:
    """The compiled loops kept for ``step_function`` (for tests and diagnostics)."""
    owner, _ = _owner(step_function)
    return list(_COMPILED.get(owner, {}).values())


def _owner(step_function: Any) -> tuple[Any, Any]:
    """What the cache holds weakly: a bound method's object (its function is part of the key)."""
    if inspect.ismethod(step_function):
        return step_function.__self__, step_function.__func__
    return step_function, None


def _compiled_loop(backend: JaxBackend, call: LoopCall, states: list[Any], inputs: list[Any], mask: Any | None) -> Any:
    """``call``'s loop as a cached ``jax.jit``, keyed by the program of the step itself.

    The step is traced once per call (cheap) to a jaxpr. Arrays it closes over become
    that program's constants, passed to the compiled loop as arguments: a step whose
    closed-over weights change gives the new results, with no recompilation. The
    compiled loop replays the jaxpr as its step, so it holds no reference to the step
    function; anything else the step reads (a Python number) is part of the program,
    and so of the key.
    """
    leaves, constants_spec = _tree.flatten(call.constants)
    # array constants are arguments; anything else (a Python number) stays as it is, in the key
    constant_leaves = [c for c in leaves if backend.owns(c)]
    static = tuple(None if backend.owns(c) else c for c in leaves)
    constants = _Constants(constants_spec, static)
    shapes: list[StepShape] = []

    def first_step(states: list[Any], x_t: list[Any], constant_leaves: list[Any]) -> Any:
        _, shape, output, new_states = call.first_call(backend, states, x_t, constants.rebuild(constant_leaves))
        shapes.append(shape)  # the Python facts of the trace, beside its arrays
        return output, new_states

    closed = jax.make_jaxpr(first_step)(states, [x[0] for x in inputs], constant_leaves)
    (shape,) = shapes
    template = dataclasses.replace(call, step_function=None, constants=())
    key = (str(closed.jaxpr), shape, template, constants, mask is None)
    owner, method = _owner(call.step_function)
    try:
        entries = _COMPILED.setdefault(owner, {})
    except TypeError:  # not weakly referable, or unhashable: compiled for this call alone
        entries = {}
    compiled = entries.get((method, key))
    if compiled is None:
        compiled = jax.jit(_replaying_loop(backend, template, closed.jaxpr, shape, constants))
        if len(entries) >= _ENTRIES_PER_FUNCTION:
            del entries[next(iter(entries))]
        entries[(method, key)] = compiled
    return (*compiled(closed.consts, states, inputs, mask, constant_leaves), shape.output_spec)


@dataclasses.dataclass(frozen=True)
class _Constants:
    """The constants' structure, with their non-array leaves (None where an array goes)."""

    spec: Any
    static: tuple[Any, ...]

    def rebuild(self, arrays: list[Any]) -> tuple[Any, ...]:
        given = iter(arrays)
        return tuple(_tree.unflatten(self.spec, [next(given) if s is None else s for s in self.static]))

    def arrays(self, constants: tuple[Any, ...]) -> list[Any]:
        return [c for c, s in zip(_tree.leaves(constants), self.static) if s is None]


def _replaying_loop(
    backend: JaxBackend, template: LoopCall, jaxpr: Any, shape: StepShape, constants: _Constants
) -> Any:
    """The loop of ``template`` whose step evaluates ``jaxpr`` (the step's own program)."""
    n_output = len(shape.output_ranks)
    states_spec = template.states_spec

    def run(consts: list[Any], states: list[Any], inputs: list[Any], mask: Any, constant_leaves: list[Any]) -> Any:
        n_states = len(states_spec.children())

        def replay(x_t: Any, states_and_constants: tuple[Any, ...]) -> Any:
            leaves = [
                *_tree.leaves(states_and_constants[:n_states]),
                *_tree.leaves(x_t),
                *constants.arrays(states_and_constants[n_states:]),
            ]
            out = jax.core.eval_jaxpr(jaxpr, consts, *leaves)
            output = _tree.unflatten(shape.output_spec, out[:n_output])
            return output, list(states_spec.unflatten(out[n_output:]))

        call = dataclasses.replace(template, step_function=replay, constants=constants.rebuild(constant_leaves))
        return call(backend, states, inputs, mask)[:3]

    return run


def _varying(x: Any) -> frozenset:
    """The shard_map axes ``x`` varies over (empty outside shard_map or with check_vma=False)."""
    aval = jax.typeof(x) if not hasattr(x, "shape") or isinstance(x, jax.Array) else x
    manual = getattr(aval, "manual_axis_type", None)
    return frozenset(getattr(manual, "varying", None) or getattr(aval, "vma", None) or ())


def _as_varying_as_updated(body: Any, carry: Any, xs: list[Any]) -> Any:
    """The initial carry cast to the shard_map axes its updated value varies over: lax.scan
    needs both to agree, and an initial state made inside the shard (``jnp.zeros``) varies
    over none. Outside shard_map (or with ``check_vma=False``) nothing varies: no work."""
    if not any(_varying(x) for x in jax.tree.leaves((carry, xs))):
        return carry
    for _ in range(len(jax.tree.leaves(carry)) + 1):  # each pass can only add axes
        updated, _ = jax.eval_shape(body, carry, [x[0] for x in xs])
        wanted = jax.tree.map(lambda c, u: _varying(u) - _varying(c), carry, updated)
        if not any(jax.tree.leaves(jax.tree.map(bool, wanted))):
            return carry
        carry = jax.tree.map(lambda c, w: jax.lax.pcast(c, tuple(sorted(w)), to="varying") if w else c, carry, wanted)
    return carry


BACKEND = JaxBackend()
