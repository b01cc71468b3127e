"""One short training loop per framework: gradients of the shared loss and an Adam update.

Every trainer starts from the same NumPy weights and offers the same three calls:
``train_step(batch, lr) -> loss``, ``evaluate(batch) -> (nats, count)`` and
``advance(h, tokens, indent) -> (logits, h)`` for generating text.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .._frameworks import ops as framework_ops
from ._data import Batch
from ._model import Params, forward, loss_terms, mean_loss

BETAS = (0.9, 0.999)
EPS = 1e-8
CLIP = 1.0  #: global gradient-norm clip


class Trainer(Protocol):
    def train_step(self, batch: Batch, lr: float) -> float: ...

    def evaluate(self, batch: Batch) -> tuple[float, float]: ...

    def advance(self, h: np.ndarray | None, tokens: np.ndarray, indent: np.ndarray) -> tuple[np.ndarray, Any]: ...


def _arrays(ops: Any, batch: Batch) -> tuple[Any, Any, Any, Any]:
    mask = batch.mask.astype(np.float32)
    return tuple(ops.asarray(a) for a in (batch.inputs, batch.targets, mask, batch.indent))  # type: ignore[return-value]


class NumpyModel:
    """Forward only: NumPy has no automatic differentiation, so it cannot train."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        self.ops = framework_ops("numpy")
        self.params: Params = params

    def train_step(self, batch: Batch, lr: float) -> float:
        raise NotImplementedError("NumPy has no automatic differentiation")

    def evaluate(self, batch: Batch) -> tuple[float, float]:
        total, count = loss_terms(self.ops, self.params, *_arrays(self.ops, batch))
        return float(total), float(count)

    def advance(self, h: Any, tokens: np.ndarray, indent: np.ndarray) -> tuple[np.ndarray, Any]:
        logits, h = forward(self.ops, self.params, tokens, indent, h0=h)
        return np.asarray(logits[:, -1]), h


class JaxTrainer:
    """``jax.jit`` over ``value_and_grad`` and a hand-written Adam on the parameter dict."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        import jax
        import jax.numpy as jnp

        ops = self.ops = framework_ops("jax")
        self.params = {k: jnp.asarray(v) for k, v in params.items()}
        zeros = {k: jnp.zeros_like(v) for k, v in self.params.items()}
        self.opt = (zeros, zeros, jnp.zeros((), jnp.int32))

        def update(params: Params, opt: Any, inputs: Any, targets: Any, mask: Any, indent: Any, lr: Any) -> Any:
            loss, grads = jax.value_and_grad(mean_loss, argnums=1)(ops, params, inputs, targets, mask, indent)
            norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))
            grads = jax.tree.map(lambda g: g * jnp.minimum(1.0, CLIP / (norm + 1e-6)), grads)
            m, v, t = opt
            t = t + 1
            m = jax.tree.map(lambda m, g: BETAS[0] * m + (1 - BETAS[0]) * g, m, grads)
            v = jax.tree.map(lambda v, g: BETAS[1] * v + (1 - BETAS[1]) * g * g, v, grads)
            scale = lr * jnp.sqrt(1 - BETAS[1] ** t) / (1 - BETAS[0] ** t)
            params = jax.tree.map(lambda p, m, v: p - scale * m / (jnp.sqrt(v) + EPS), params, m, v)
            return params, (m, v, t), loss

        self._update = jax.jit(update)
        self._evaluate = jax.jit(lambda p, *b: loss_terms(ops, p, *b))
        self._advance = jax.jit(lambda p, h, tokens, indent: forward(ops, p, tokens, indent, h0=h))

    def train_step(self, batch: Batch, lr: float) -> float:
        self.params, self.opt, loss = self._update(self.params, self.opt, *_arrays(self.ops, batch), np.float32(lr))
        return float(loss)

    def evaluate(self, batch: Batch) -> tuple[float, float]:
        total, count = self._evaluate(self.params, *_arrays(self.ops, batch))
        return float(total), float(count)

    def advance(self, h: Any, tokens: np.ndarray, indent: np.ndarray) -> tuple[np.ndarray, Any]:
        if h is None:
            h = np.zeros((len(tokens), self.params["recurrent"].shape[0]), np.float32)
        logits, h = self._advance(self.params, h, tokens, indent)
        return np.asarray(logits[:, -1]), h


class TorchTrainer:
    """Eager PyTorch: ``loss.backward()`` through rnnscan's loop and ``torch.optim.Adam``."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        import torch

        # The demo's matrices are tiny: one intra-op thread is as fast, and on a busy
        # machine with few cores more threads spin against each other (measured on
        # 2 shared cores: 0.09 s per step with one thread, 0.8 s with two).
        torch.set_num_threads(1)
        self.torch = torch
        self.ops = framework_ops("torch")
        self.params = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        self.optimizer = torch.optim.Adam(self.params.values(), betas=BETAS, eps=EPS)

    def train_step(self, batch: Batch, lr: float) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad()
        loss = mean_loss(self.ops, self.params, *_arrays(self.ops, batch))
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.params.values(), CLIP)
        self.optimizer.step()
        return float(loss.detach())

    def evaluate(self, batch: Batch) -> tuple[float, float]:
        with self.torch.no_grad():
            total, count = loss_terms(self.ops, self.params, *_arrays(self.ops, batch))
        return float(total), float(count)

    def advance(self, h: Any, tokens: np.ndarray, indent: np.ndarray) -> tuple[np.ndarray, Any]:
        with self.torch.no_grad():
            logits, h = forward(self.ops, self.params, self.ops.asarray(tokens), self.ops.asarray(indent), h0=h)
        return logits[:, -1].numpy(), h


