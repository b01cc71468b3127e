"""A remat segment on PyTorch eagerly: its forward pass runs without autograd, and its
backward pass recomputes it with autograd from the inputs it kept.

``torch.utils.checkpoint`` (non-reentrant) is the reference: :meth:`Segment.reference`. It
records the segment's whole graph in the forward pass as well, and passes every saved
tensor through Python hooks, twice on the way in and once on the way out. On the LSTM of
``python -m rnnscan bench --suite long`` that made remat 1.6-1.8x the time of keeping the residuals.

Here a segment is one ``autograd.Function`` whose inputs are the segment's arrays (carry,
inputs, constants) and the leaf tensors the step closes over (its weights). Those are found
once per loop, by walking the graph of the first segment, which runs with autograd as
usual. Every recomputation walks its graph again and refuses a step that reaches a tensor
needing a gradient that is not among the segment's inputs, so a gradient is never lost
without a word. Where the first segment reaches a non-leaf tensor from outside it (a weight
computed before the loop), the whole loop keeps to the reference: the Function could only
give that tensor's leaves their gradient, not the tensor itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import optree
import torch
import torch.utils.checkpoint


class Segment:
    """``function(carry, xs_block, constants)``, checkpointed: the first call runs with
    autograd and finds the closed-over tensors; later calls run as :class:`_Recomputed`."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.closed_over: list[torch.Tensor] | None = None  # None: not yet found
        self.use_reference = False

    def __call__(self, *arguments: Any) -> Any:
        if not torch.is_grad_enabled():
            return self.function(*arguments)
        if self.use_reference or torch.jit.is_tracing():
            return self.reference(*arguments)
        leaves, spec = optree.tree_flatten(arguments)
        if not all(isinstance(x, torch.Tensor) for x in leaves):
            return self.reference(*arguments)
        if self.closed_over is None:
            return self._first(leaves, arguments)
        return _recompute_later(self.function, spec, leaves, self.closed_over)

    def reference(self, *arguments: Any) -> Any:
        """``torch.utils.checkpoint`` (non-reentrant; the RNG state is kept for the recomputation)."""
        return torch.utils.checkpoint.checkpoint(
            self.function, *arguments, use_reentrant=False, determinism_check="none"
        )

    def _first(self, leaves: list[torch.Tensor], arguments: tuple[Any, ...]) -> Any:
        """The first segment, with autograd (its residuals are kept): it shows the closed-over tensors."""
        before = _sequence_number()
        result = self.function(*arguments)
        outputs = [y for y in optree.tree_leaves(result) if isinstance(y, torch.Tensor)]
        reached = _reached(outputs, stops=leaves, before=before)
        self.use_reference = bool(reached.outer_nodes)
        self.closed_over = reached.leaves
        return result


def _recompute_later(
    function: Callable[..., Any], spec: Any, leaves: list[torch.Tensor], closed_over: list[torch.Tensor]
) -> Any:
    """One segment through :class:`_Recomputed`: ``function``'s result, its structure rebuilt."""
    known = {id(x) for x in leaves}
    extra = [w for w in closed_over if id(w) not in known]
    recipe = _Recipe(function, spec, len(leaves))
    outputs = _Recomputed.apply(recipe, *leaves, *extra)
    if not isinstance(outputs, tuple):
        outputs = (outputs,)
    return recipe.rebuild(list(outputs))


