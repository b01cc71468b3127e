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
    only its pre-activations; ``body`` itself where there are none to keep, or where it has
    effects (a checkpointed step would run them twice)."""
    closed, out_shape = jax.make_jaxpr(body, return_shape=True)(*example)
    kept = pre_activations(closed.jaxpr)
    if not kept or closed.effects:
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
