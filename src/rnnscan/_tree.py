"""The few optree calls the core needs.

Structures are flattened once when ``rnn()`` is entered and rebuilt once when it
returns. Inside the loop the step function still sees the user's structures, so
``packer``/``flattener`` return the cheapest function that does the job for a
given structure: the identity for a bare array, ``tuple`` for a flat sequence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optree

PyTreeSpec = optree.PyTreeSpec


def flatten(tree: Any) -> tuple[list[Any], PyTreeSpec]:
    """Leaves in a fixed order (dict keys sorted) and the structure to rebuild them."""
    return optree.tree_flatten(tree)


def structure(tree: Any) -> PyTreeSpec:
    return optree.tree_structure(tree)


def leaves(tree: Any) -> list[Any]:
    return optree.tree_leaves(tree)


def unflatten(spec: PyTreeSpec, tree_leaves: Any) -> Any:
    return optree.tree_unflatten(spec, tree_leaves)


def _children_are_leaves(spec: PyTreeSpec) -> bool:
    return all(child.is_leaf() for child in spec.children())


def packer(spec: PyTreeSpec) -> Callable[[list[Any]], Any]:
    """A function rebuilding ``spec`` from its leaves, fast for the common shapes."""
    if spec.is_leaf():
        return lambda tree_leaves: tree_leaves[0]
    return spec.unflatten


def state_packer(spec: PyTreeSpec) -> Callable[[list[Any]], tuple[Any, ...]]:
    """Rebuild the sequence of states as the tuple the step function receives."""
    if spec.type in (list, tuple) and _children_are_leaves(spec):
        return tuple
    return lambda tree_leaves: tuple(spec.unflatten(tree_leaves))


def flattener(spec: PyTreeSpec) -> Callable[[Any], list[Any]]:
    """A function returning the leaves of a tree that has structure ``spec``."""
    if spec.is_leaf():
        return lambda tree: [tree]
    return optree.tree_leaves


def sequence_flattener(spec: PyTreeSpec) -> Callable[[Any], list[Any]]:
    """Leaves of a list or tuple of states (the container type may differ from ``spec``'s)."""
    if _children_are_leaves(spec):
        return list
    return lambda states: optree.tree_leaves(tuple(states))
