"""The structure rules, tf.nest's and no stricter, on optree.

Structures are flattened once when ``rnn()`` is entered and rebuilt once when it
returns. optree knows the builtin containers and namedtuples; what tf.nest also
treats as a structure is registered here, in rnnscan's own optree namespace, the
first time its type is met:

* any other ``collections.abc.Sequence`` (TF's ``ListWrapper``, tracked lists) or
  ``collections.abc.Mapping`` (TF's ``_DictWrapper``), rebuilt as its own type;
* the nodes registered with a framework's own pytree registry
  (``jax.tree_util.register_dataclass``, torch's ``torch.utils._pytree``).

A step may return its new states in other containers of the same kind (a list
for a tuple, a dict for an ``OrderedDict``): :func:`leaves_like` reads their leaves
in the order of the states' own structure.
"""

from __future__ import annotations

import collections.abc
import threading
from collections.abc import Callable
from typing import Any

import optree

from .backends import framework_of, registered_node

PyTreeSpec = optree.PyTreeSpec
NAMESPACE = "rnnscan"

_LEAF_TYPES: set[type] = {str, bytes}  # types met as leaves, not to be asked about again
_NODE_TYPES: set[type] = set()  # types registered here
_REGISTERING = threading.Lock()  # several threads may meet one new type at once


def flatten(tree: Any) -> tuple[list[Any], PyTreeSpec]:
    """Leaves in a fixed order (dict keys sorted) and the structure to rebuild them."""
    while True:
        leaves, spec = optree.tree_flatten(tree, namespace=NAMESPACE)
        if not _register_new_nodes(leaves):
            return leaves, spec


def leaves(tree: Any) -> list[Any]:
    return flatten(tree)[0]


def unflatten(spec: PyTreeSpec, tree_leaves: Any) -> Any:
    return optree.tree_unflatten(spec, tree_leaves)


def only_leaf(tree_leaves: Any) -> Any:
    """A bare array rebuilt from its one leaf."""
    return tree_leaves[0]


def as_one_leaf(tree: Any) -> list[Any]:
    """The leaves of a bare array."""
    return [tree]


def rebuilder(spec: PyTreeSpec) -> Callable[[list[Any]], Any]:
    """A function rebuilding ``spec`` from its leaves, fast for a bare array.

    Structures of builtin containers (tuples, lists, dicts, namedtuples, None) are rebuilt
    by plain Python, not by the spec: a torch loop body traced by Dynamo outside of
    ``torch.compile`` (non-strict ``torch.export``) cannot call optree's spec made outside it.
    """
    if spec.is_leaf():
        return only_leaf
    # (under torch.compile the spec is Dynamo's stand-in for optree's, which it can call)
    build = _builder(spec.unflatten(range(spec.num_leaves))) if type(spec) is PyTreeSpec else None
    return spec.unflatten if build is None else build


def _builder(template: Any) -> Callable[[Any], Any] | None:
    """``template``, a structure whose leaves are the leaf indices, as a function of the
    leaves; None where it holds a container other than the builtin ones."""
    cls = type(template)
    if cls is int:
        return lambda tree_leaves: tree_leaves[template]
    if template is None:
        return lambda _: None
    if isinstance(template, dict) and cls in (dict, collections.OrderedDict):
        keys, builds = list(template), [_builder(child) for child in template.values()]
        if None in builds:
            return None
        return lambda tree_leaves: cls(zip(keys, [build(tree_leaves) for build in builds]))
    if cls in (tuple, list) or (isinstance(template, tuple) and hasattr(cls, "_fields")):
        builds = [_builder(child) for child in template]
        if None in builds:
            return None
        if cls in (tuple, list):
            return lambda tree_leaves: cls([build(tree_leaves) for build in builds])
        return lambda tree_leaves: cls(*[build(tree_leaves) for build in builds])
    return None


def leaf_reader(spec: PyTreeSpec) -> Callable[[Any], list[Any]]:
    """A function returning the leaves of a tree known to have exactly structure ``spec``."""
    if spec.is_leaf():
        return as_one_leaf
    if spec.type in (list, tuple) and all(child.is_leaf() for child in spec.children()):
        return list
    return lambda tree: optree.tree_leaves(tree, namespace=NAMESPACE)


