"""PyTorch: a lean eager Python loop; ``torch._higher_order_ops.scan`` under ``torch.compile``.

Eagerly, autograd records the loop as it runs. Under ``torch.compile`` the loop
becomes one scan higher-order op whose body is traced once, so that compile time
does not grow with the number of time steps (measured on the masked SimpleRNN of
``benchmarks/simple_rnn.py`` at T=200: about 12 s to compile forward and backward,
against about 470 s for an unrolled trace). Either way the masked update is the
core's :class:`rnnscan._step.Step`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import optree
import torch
from torch.overrides import is_tensor_like

from . import _compat
from ._base import Backend, python_loop

if TYPE_CHECKING:
    from .._step import Step

Result = tuple[list[Any], list[Any], "list[Any] | None"]


class TorchBackend(Backend):
    name = "torch"

    #: the loop traced by ``torch.compile``: "scan" (the scan higher-order op) or "unroll"
    compiled_loop: str = "scan"

    def owns(self, x: Any) -> bool:
        # tensors and their subclasses (nn.Parameter), and what torch's own dispatch
        # treats as tensors: objects with __torch_function__ (keras.Variable)
        return isinstance(x, torch.Tensor) or is_tensor_like(x)

    def asarray(self, x: Any, like: Any = None) -> Any:
        if not isinstance(x, torch.Tensor) and is_tensor_like(x):
            # through the object's own __torch_function__: a view autograd reaches it by
            return torch.reshape(x, tuple(x.shape))
        return torch.as_tensor(x, device=None if like is None else like.device)

    def registered_node(self, x: Any) -> tuple[Any, Any] | None:
        return _compat.torch_registered_node(x)

    def host_values(self, x: Any) -> Any:
        return x.detach().cpu().numpy() if _readable(x) else None

    def is_bool(self, x: Any) -> bool:
        return x.dtype == torch.bool

    def is_integer(self, x: Any) -> bool:
        return not (x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool)

    def is_numeric(self, x: Any) -> bool:
        return x.dtype != torch.bool

    def swap_batch_time(self, x: Any) -> Any:
        return x.transpose(0, 1)

    def flip_time(self, x: Any) -> Any:
        return x.flip(0)

    def reshape(self, x: Any, shape: Sequence[int]) -> Any:
        return x.reshape(shape)

    def expand_front(self, x: Any) -> Any:
        return x.unsqueeze(0)

    def where(self, condition: Any, x: Any, y: Any) -> Any:
        return torch.where(condition, x, y)

    def zeros_like(self, x: Any) -> Any:
        return torch.zeros_like(x)

    def stack(self, xs: Sequence[Any]) -> Any:
        return torch.stack(xs)

    def unstack(self, x: Any) -> Sequence[Any]:
        return x.unbind(0)

    def arange(self, n: Any, like: Any) -> Any:
        return torch.arange(n, dtype=like.dtype, device=like.device)

    def as_index(self, x: Any) -> Any:
        return x.long()

    def max_length(self, lengths: Any) -> Any:
        return torch.cat([lengths, lengths.new_zeros(1)]).max()

    def all_true_per_step(self, mask: Any) -> list[bool] | None:
        # Read to the host only where the mask already is there (CPU) and is concrete:
        # on an accelerator this would be a synchronisation before the loop.
        if mask.device.type != "cpu" or not _readable(mask):
            return None
        return mask.all(dim=1).tolist()

    def cumulative_any(self, mask: Any) -> Any:
        return mask.cumsum(0) > 0

    def scan(self, step: Step, states: list[Any], inputs: list[Any], mask: Any | None, keep_all: bool) -> Result:
        """``inputs`` ``(time, batch, ...)``, ``mask`` ``(time, batch)`` bool or None; see :meth:`Backend.scan`."""
        if self.compiled_loop == "scan" and torch.compiler.is_compiling():
            return _scan_op_loop(step, states, inputs, mask, keep_all)
        return python_loop(self, step, states, inputs, mask, keep_all)


def _readable(x: Any) -> bool:
    """``x``'s values may be read on the host: not while compiling or tracing, and not
    for a tensor whose values are hidden (vmap, fake, meta)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting():
        return False
    return not _compat.torch_values_are_hidden(x)