class _Recipe:
    """What a recomputation needs besides tensors: the function, the arguments' structure,
    the RNG and autocast state at the forward pass, and the outputs' layout."""

    def __init__(self, function: Callable[..., Any], spec: Any, n_arguments: int) -> None:
        self.function, self.spec, self.n_arguments = function, spec, n_arguments
        self.output_spec: Any = None
        self.output_slots: list[int] = []  # each output leaf's index among the unique outputs
        self.random_state: Any = None
        self.autocast: dict[str, Any] = {}

    def call(self, leaves: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The function on ``leaves`` (the arguments'), its result as unique tensors; the
        first call records the layout that :meth:`rebuild` undoes."""
        result = self.function(*optree.tree_unflatten(self.spec, list(leaves[: self.n_arguments])))
        flat, output_spec = optree.tree_flatten(result)
        unique: dict[int, int] = {}
        slots = [unique.setdefault(id(y), len(unique)) for y in flat]
        if self.output_spec is None:
            self.output_spec, self.output_slots = output_spec, slots
        firsts = {slot: y for slot, y in zip(slots, flat)}
        return tuple(firsts[i] for i in range(len(firsts)))

    def rebuild(self, unique: list[torch.Tensor]) -> Any:
        return optree.tree_unflatten(self.output_spec, [unique[i] for i in self.output_slots])


class _Recomputed(torch.autograd.Function):
    """A segment whose forward pass keeps only its inputs; the backward pass recomputes the
    segment with autograd and differentiates it by ``torch.autograd.grad``."""

    @staticmethod
    def forward(ctx: Any, recipe: _Recipe, *tensors: torch.Tensor) -> Any:  # type: ignore[override]
        recipe.random_state = _random_state(tensors)
        recipe.autocast = _autocast_state(tensors)
        with torch.no_grad():
            outputs = recipe.call(tensors)
        ctx.recipe = recipe
        ctx.save_for_backward(*tensors)
        ctx.mark_non_differentiable(*(y for y in outputs if not (y.is_floating_point() or y.is_complex())))
        ctx.set_materialize_grads(False)
        return outputs

    @staticmethod
    def backward(ctx: Any, *output_grads: torch.Tensor | None) -> Any:
        recipe: _Recipe = ctx.recipe
        saved = ctx.saved_tensors
        create_graph = torch.is_grad_enabled()  # a double backward: the gradients keep their graph
        arguments = list(saved[: recipe.n_arguments])
        gate = _Gate()
        if create_graph:  # the gradients depend on the arguments through the gate (see _Gate)
            arguments = [_Gated.apply(gate, x) if x.requires_grad else x for x in arguments]
        else:
            arguments = [x.detach().requires_grad_(x.requires_grad) for x in arguments]
        inputs = [*arguments, *saved[recipe.n_arguments :]]
        with _restored(recipe), torch.enable_grad():
            outputs = recipe.call(inputs)
        pairs = [(y, g) for y, g in zip(outputs, output_grads) if g is not None and y.requires_grad]
        wanted = [i for i, x in enumerate(inputs) if x.requires_grad]
        grads: list[Any] = [None] * len(inputs)
        if pairs and wanted:
            _check_reaches_only(
                [y for y, _ in pairs], stops=[inputs[i] for i in wanted], closed_over=saved[recipe.n_arguments :]
            )
            with gate.closed():
                found = torch.autograd.grad(
                    [y for y, _ in pairs],
                    [inputs[i] for i in wanted],
                    [g for _, g in pairs],
                    allow_unused=True,
                    create_graph=create_graph,
                )
            for i, g in zip(wanted, found):
                grads[i] = g
        return (None, *grads)


class _Gate:
    """Open or closed; closed while a segment's backward pass differentiates its recomputation."""

    def __init__(self) -> None:
        self.open = True

    @contextlib.contextmanager
    def closed(self) -> Any:
        self.open = False
        try:
            yield
        finally:
            self.open = True


class _Gated(torch.autograd.Function):
    """The identity, whose backward passes no gradient while its gate is closed.

    In a double backward the recomputation must take the segment's own arguments, not
    detached copies, for the gradients it returns to depend on them. But then
    ``autograd.grad`` would also follow each argument's history back to a weight, through
    the segments before, which the outer backward pass does as well: each gradient would
    count twice. The gate cuts that path for the segment's own ``autograd.grad`` and opens
    afterwards, for the gradient of the gradients.
    """

    @staticmethod
    def forward(ctx: Any, gate: _Gate, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.gate = gate
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        return None, grad if ctx.gate.open else None


# -- the graph ------------------------------------------------------------------------


class _Reached:
    """What a walk of a graph reached beyond its stops: ``leaves``, the leaf tensors (their
    ``AccumulateGrad``), and ``outer_nodes``, the nodes whose inputs it did not follow."""

    def __init__(self) -> None:
        self.leaves: list[torch.Tensor] = []
        self.outer_nodes: list[Any] = []


def _reached(outputs: Iterable[torch.Tensor], stops: Sequence[torch.Tensor], before: int | None = None) -> _Reached:
    """Walk the graph from ``outputs`` back, stopping at the nodes of the tensors in ``stops``.

    Leaves not in ``stops`` are collected. With ``before``, a node made before that sequence
    number (outside the segment) is collected in ``outer_nodes`` and not followed; without,
    every node is followed to the leaves (``outer_nodes`` stays empty).
    """
    stop_leaves = {id(x) for x in stops if x.grad_fn is None}
    stop_nodes = {id(x.grad_fn): x.grad_fn for x in stops if x.grad_fn is not None}
    reached = _Reached()
    seen_leaves: set[int] = set()
    seen: set[int] = set(stop_nodes)
    pending = [y.grad_fn for y in outputs if y.grad_fn is not None and id(y.grad_fn) not in seen]
    held = list(pending)  # keeps the nodes' Python objects, and so their ids, alive during the walk
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)
        if variable is not None:  # AccumulateGrad: a leaf
            if id(variable) not in stop_leaves and id(variable) not in seen_leaves:
                seen_leaves.add(id(variable))
                reached.leaves.append(variable)
            continue
        if before is not None and node._sequence_nr() <= before:
            reached.outer_nodes.append(node)
            continue
        for child, _ in node.next_functions:
            if child is not None and id(child) not in seen:
                held.append(child)
                pending.append(child)
    return reached


def _sequence_number() -> int:
    """The sequence number of the autograd node made last on this thread (nodes made later have larger ones)."""
    return torch.empty((), requires_grad=True).clone().grad_fn._sequence_nr()


def _check_reaches_only(outputs: list[torch.Tensor], stops: list[torch.Tensor], closed_over: Sequence[Any]) -> None:
    unexpected = _reached(outputs, stops=stops).leaves
    if unexpected:
        shapes = ", ".join(str(tuple(x.shape)) for x in unexpected)
        raise RuntimeError(
            "rnnscan.rnn: with `remat`, `step_function` must use the same tensors that need a "
            "gradient in every segment of the loop: a recomputed segment used a tensor of shape "
            f"{shapes} that the first segment did not use ({len(closed_over)} did). Pass it in "
            "`constants`, or call with remat=False."
        )


# -- the state a recomputation restores -------------------------------------------------


def _cuda_devices(tensors: Iterable[torch.Tensor]) -> list[int]:
    return sorted({x.device.index for x in tensors if x.device.type == "cuda"})


def _random_state(tensors: Sequence[torch.Tensor]) -> tuple[Any, list[int], list[Any]]:
    devices = _cuda_devices(tensors)
    return torch.get_rng_state(), devices, [torch.cuda.get_rng_state(d) for d in devices]


def _autocast_state(tensors: Sequence[torch.Tensor]) -> dict[str, Any]:
    device_type = tensors[0].device.type if tensors else "cpu"
    if device_type not in ("cpu", "cuda"):
        return {}
    return {
        "device_type": device_type,
        "enabled": torch.is_autocast_enabled(device_type),
        "dtype": torch.get_autocast_dtype(device_type),
        "cache_enabled": torch.is_autocast_cache_enabled(),
    }


@contextlib.contextmanager
def _restored(recipe: _Recipe) -> Any:
    """The RNG state of the forward pass (restored afterwards), and its autocast state."""
    cpu_state, devices, device_states = recipe.random_state
    autocast = torch.autocast(**recipe.autocast) if recipe.autocast else contextlib.nullcontext()
    with torch.random.fork_rng(devices=devices), autocast:
        torch.set_rng_state(cpu_state)
        for device, state in zip(devices, device_states):
            torch.cuda.set_rng_state(state, device)
        yield