class TensorflowTrainer:
    """``tf.function`` over a ``GradientTape`` and a hand-written Adam on ``tf.Variable``s."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        import tensorflow as tf

        ops = self.ops = framework_ops("tensorflow")
        self.params = {k: tf.Variable(v, name=k) for k, v in params.items()}
        names = list(self.params)
        variables = [self.params[k] for k in names]
        m = [tf.Variable(tf.zeros_like(v)) for v in variables]
        v2 = [tf.Variable(tf.zeros_like(v)) for v in variables]
        t = tf.Variable(0.0)

        @tf.function(autograph=False)
        def update(inputs: Any, targets: Any, mask: Any, indent: Any, lr: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = mean_loss(ops, self.params, inputs, targets, mask, indent)
            grads, _ = tf.clip_by_global_norm(tape.gradient(loss, variables), CLIP)
            t.assign_add(1.0)
            scale = lr * tf.sqrt(1 - BETAS[1] ** t) / (1 - BETAS[0] ** t)
            for p, g, m_i, v_i in zip(variables, grads, m, v2):
                g = tf.convert_to_tensor(g)  # the embedding tables' gradients come as IndexedSlices
                m_i.assign(BETAS[0] * m_i + (1 - BETAS[0]) * g)
                v_i.assign(BETAS[1] * v_i + (1 - BETAS[1]) * g * g)
                p.assign_sub(scale * m_i / (tf.sqrt(v_i) + EPS))
            return loss

        self._update = update
        self._evaluate = tf.function(autograph=False)(lambda *b: loss_terms(ops, self.params, *b))
        self._advance = tf.function(autograph=False)(
            lambda h, tokens, indent: forward(ops, self.params, tokens, indent, h0=h)
        )

    def train_step(self, batch: Batch, lr: float) -> float:
        return float(self._update(*_arrays(self.ops, batch), np.float32(lr)))

    def evaluate(self, batch: Batch) -> tuple[float, float]:
        total, count = self._evaluate(*_arrays(self.ops, batch))
        return float(total), float(count)

    def advance(self, h: Any, tokens: np.ndarray, indent: np.ndarray) -> tuple[np.ndarray, Any]:
        if h is None:
            h = np.zeros((len(tokens), self.params["recurrent"].shape[0]), np.float32)
        logits, h = self._advance(h, tokens, indent)
        return logits[:, -1].numpy(), h


TRAINERS: dict[str, type] = {
    "numpy": NumpyModel,
    "jax": JaxTrainer,
    "torch": TorchTrainer,
    "tensorflow": TensorflowTrainer,
}
