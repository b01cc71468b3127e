"""The linear recurrence ``h_t = A_t h_{t-1} + b_t`` (``h_{-1} = 0``) over axis 0, in log-depth, on backend ops.

``A_t`` is block-diagonal elementwise: ``a[i][j]`` is the array of entries ``(i, j)`` of a ``k x k``
block per element, ``b[i]`` the array of entry ``i`` of each element's ``k``-vector. Every array is
``(T, ...)``; ``a``'s may broadcast against ``b``'s (a ``(T, batch, 1)`` factor of a ``(T, batch, units)``
vector). ``k = 1`` is the diagonal case: one ``a`` and one ``b`` per recurrence.

The affine maps ``h -> A h + b`` compose associatively, :func:`compose`; :func:`odd_even` is the
recursive odd-even scan (Blelloch's work-efficient scan laid out with slices): pair neighbours, scan
the pairs (half the length), fill the even steps in. ``2 log2 T`` rounds of a few whole-array
operations, ``O(T)`` work, any ``T`` (an odd length leaves its last step to the filling in). It needs
a static ``T``. JAX uses ``jax.lax.associative_scan`` with the same :func:`compose`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backends import Backend

Matrix = list  # list[list[array]]: a[i][j]
Vector = list  # list[array]: b[i]


def compose(earlier: tuple[Matrix, Vector], later: tuple[Matrix, Vector]) -> tuple[Matrix, Vector]:
    """``later . earlier``: ``h -> A2 (A1 h + b1) + b2 = (A2 A1) h + (A2 b1 + b2)``."""
    (a1, b1), (a2, b2) = earlier, later
    k = len(b1)
    if k == 1:
        return [[a2[0][0] * a1[0][0]]], [a2[0][0] * b1[0] + b2[0]]
    a = [[_dot([a2[i][m] for m in range(k)], [a1[m][j] for m in range(k)]) for j in range(k)] for i in range(k)]
    b = [_dot(a2[i], b1) + b2[i] for i in range(k)]
    return a, b


def apply(a: Matrix, h: Vector, b: Vector) -> Vector:
    """``A h + b``, per element."""
    return [_dot(a[i], h) + b[i] for i in range(len(b))]


def _dot(row: list[Any], column: list[Any]) -> Any:
    total = row[0] * column[0]
    for x, y in zip(row[1:], column[1:]):
        total = total + x * y
    return total


def odd_even(backend: Backend, a: Matrix, b: Vector) -> Vector:
    """The states ``h`` ``(T, ...)`` of the recurrence (``T`` static), by the odd-even scan."""
    time_steps = backend.shape(b[0])[0]
    assert isinstance(time_steps, int), "the odd-even scan needs a static number of time steps"
    if time_steps == 1:
        return list(b)
    half = time_steps // 2
    even = slice(0, 2 * half, 2)
    odd = slice(1, 2 * half, 2)

    def take(matrix: Matrix, vector: Vector, where: slice) -> tuple[Matrix, Vector]:
        return [[x[where] for x in row] for row in matrix], [x[where] for x in vector]

    # the pairs (2i, 2i+1) as one map each, scanned: h at every odd step
    h_odd = odd_even(backend, *compose(take(a, b, even), take(a, b, odd)))
    # the even steps from the odd ones before them: h_{2i} = A_{2i} h_{2i-1} + b_{2i}; h_0 = b_0
    rest = slice(2, time_steps, 2)
    n_rest = (time_steps - 1) // 2
    a_rest, b_rest = take(a, b, rest)
    filled = apply(a_rest, [h[:n_rest] for h in h_odd], b_rest)
    h_even = [backend.concat_time([x[:1], y]) for x, y in zip(b, filled)]
    return [_interleave(backend, e, o, half) for e, o in zip(h_even, h_odd)]


def _interleave(backend: Backend, even: Any, odd: Any, half: int) -> Any:
    """``even`` ``(ceil(T/2), ...)`` and ``odd`` ``(T//2, ...)`` as ``(T, ...)``: e0 o0 e1 o1 ..."""
    pairs = backend.unfold_time(backend.swap_batch_time(backend.stack([even[:half], odd])))
    if backend.shape(even)[0] == half:
        return pairs
    return backend.concat_time([pairs, even[half:]])
