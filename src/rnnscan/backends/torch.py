"""PyTorch: a lean eager Python loop; ``torch._higher_order_ops.scan`` under ``torch.compile``.

Eagerly, autograd records the loop as it runs. Under ``torch.compile`` the loop
becomes one scan higher-order op whose body is traced once, so that compile time
does not grow with the number of time steps (measured on the masked SimpleRNN of
``python -m rnnscan bench --workloads W1`` at T=200: about 6 s to compile forward and backward (2 cores),
against about 470 s for an unrolled trace). Either way the masked update is the
loop of :mod:`rnnscan._masked`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import optree
import torch
from torch.overrides import is_tensor_like

from . import _compat, _torch_segment
from ._base import Backend


class TorchBackend(Backend):
    name = "torch"

    #: the loop under ``torch.compile``: "scan", the scan op (its body traced once), or "python",
    #: the Python loop traced step by step (for a step the scan op cannot capture: Keras's
    #: ``Layer.__call__``; set by ``rnnscan.keras`` on the torch backend)
    compiled_loop: str = "scan"

    def owns(self, x: Any) -> bool:
        # tensors and their subclasses (nn.Parameter), and what torch's own dispatch
        # treats as tensors: objects with __torch_function__ (keras.Variable)
        return isinstance(x, torch.Tensor) or is_tensor_like(x)

    def device_of(self, x: Any) -> Any:
        return None if x is None else x.device

    def asarray(self, x: Any, *, device: Any = None) -> Any:
        if not isinstance(x, torch.Tensor) and is_tensor_like(x):
            # through the object's own __torch_function__: a view autograd reaches it by
            return torch.reshape(x, tuple(x.shape))
        return torch.as_tensor(x, device=device)

    def registered_node(self, x: Any) -> tuple[Any, Any] | None:
        return _compat.torch_registered_node(x)

    def is_symbolic_int(self, x: Any) -> bool:
        return isinstance(x, torch.SymInt)

    def casts_up(self, new: Any, old: Any) -> bool:
        # Under autocast a step computes in a lower precision (bfloat16, float16) than the float32
        # state it was given: the state is carried in its own dtype, as autocast's users expect
        return (
            torch.is_autocast_enabled(new.device.type)
            and new.dtype.is_floating_point
            and old.dtype.is_floating_point
            and torch.promote_types(new.dtype, old.dtype) == old.dtype
        )

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

    def astype(self, x: Any, dtype: Any) -> Any:
        return x.to(dtype)

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

    def kept_per_step(self, mask: Any) -> tuple[list[bool], list[bool]] | None:
        # Read to the host only where the mask already is there (CPU) and is concrete:
        # on an accelerator this would be a synchronisation before the loop.
        if mask.device.type != "cpu" or not _readable(mask):
            return None
        return mask.all(dim=1).tolist(), mask.any(dim=1).tolist()

    def concat_time(self, xs: list[Any]) -> Any:
        return torch.cat(xs)

    def any_over_time(self, mask: Any) -> Any:
        return mask.any(dim=0)

    def false_like(self, x: Any) -> Any:
        return torch.zeros(x.shape, dtype=torch.bool, device=x.device)

    # -- the loop ----------------------------------------------------------
    def runs_python_loops(self) -> bool:
        return self.compiled_loop == "python" or not torch.compiler.is_compiling()

    def scan(self, body: Any, carry: Any, xs: list[Any], unroll: int = 1) -> tuple[Any, list[Any]]:
        """Under ``torch.compile``: the scan higher-order op, its body traced once."""
        _prepare_compilation()

        # torch 2.13's scan op miscounts its tangents for a bool carry (the states body's kept
        # flag): such leaves travel as float 0/1, bools again inside the body and after the op.
        # The carry (a tuple of lists) is flattened by hand: non-strict torch.export traces the
        # body with Dynamo, which cannot call the methods of an optree spec made outside it.
        sizes = [len(part) for part in carry]
        bools = [leaf.dtype == torch.bool for part in carry for leaf in part]

        def rebuilt(leaves: list[Any]) -> Any:
            parts, start = [], 0
            for size in sizes:
                parts.append(list(leaves[start : start + size]))
                start += size
            return tuple(parts)

        def as_bool(carry: Any) -> Any:
            leaves = [leaf for part in carry for leaf in part]
            return rebuilt([leaf > 0 if b else leaf for leaf, b in zip(leaves, bools)])

        def as_float(carry: Any) -> Any:
            leaves = [leaf for part in carry for leaf in part]
            return rebuilt([leaf.float() if b else leaf for leaf, b in zip(leaves, bools)])

        def copied_body(carry: Any, xs_t: list[Any]) -> Any:
            carry, ys = body(as_bool(carry), list(xs_t))
            # and inductor fails on a body with no ys ("getitem is not an OpOverload"): one
            # scalar per step stands in, dropped after the op
            return _copies(as_float(carry)), _copies(ys) if ys else [xs_t[0].new_zeros(())]

        # The op slices its xs along time; contiguous ones keep each step's slice dense.
        carry, ys = _scan(copied_body, _copies(as_float(carry)), [x.contiguous() for x in xs])
        return as_bool(carry), ys if ys[0].dim() > 1 else []

    def random_state_kept(self) -> Any:
        if torch.compiler.is_compiling():
            return contextlib.nullcontext()
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        return torch.random.fork_rng(devices=devices)

    def eagerly(self, function: Any) -> Any:
        # parallel=True under torch.compile: Dynamo fails on torch.func.jvp of the batched step
        # (torch 2.13: an internal assert in a view's forward-mode metadata), and the iteration
        # count is data-dependent anyway: the solve runs eagerly, a graph break on each side
        return torch.compiler.disable(function) if torch.compiler.is_compiling() else function

    def remats(self) -> bool:
        # Under torch.compile (torch 2.13) Dynamo cannot trace a checkpointed segment around
        # the scan op's body (optree's methods inside it): the compiled loop keeps its residuals.
        # torch.func transforms refuse both of _torch_segment's paths (torch.utils.checkpoint's
        # saved-tensor hooks, and an autograd.Function without setup_context): the same there.
        return not torch.compiler.is_compiling() and not _compat.torch_in_functorch_transform()

    def checkpoint(self, function: Any) -> Any:
        # dropout draws the same in the recomputation: the RNG state is kept (``_torch_segment``)
        return _torch_segment.Segment(function)

    # -- parallel over time ----------------------------------------------------
    def jvp(self, f: Any, primals: list[Any], tangents: list[Any]) -> tuple[list[Any], list[Any]]:
        return torch.func.jvp(lambda *p: f(*p), tuple(primals), tuple(tangents))

    def linear_scan(self, a: list[list[Any]], b: list[Any]) -> list[Any]:
        if len(b) > 1:
            return super().linear_scan(a, b)
        x = b[0]
        factor = a[0][0].expand_as(x)
        return [_diagonal_scan(factor.reshape(x.shape[0], -1), x.reshape(x.shape[0], -1)).reshape(x.shape)]

    def while_loop(self, cond: Any, body: Any, carry: Any) -> Any:
        # eager (under torch.compile: a graph break at each test, the count being data-dependent)
        while _host_bool(cond(carry)):
            carry = body(carry)
        return carry

    def cond(self, pred: Any, true_fn: Any, false_fn: Any) -> Any:
        return true_fn() if _host_bool(pred) else false_fn()

    def on_host(self, fn: Any, *arrays: Any) -> None:
        fn(*(np.asarray(a.item()) for a in arrays))

    def stop_gradient(self, x: Any) -> Any:
        return x.detach()

    def no_grad(self) -> Any:
        return torch.no_grad()

    def repeat_time(self, x: Any, n: int) -> Any:
        return x.unsqueeze(0).expand(n, *x.shape)

    def max_abs(self, x: Any) -> Any:
        return x.abs().max() if x.numel() else x.new_zeros(())

    def clip(self, x: Any, low: float, high: float) -> Any:
        return x.clamp(low, high)

    def ones_like(self, x: Any) -> Any:
        return torch.ones_like(x)

    def records_gradients(self) -> bool:
        return torch.is_grad_enabled() or _compat.torch_in_functorch_transform()

    def is_finite(self, x: Any) -> Any:
        return torch.isfinite(x)

    def scalar(self, value: Any, like: Any) -> Any:
        return torch.tensor(value, dtype=torch.bool if isinstance(value, bool) else torch.int32, device=like.device)

    def index_pattern(self, x: Any) -> Any:
        return (torch.arange(x.numel(), device=x.device) % 4093).reshape(x.shape).to(x.dtype)

    def epsilon(self, x: Any) -> float:
        return float(torch.finfo(x.dtype).eps)


def _diagonal_scan(a: Any, b: Any) -> Any:
    """``h_t = a_t h_{t-1} + b_t`` (``h_{-1} = 0``) for ``(T, N)`` tensors: the odd-even scan of
    :mod:`rnnscan._linear_scan`, each level writing its steps into one new tensor (no interleaving copies)."""
    steps = b.shape[0]
    if steps == 1:
        return b
    half = steps // 2
    a_even, a_odd = a[0 : 2 * half : 2], a[1 : 2 * half : 2]
    h_odd = _diagonal_scan(a_odd * a_even, torch.addcmul(b[1 : 2 * half : 2], a_odd, b[0 : 2 * half : 2]))
    h = torch.empty_like(b)
    h[1 : 2 * half : 2] = h_odd
    h[0] = b[0]
    if steps > 2:
        h[2::2] = torch.addcmul(b[2::2], a[2::2], h_odd[: (steps - 1) // 2])
    return h


def _host_bool(x: Any) -> bool:
    """A scalar bool tensor read on the host; a clear error where its value is hidden (``torch.func.vmap``)."""
    try:
        return bool(x)
    except RuntimeError as error:
        if "vmap" not in str(error):
            raise
        raise ValueError(
            "rnnscan.rnn: `parallel` must be False under torch.func.vmap (the number of Newton iterations "
            "depends on the values, which vmap hides); got parallel=True."
        ) from None


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


def _copies(tree: Any) -> Any:
    """A copy of every leaf. The scan op refuses a body whose results alias each other
    or its arguments; and in torch 2.13 inductor refuses a carry that autograd also
    saves for the backward (``tanh``'s output, say) unless the carry is a copy too
    (pytorch/pytorch#195977)."""
    return optree.tree_map(torch.clone, tree)


BACKEND = TorchBackend()
