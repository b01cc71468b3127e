"""Test helpers on rnnscan's one per-framework table (:mod:`rnnscan._frameworks`): each framework's
arrays made from and read back into NumPy, the few operations the test step functions use, and autodiff."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from rnnscan._frameworks import FRAMEWORKS as BACKENDS  # the backends rnnscan implements
from rnnscan._frameworks import Ops as Framework
from rnnscan._frameworks import installed
from rnnscan._frameworks import ops as framework

__all__ = ["BACKENDS", "Framework", "float64", "framework", "gradient", "installed"]


@contextlib.contextmanager
def float64(fw: Framework) -> Iterator[None]:
    """float64 arrays where the framework needs telling (JAX: x64 enabled for the block)."""
    if fw.name == "jax":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        yield


def gradient(fw: Framework, loss: Callable[..., Any], params: list[np.ndarray]) -> list[np.ndarray]:
    """d loss / d params, by the framework's own autodiff; `loss` takes and returns its arrays."""
    if fw.name == "jax":
        import jax

        return [np.asarray(g) for g in jax.grad(lambda ps: loss(*ps))([fw.asarray(p) for p in params])]
    if fw.name == "torch":
        import torch

        leaves = [torch.tensor(p, requires_grad=True) for p in params]
        loss(*leaves).backward()
        return [leaf.grad.numpy() for leaf in leaves]
    if fw.name == "tensorflow":
        import tensorflow as tf

        variables = [tf.Variable(p) for p in params]
        with tf.GradientTape() as tape:
            value = loss(*variables)
        return [g.numpy() for g in tape.gradient(value, variables)]
    raise ValueError(f"{fw.name} has no autodiff")