class _CopyGradient(torch.autograd.Function):
    """The identity, whose backward copies the incoming gradient.

    The gradients flowing into the scan op may alias each other (autograd gives
    ``x.sum() + y.sum()`` one expanded tensor for both), and in torch 2.13 the op's
    backward refuses aliased arguments ("scan might be aliasing the input or the
    output!"). Wrapping the op's results in this makes each gradient its own tensor.
    """

    @staticmethod
    def forward(x: Any) -> Any:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, gradient: Any) -> Any:
        return gradient.clone()


def _scan(body: Any, init: Any, xs: list[Any]) -> Any:
    """``torch._higher_order_ops.scan`` with each result's gradient a tensor of its own."""
    from torch._higher_order_ops.scan import scan

    return optree.tree_map(_CopyGradient.apply, scan(body, init, xs))


@torch.compiler.assume_constant_result
def _prepare_compilation() -> bool:
    """Run eagerly while Dynamo traces (see :func:`_compat.torch_prepare_scan_compilation`)."""
    _compat.torch_prepare_scan_compilation()
    return True


def _copies(leaves: list[Any]) -> list[Any]:
    """A copy of every leaf. The scan op refuses a body whose results alias each other
    or its arguments; and in torch 2.13 inductor refuses a carry that autograd also
    saves for the backward (``tanh``'s output, say) unless the carry is a copy too
    (pytorch/pytorch#195977)."""
    return [leaf.clone() for leaf in leaves]


def _scan_op_loop(step: Step, states: list[Any], inputs: list[Any], mask: Any | None, keep_all: bool) -> Result:
    """Under ``torch.compile``: the loop as one scan higher-order op over every time step.

    The first step is also traced on its own, for the output's structure, shapes
    and dtypes the op's carry needs (its result is unused, so the compiler drops
    it). A step whose outputs are its states carries the states alone (see
    :meth:`Step.outputs_from_states`).
    """
    _prepare_compilation()
    # The op slices its xs along time; contiguous ones keep each step's slice dense.
    xs = [x.contiguous() for x in inputs] + ([] if mask is None else [mask.contiguous()])
    n_inputs = len(inputs)

    def split(xs_t: list[Any]) -> tuple[list[Any], Any]:
        return xs_t[:n_inputs], (xs_t[n_inputs] if mask is not None else None)

    output, new_states = step.call(states, [x[0] for x in inputs])
    aliases = step.output_aliases(output, new_states)
    if aliases is not None and keep_all:  # (without ys, inductor in torch 2.13 fails on this carry)

        def states_body(states: list[Any], xs_t: list[Any]) -> Any:
            x_t, mask_t = split(xs_t)
            output, new_states = step.call(states, x_t)
            if step.output_aliases(output, new_states) != aliases:
                raise ValueError(
                    "rnnscan.rnn: under torch.compile, `step_function` must return its states as its outputs "
                    "at every step when it does at the first."
                )
            states = new_states if mask_t is None else step.mask_states(states, new_states, mask_t)
            return _copies(states), _copies([states[i] for i in aliases])

        states, ys = _scan(states_body, _copies(states), xs)
        last, outputs = step.outputs_from_states(states, ys, aliases, mask)
        return states, last, outputs

    def body(carry: Any, xs_t: list[Any]) -> Any:
        states, prev_output = carry
        x_t, mask_t = split(xs_t)
        states, output = step(states, prev_output, x_t, mask_t)
        return (_copies(states), _copies(output)), (_copies(output) if keep_all else [])

    # zeros: the previous output before the first step
    initial = (_copies(states), [torch.zeros_like(o) for o in output])
    (states, output), outputs = _scan(body, initial, xs)
    return states, output, outputs if keep_all else None


BACKEND = TorchBackend()
