"""JAX: what the backward pass of a step keeps. The fast path of :meth:`JaxBackend.scan`.

Left to itself, JAX's autodiff of ``lax.scan`` stacks every intermediate of every step
for the backward pass: for an LSTM cell, a dozen ``(batch, units)`` arrays per step
(its gates, their activations, ``tanh(c)``...). Writing those out and reading them back
costs more than computing them again on a CPU: the step is memory-bound there.

:func:`lean` keeps instead a step's *pre-activations*: the values computed from matrix
products (``dot_general``, ``conv_general_dilated``) by affine operations alone (sums,
broadcasts, reshapes, slices: ``x @ W + h @ U + b`` and its four gate slices) that a
non-affine operation then reads. The backward pass recomputes the elementwise rest
from them and from the step's inputs (``jax.checkpoint`` with a names policy), and
never a matrix product. The values are the same; only what is stored differs.

Only a step made of matrix products and cheap operations (:data:`CHEAP`: elementwise
math, comparisons, shape changes, reductions, and calls of nothing else) is rebuilt so.
Anything else (an inner loop, a linear solve, a product inside a nested ``jit``) would
be recomputed too, or would be unknown: such a step keeps everything, as before.

The plain body (everything kept) is the reference: ``JaxBackend.lean_residuals = False``.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.ad_checkpoint import checkpoint_name

try:  # JAX >= 0.4.36
    from jax.extend.core import Literal
except ImportError:  # pragma: no cover - older JAX
    from jax.core import Literal

#: the checkpoint name of the values kept
NAME = "rnnscan.pre_activation"

#: where affine values start: their outputs are kept whenever something non-affine reads them
PRODUCTS = frozenset({"dot_general", "conv_general_dilated"})
#: operations affine in each operand given the others (a product's output stays a pre-activation through them)
AFFINE = frozenset(
    {
        "add",
        "add_any",
        "sub",
        "neg",
        "broadcast_in_dim",
        "reshape",
        "squeeze",
        "expand_dims",
        "transpose",
        "slice",
        "split",
        "concatenate",
        "copy",
        "copy_p",
    }
)


#: what the backward pass may compute again at no more than the cost of reading it back
CHEAP = AFFINE | frozenset(
    {
        *("mul", "div", "max", "min", "abs", "sign", "pow", "integer_pow", "square", "sqrt", "rsqrt", "cbrt"),
        *("exp", "exp2", "expm1", "log", "log1p", "tanh", "logistic", "sin", "cos", "tan", "atan2"),
        *("erf", "erfc", "erf_inv", "floor", "ceil", "round", "rem", "is_finite", "nextafter", "clamp"),
        *("select_n", "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "xor"),
        *("convert_element_type", "pad", "rev", "iota", "dynamic_slice", "reduce_sum", "reduce_max"),
        *("reduce_min", "argmax", "argmin", "stop_gradient"),
    }
)
#: calls whose body counts: cheap if everything in it is (``jnp.where`` is a ``jit``; ``relu`` a ``custom_jvp_call``)
CALLS = {"jit": "jaxpr", "pjit": "jaxpr", "custom_jvp_call": "call_jaxpr", "closed_call": "call_jaxpr"}


def _cheap(eqn: Any) -> bool:
    name = eqn.primitive.name
    if name in CALLS:
        inner = eqn.params.get(CALLS[name])
        inner = getattr(inner, "jaxpr", inner)
        return inner is not None and all(_cheap(e) for e in inner.eqns)
    return name in CHEAP


def rebuildable(jaxpr: Any) -> bool:
    """True where the step is matrix products (at its top level) and cheap operations only."""
    return all(eqn.primitive.name in PRODUCTS or _cheap(eqn) for eqn in jaxpr.eqns)


def pre_activations(jaxpr: Any) -> set[Any]:
    """The variables of ``jaxpr`` (one step) to keep: affine in matrix products, read by a
    non-affine operation. Only the top level is looked at: a step whose products sit in a
    nested call keeps nothing here (and then :func:`lean` changes nothing)."""
    affine: set[Any] = set()
    kept: set[Any] = set()
    for eqn in jaxpr.eqns:
        inputs = [v for v in eqn.invars if not isinstance(v, Literal)]
        name = eqn.primitive.name
        if name in PRODUCTS or (name in AFFINE and any(v in affine for v in inputs)):
            affine.update(eqn.outvars)
        else:
            kept.update(v for v in inputs if v in affine)
    return kept


def lean(body: Any, *example: Any) -> Any:
    """``body`` (a scan body, called on ``example``) rebuilt so that its backward pass keeps
    only its pre-activations; ``body`` itself where there are none to keep, where it is not
    :func:`rebuildable`, or where it has effects (a checkpointed step would run them twice)."""
    closed, out_shape = jax.make_jaxpr(body, return_shape=True)(*example)
    if closed.effects or not rebuildable(closed.jaxpr):
        return body
    kept = pre_activations(closed.jaxpr)
    if not kept:
        return body
    out_tree = jax.tree.structure(out_shape)

    def evaluate(*leaves: Any) -> list[Any]:
        env: dict[Any, Any] = dict(zip(closed.jaxpr.constvars, closed.consts))
        env.update(zip(closed.jaxpr.invars, leaves))

        def read(v: Any) -> Any:
            return v.val if isinstance(v, Literal) else env[v]

        for eqn in closed.jaxpr.eqns:
            bound = eqn.primitive.get_bind_params(eqn.params)  # (subfuns, params) before JAX 0.7
            subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
            with eqn.ctx.manager:
                outs = eqn.primitive.bind(*subfuns, *map(read, eqn.invars), **params)
            for v, out in zip(eqn.outvars, outs if eqn.primitive.multiple_results else [outs]):
                env[v] = checkpoint_name(out, NAME) if v in kept else out
        return [read(v) for v in closed.jaxpr.outvars]

    recomputed = jax.checkpoint(evaluate, policy=jax.checkpoint_policies.save_only_these_names(NAME), prevent_cse=False)

    def rebuilt(*args: Any) -> Any:
        return jax.tree.unflatten(out_tree, recomputed(*jax.tree.leaves(args)))

    return rebuilt
