"""``parallel=True``: the masked recurrence solved at every time step at once, by Newton iterations.

The trajectory ``H`` (each state leaf ``(T, batch, ...)``, time-major, in processing order) is the
fixed point of ``H_t = G_t(H_{t-1})``, ``G_t(h) = where(m_t, f(h, x_t), h)`` (the masked step;
``H_{-1}`` the initial states). One iteration evaluates the step at every ``t`` at once (one batched
call, :func:`_batched`) with its Jacobian in the states ``J_t`` (one JVP per state leaf: exact where
new states depend on the states elementwise, block-diagonal across leaves of one shape), checks the
residual ``max |H - G(shift H)|`` against a tolerance derived from the dtype, and solves the linear
recurrence ``H_t = J_t H_{t-1} + (G_t - J_t H^old_{t-1})`` by a log-depth scan
(:meth:`Backend.linear_scan`). After ``k`` iterations the first ``k`` steps are exact, whatever the
Jacobian; a linear step converges in one.

* The loop's control stays in the framework (:meth:`Backend.while_loop`, :meth:`Backend.cond`):
  nothing here reads a value on the host.
* Gradients: at the fixed point, one more Newton step from the converged ``H`` held constant
  (stop-gradient) has the implicit-function gradient (its backward pass is a reverse linear scan).
  That needs the exact Jacobian: a probe JVP with an uneven tangent checks that the step is
  elementwise in its states (on backends with autodiff).
* Not elementwise, or not converged in ``max_iterations``: the sequential loop runs instead, and a
  ``RuntimeWarning`` says so (once per message). Non-finite values of an update are replaced by the
  step's own value, else the previous guess (an overflowing tail must not poison the exact prefix).
* Outputs come from one batched step call on the converged states (none where the outputs are the
  states); a masked step's output repeats the previous one (a linear scan) or is zeros.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._masked import shape_masks
from ._step import Leaves, UserStep

if TYPE_CHECKING:
    from ._loop import LoopCall
    from .backends import Backend

MAX_ITERATIONS = 32  #: Newton iterations before the sequential loop takes over (diagonal GRU/LSTM need <= 8)
PROBE_STEPS = 16  #: time steps on which the Jacobian's structure is checked


@dataclasses.dataclass(frozen=True)
class Options:
    """``max_iterations``: Newton updates at most. ``tolerance``: the residual allowed, relative to
    ``1 + max |state|`` (None: ``eps ** 0.75`` of each state's dtype)."""

    max_iterations: int = MAX_ITERATIONS
    tolerance: float | None = None


def loop(call: LoopCall, backend: Backend, states: Leaves, inputs: Leaves, mask: Any | None) -> Any:
    """``call``'s result as :class:`LoopCall` gives it: ``(states, last output, outputs or None, output spec)``."""
    with backend.random_state_kept():
        step, shape, _, _ = call.first_call(backend, states, [x[0] for x in inputs])
    options: Options = call.parallel
    time_steps = backend.shape(inputs[0])[0]
    solver = _Solver(backend, _batched(backend, step, inputs, call.batch), states, mask, options, time_steps)
    solver.probe_batched = _batched(backend, step, [x[:PROBE_STEPS] for x in inputs], call.batch)
    finish = functools.partial(
        solver.finish, aliases=shape.aliases, zero_output_for_mask=call.zero_output_for_mask, ranks=shape.output_ranks
    )
    if not states:
        new_states, last, outputs = finish([], [])
    else:
        with backend.no_grad():
            H, _, J, ok, count, elementwise = solver.solve()
        H = [backend.stop_gradient(h) for h in H]
        J = [[[backend.stop_gradient(x) for x in row] for row in block] for block in J]
        backend.on_host(functools.partial(_report, options.max_iterations), count, ok, elementwise)

        def fast() -> tuple[Leaves, Leaves, Leaves]:
            new_states, last, outputs = finish(H, J)
            return new_states, last, outputs if call.return_all_outputs else []

        def sequential() -> tuple[Leaves, Leaves, Leaves]:
            new_states, last, outputs, _ = dataclasses.replace(call, parallel=None)(backend, states, inputs, mask)
            return new_states, last, outputs if outputs is not None else []

        new_states, last, outputs = backend.cond(ok & elementwise, fast, sequential)
    return new_states, last, outputs if call.return_all_outputs else None, shape.output_spec


def _batched(backend: Backend, step: UserStep, inputs: Leaves, batch: Any) -> Callable[[Leaves], Any]:
    """``step`` at every time step at once: previous states ``(T, batch, ...)`` -> ``(outputs, new states)``.

    JAX maps the step over time (``vmap``); elsewhere it runs once on ``(T * batch, ...)`` rows, a
    constant array whose first axis has the batch size repeated for every step (a per-sample constant).
    """
    mapped = backend.map_over_time(lambda s, x: step(s, x))
    if mapped is not None:
        return lambda previous: mapped(previous, inputs)
    time_steps = backend.shape(inputs[0])[0]
    size = backend.time_steps(inputs[0][0])  # the batch size: an int, or a scalar where unknown

    def rows(x: Any) -> Any:
        return backend.unfold_time(x)

    constants = [
        rows(backend.repeat_time(c, time_steps)) if backend.shape(c)[:1] == (batch,) else c
        for c in step.constant_arrays(backend)
    ]
    step = step.with_constant_arrays(backend, constants)
    xs = [rows(x) for x in inputs]

    def call(previous: Leaves) -> Any:
        outputs, new_states = step([rows(h) for h in previous], xs)
        return [backend.fold_time(o, size) for o in outputs], [backend.fold_time(s, size) for s in new_states]

    return call


class _Solver:
    """The Newton iteration on one call's arrays. Leaves of one shape and dtype form a group whose
    Jacobian is a ``k x k`` block per element; ``J`` holds one such block (lists) per group."""

    probe_batched: Callable  # the batched step on the first PROBE_STEPS steps

    def __init__(
        self, backend: Backend, batched: Callable, states: Leaves, mask: Any | None, options: Options, time_steps: int
    ):
        self.backend, self.batched, self.states, self.options = backend, batched, states, options
        self.time_steps = time_steps
        ranks = [len(backend.shape(s)) for s in states]
        masks = shape_masks(mask, ranks) if mask is not None else None
        self.masks = [masks[r] for r in ranks] if masks is not None else None
        self.mask = mask
        groups: dict[Any, list[int]] = {}
        for i, s in enumerate(states):
            groups.setdefault((backend.shape(s), str(s.dtype)), []).append(i)
        self.groups = list(groups.values())
        tol = options.tolerance
        self.tolerances = [tol if tol is not None else backend.epsilon(s) ** 0.75 for s in states]

    def shift(self, H: Leaves) -> Leaves:
        """The previous states of every step: ``[h0, H_0, ..., H_{T-2}]``."""
        return [self.backend.concat_time([self.backend.expand_front(s), h[:-1]]) for s, h in zip(self.states, H)]

    def new_states(self, *previous: Any) -> Leaves:
        return self.batched(list(previous))[1]

    def masked(self, i: int, new: Any, old: Any) -> Any:
        return new if self.masks is None else self.backend.where(self.masks[i], new, old)

    def evaluate(self, H: Leaves) -> tuple[Leaves, list, Any, list]:
        """At ``H``: ``G`` (the masked step), the masked Jacobian blocks, whether ``H`` is converged,
        and the unmasked Jacobian columns (``columns[j][i]``: d new state i / d state j)."""
        b = self.backend
        previous = self.shift(H)
        columns, new = [], None
        for j in range(len(H)):
            tangents = [b.ones_like(p) if i == j else b.zeros_like(p) for i, p in enumerate(previous)]
            new, column = b.jvp(self.new_states, previous, tangents)
            columns.append(column)
        G = [self.masked(i, n, p) for i, (n, p) in enumerate(zip(new, previous))]
        J = []
        for group in self.groups:
            J.append([[self._masked_jacobian(i, j, columns[j][i]) for j in group] for i in group])
        ok = None
        for g, h, tol in zip(G, H, self.tolerances):
            leaf_ok = b.max_abs(g - h) <= tol * (1 + b.max_abs(g))
            ok = leaf_ok if ok is None else ok & leaf_ok
        return G, J, ok, columns

    def _masked_jacobian(self, i: int, j: int, x: Any) -> Any:
        if self.masks is None:
            return x
        return self.backend.where(self.masks[i], x, (self.backend.ones_like if i == j else self.backend.zeros_like)(x))

    def newton(self, H: Leaves, G: Leaves, J: list, guard: bool = True) -> Leaves:
        """The trajectory solving ``H_t = J_t H_{t-1} + G_t - J_t H^old_{t-1}`` (``H_{-1}`` the initial states)."""
        b = self.backend
        previous = self.shift(H)
        new = list(H)
        for group, block in zip(self.groups, J):
            # step 0 starts from the initial states themselves: G_0 (its A_0 is zero)
            if guard:  # a trust region: Jacobian entries within [-1, 1] keep products over long spans bounded
                block = [[b.clip(x, -1.0, 1.0) for x in row] for row in block]
            a = [[b.concat_time([b.zeros_like(x[:1]), x[1:]]) for x in row] for row in block]
            rhs = [G[i] - sum_of(a[r][c] * previous[j] for c, j in enumerate(group)) for r, i in enumerate(group)]
            for i, h in zip(group, b.linear_scan(a, rhs)):
                if guard:  # an overflowing update keeps the previous guess there (the exact prefix stays)
                    h = b.where(b.is_finite(h), h, H[i])
                new[i] = h
        return new

    def elementwise(self, H: Leaves, columns: list) -> Any:
        """Whether the step is elementwise in its states (within each group): ``J r`` equals the
        blocks applied to ``r``, for an uneven tangent ``r``, on the first :data:`PROBE_STEPS` steps
        (the step treats every row alike). True without autodiff (no gradient to get right)."""
        b = self.backend
        if not b.differentiable:
            return b.scalar(True, H[0])
        n = min(PROBE_STEPS, self.time_steps)
        previous = [p[:n] for p in self.shift(H)]
        uneven = [(b.index_pattern(p) * 0.6180339887) % 1 + 0.5 for p in previous]
        _, product = b.jvp(lambda *p: self.probe_batched(list(p))[1], previous, uneven)
        ok = None
        for group in self.groups:
            for i in group:
                expected = sum_of(columns[j][i][:n] * uneven[j] for j in group)
                leaf_ok = b.max_abs(product[i] - expected) <= self.tolerances[i] * (1 + b.max_abs(expected))
                ok = leaf_ok if ok is None else ok & leaf_ok
        return ok

    def solve(self) -> tuple[Leaves, Leaves, list, Any, Any, Any]:
        """``(H, G, J, converged, Newton updates taken, elementwise)`` from the initial states at every step."""
        b = self.backend
        H = [b.repeat_time(s, self.time_steps) for s in self.states]
        G, J, ok, columns = self.evaluate(H)
        elementwise = self.elementwise(H, columns)
        limit = self.options.max_iterations

        def cond(carry: Any) -> Any:
            _, _, _, ok, count = carry
            return ~ok & elementwise & (count < limit)

        def body(carry: Any) -> Any:
            H, G, J, _, count = carry
            H = self.newton(H, G, J)
            G, J, ok, _ = self.evaluate(H)
            return H, G, J, ok, count + 1

        H, G, J, ok, count = b.while_loop(cond, body, (H, G, J, ok, b.scalar(0, self.states[0])))
        return H, G, J, ok, count, elementwise

    def finish(self, H: Leaves, J: list, *, aliases: Any, zero_output_for_mask: bool, ranks: Any) -> Any:
        """``(states, last output, outputs)`` from the converged ``H``: one Newton step from ``H`` held
        constant, for the gradient (skipped where none is recorded), then the outputs."""
        if H and self.backend.records_gradients():
            previous = self.shift(H)
            G = [self.masked(i, n, p) for i, (n, p) in enumerate(zip(self.new_states(*previous), previous))]
            H = self.newton(H, G, J, guard=False)
        if aliases is not None:
            outputs = [H[i] for i in aliases]
        else:
            outputs = self.batched(self.shift(H))[0]
        if self.mask is not None:
            masks = shape_masks(self.mask, ranks)
            outputs = [self._masked_output(masks[r], o, zero_output_for_mask) for r, o in zip(ranks, outputs)]
        return [h[-1] for h in H], [o[-1] for o in outputs], outputs

    def _masked_output(self, m: Any, o: Any, zero_output_for_mask: bool) -> Any:
        """A masked step's output: zeros, or the previous output (zeros before the first kept step)."""
        b = self.backend
        zeros = b.zeros_like(o)
        kept = b.where(m, o, zeros)
        if zero_output_for_mask:
            return kept
        return b.linear_scan([[b.where(m, zeros, zeros + 1)]], [kept])[0]


def sum_of(terms: Iterator[Any] | list[Any]) -> Any:
    """The sum of arrays (no leading ``0 +``)."""
    total = None
    for term in terms:
        total = term if total is None else total + term
    return total


# -- what happened, on the host --------------------------------------------------------------

_recorders: list[list[dict[str, Any]]] = []


@contextlib.contextmanager
def recorded() -> Iterator[list[dict[str, Any]]]:
    """Collect ``{"iterations", "converged", "elementwise"}`` of every parallel call run inside (tests, bench).
    Under ``jax.jit`` the record arrives when the computation runs (``jax.effects_barrier()`` waits for it)."""
    records: list[dict[str, Any]] = []
    _recorders.append(records)
    try:
        yield records
    finally:
        _recorders.remove(records)


def _report(max_iterations: int, count: Any, ok: Any, elementwise: Any) -> None:
    record = {"iterations": int(count.max()), "converged": bool(ok.all()), "elementwise": bool(elementwise.all())}
    for records in _recorders:
        records.append(record)
    if not record["elementwise"]:
        warnings.warn(
            "rnnscan.rnn: parallel=True needs a step whose new states depend on its states elementwise (each "
            "unit on the same unit of each state of its shape); this step mixes them: the sequential loop ran "
            "instead.",
            RuntimeWarning,
            stacklevel=2,
        )
    elif not record["converged"]:
        warnings.warn(
            f"rnnscan.rnn: parallel=True did not converge within max_iterations={max_iterations} Newton "
            "iterations: the sequential loop ran instead.",
            RuntimeWarning,
            stacklevel=2,
        )