def matches(spec: PyTreeSpec, tree: Any) -> bool:
    """``tree`` has the structure ``spec`` up to the container types, as
    ``tf.nest.assert_same_structure(..., check_types=False)``: a sequence for a
    sequence, a mapping with the same keys for a mapping, anything else the same type."""
    try:
        leaves_like(spec, tree)
    except (TypeError, ValueError, KeyError):
        return False
    return True


def leaves_like(spec: PyTreeSpec, tree: Any) -> list[Any]:
    """The leaves of ``tree`` in the order of ``spec``, whose structure it has up to the
    container types (see :func:`matches`); raises ``ValueError`` where it does not."""
    if spec.is_leaf():
        if _is_node(tree):
            raise ValueError("a structure where a leaf was expected")
        return [tree]
    children = spec.children()
    if spec.type is type(None):
        if tree is not None:
            raise ValueError("None expected")
        return []
    if _is_mapping(spec):
        if not isinstance(tree, collections.abc.Mapping) or set(tree) != set(spec.entries()):
            raise ValueError("a mapping with other keys")
        return [leaf for key, child in zip(spec.entries(), children) for leaf in leaves_like(child, tree[key])]
    if _is_sequence(spec):
        if not _is_sequence_value(tree) or len(tree) != len(children):
            raise ValueError("a sequence of another length")
        return [leaf for item, child in zip(tree, children) for leaf in leaves_like(child, item)]
    own_leaves, own_spec = flatten(tree)
    if own_spec != spec:
        raise ValueError("another structure")
    return own_leaves


# (only the spec's type, children and entries: torch.compile's stand-in for optree has no more)
def _is_mapping(spec: PyTreeSpec) -> bool:
    return issubclass(spec.type, collections.abc.Mapping)


def _is_sequence(spec: PyTreeSpec) -> bool:
    return spec.type is not None and issubclass(spec.type, collections.abc.Sequence) and not _is_mapping(spec)


def _is_sequence_value(x: Any) -> bool:
    return isinstance(x, collections.abc.Sequence) and not isinstance(x, (str, bytes))


def _is_node(x: Any) -> bool:
    return not optree.tree_structure(x, namespace=NAMESPACE).is_leaf() if x is not None else True


def _register_new_nodes(tree_leaves: list[Any]) -> bool:
    """Register, in rnnscan's namespace, the types among ``tree_leaves`` that tf.nest or a
    framework's registry treats as structures; True if any is a structure (registered
    now, or by another thread since ``tree_leaves`` were read: flatten again either way).

    Idempotent and thread-safe: a type is registered once, under a lock, however many
    of its instances one call holds and however many threads meet it at once."""
    found = False
    for cls, leaf in {type(leaf): leaf for leaf in tree_leaves}.items():
        if cls in _LEAF_TYPES:
            continue
        if cls in _NODE_TYPES:
            found = True
            continue
        if framework_of(leaf) is not None:  # an array: asked of no registry, and not recorded (a
            continue  # loop body traced by Dynamo, as non-strict torch.export does, must not mutate)
        node = _node_functions(leaf)
        if node is None:
            _LEAF_TYPES.add(cls)  # (no lock: adding to a set is atomic)
            continue
        with _REGISTERING:
            if cls not in _NODE_TYPES:
                optree.register_pytree_node(cls, *node, namespace=NAMESPACE)
                _NODE_TYPES.add(cls)
        found = True
    return found


def _node_functions(x: Any) -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    """``(flatten, unflatten)`` for optree where ``type(x)`` is a structure; None for a leaf."""
    framework_node = registered_node(x)
    if framework_node is not None:
        return framework_node
    cls = type(x)
    if isinstance(x, collections.abc.Mapping):
        return _flatten_mapping, lambda keys, children: _rebuild(cls, dict, dict(zip(keys, children)))
    if _is_sequence_value(x):
        return (lambda s: (list(s), None)), lambda _, children: _rebuild(cls, list, list(children))
    return None


def _flatten_mapping(mapping: Any) -> tuple[list[Any], list[Any], list[Any]]:
    keys = sorted(mapping)  # tf.nest's order
    return [mapping[k] for k in keys], keys, keys


def _rebuild(cls: type, fallback: type, contents: Any) -> Any:
    """``cls(contents)``; the plain builtin where ``cls`` cannot be built from its contents."""
    try:
        return cls(contents)
    except TypeError:
        return fallback(contents)
