"""PyTorch: a lean eager Python loop; autograd flows through it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ._base import Backend


class TorchBackend(Backend):
    name = "torch"

    def owns(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor)

    def asarray(self, x: Any, like: Any = None) -> Any:
        return torch.as_tensor(x, device=None if like is None else like.device)

    def is_bool(self, x: Any) -> bool:
        return x.dtype == torch.bool

    def is_integer(self, x: Any) -> bool:
        return not (x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool)

    def is_numeric(self, x: Any) -> bool:
        return x.dtype != torch.bool

    def all_true_per_step(self, mask: Any) -> list[bool] | None:
        # One device-to-host read before the loop; none while torch.compile traces.
        if torch.compiler.is_compiling():
            return None
        return mask.all(dim=1).tolist()

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

    def max(self, x: Any) -> Any:
        return x.max()


BACKEND = TorchBackend()
