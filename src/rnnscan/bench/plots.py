"""The two plots: rnnscan's time over each peer's (bench.png), and time per step against T (bench_T.png).

Fixed colours per implementation, log scales with plain tick labels, legends
below the panels. Each returns its panels' titles, or None when matplotlib is
not installed (or there is nothing to plot).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .harness import Row, groups
from .peers import KERAS3, MODES
from .workloads import WORKLOADS

COLORS = {  # one colour per implementation, in every panel of every run
    "rnnscan": "#1f77b4", "rnnscan compiled": "#17becf", "rnnscan XLA": "#9467bd",
    "loop by hand": "#ff7f0e", "lax.scan by hand": "#e377c2", "while_loop by hand": "#7f7f7f",
    "scan by hand compiled": "#bcbd22", "torch.nn fused": "#2ca02c", "tf_keras": "#8c564b", KERAS3: "#d62728",
}  # fmt: skip
RATIO_TICKS = (0.02, 0.05, 0.1, 0.2, 0.5, 0.8, 1, 1.25, 2, 5, 10, 20, 50)
VERSUS = {"scan by hand compiled": "rnnscan compiled"}  # the rnnscan a peer is compared with (else "rnnscan")


def plot_ratios(rows: list[Row], path: Path, size: tuple[int, int, int]) -> list[str] | None:
    """rnnscan's median over each peer's (log scale, 1 marked: as fast), a panel per backend, a line per workload
    and pass, at one size ``(T, B, U)``."""
    chosen = [r for r in rows if r.status == "ok" and (r.T, r.B, r.U) == size]
    backends = list(dict.fromkeys(r.backend for r in chosen))
    plt = _pyplot()
    if plt is None or not backends:
        return None
    fig, axes = plt.subplots(1, len(backends), figsize=(4.2 * len(backends), 3.8), squeeze=False)
    for ax, backend in zip(axes[0], backends):
        problems = groups([r for r in chosen if r.backend == backend])
        for y, members in enumerate(problems):
            by_impl = {r.impl: r for r in members}
            for peer in (r for r in members if not r.rnnscan):
                ours = by_impl.get(VERSUS.get(peer.impl, "rnnscan"))
                if ours is not None and ours.median_s and peer.median_s:
                    ax.plot(ours.median_s / peer.median_s, y, "o", color=COLORS.get(peer.impl, "gray"), zorder=3)
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_xscale("log")
        span = max([1.5, *(max(x, 1 / x) * 1.15 for line in ax.get_lines()[:-1] for x in line.get_xdata())])
        ax.set_xlim(1 / span, span)  # 1 in the middle: faster to the left, slower to the right
        ticks = [t for t in RATIO_TICKS if 1 / span <= t <= span and (span < 3 or t not in (0.8, 1.25))]
        ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
        ax.xaxis.set_minor_formatter("")
        ax.tick_params(labelsize=8)
        ax.set_yticks(range(len(problems)), [f"{g[0].workload} {_pass(g[0])}" for g in problems], fontsize=8)
        ax.set_ylim(len(problems) - 0.5, -0.5)
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_title(backend, fontsize=10)
        ax.set_xlabel("rnnscan's time / the peer's (< 1: rnnscan is faster)", fontsize=8)
    peers = [r.impl for r in chosen if not r.rnnscan]
    title = "rnnscan's time over each peer's, T={} B={} U={} float32 (medians)".format(*size)
    _save(plt, fig, path, title, _legend(peers, markers=True))
    return backends


def plot_times(rows: list[Row], path: Path, batch: int, units: int) -> list[str] | None:
    """µs per step against T, a panel per workload (rows) and backend (columns), a line per implementation
    (forward solid, forward+backward dashed), at one (B, U)."""
    chosen = [r for r in rows if r.status == "ok" and (r.B, r.U) == (batch, units)]
    backends = list(dict.fromkeys(r.backend for r in chosen))
    workloads = list(dict.fromkeys(r.workload for r in chosen))
    plt = _pyplot()
    if plt is None or not backends:
        return None
    shape = (len(workloads), len(backends))
    fig, axes = plt.subplots(*shape, figsize=(4 * shape[1], 3 * shape[0] + 0.8), squeeze=False)
    for ax, (workload, backend) in zip(axes.flat, ((w, b) for w in workloads for b in backends)):
        mine = [r for r in chosen if r.workload == workload and r.backend == backend]
        for name in dict.fromkeys(r.impl for r in mine):
            for mode, style in zip(MODES, ("-", "--")):
                line = sorted((r for r in mine if r.impl == name and r.mode == mode), key=lambda r: r.T)
                times = [r.T for r in line], [(r.per_step_s or 0) * 1e6 for r in line]
                ax.plot(*times, style + "o", color=COLORS.get(name, "gray"), ms=3)
        ax.set(xscale="log", yscale="log")
        _log_ticks(ax, sorted({r.T for r in mine}))
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{backend}, {workload}: {WORKLOADS[workload].title}", fontsize=8)
        ax.set_xlabel("T (time steps)", fontsize=8)
        ax.set_ylabel("µs per step", fontsize=8)
    handles = _legend([r.impl for r in chosen], markers=False)
    _save(plt, fig, path, f"time per step against T, B={batch} U={units} float32 (medians)", handles)
    return [f"{b}, {w}" for w in workloads for b in backends]


def _pass(row: Row) -> str:
    return "fwd" if row.mode == MODES[0] else "fwd+bwd"


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _log_ticks(ax: Any, steps: list[int]) -> None:
    """Plain tick labels on log axes (``200``, not ``2 × 10²``): the T values on x; on y, nice numbers, as many
    per decade as the axis is short."""
    from matplotlib.ticker import NullLocator

    ax.set_xticks(steps, [str(t) for t in steps])
    low, high = ax.get_ylim()
    decades = math.log10(high / low)
    subs = (1,) if decades > 2 else (1, 2, 5) if decades > 0.7 else (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8)
    ticks = [m * 10**k for k in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1) for m in subs]
    ticks = [t for t in ticks if low <= t <= high]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_locator(NullLocator())
    ax.tick_params(labelsize=7)


def _legend(names: list[str], markers: bool) -> list[Any]:
    """A handle per implementation (its colour), and without ``markers`` one per pass (the line style)."""
    from matplotlib.lines import Line2D

    def handle(label: str, **style: Any) -> Any:
        return Line2D([], [], label=label, **style)

    handles = [
        handle(n, color=COLORS.get(n, "gray"), marker="o", linestyle="" if markers else "-")
        for n in dict.fromkeys(names)
    ]
    return handles if markers else handles + [handle(m, color="black", linestyle=s) for m, s in zip(MODES, ("-", "--"))]


def _save(plt: Any, fig: Any, path: Path, title: str, handles: list[Any]) -> None:
    rows = -(-len(handles) // 4)
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.02 + 0.035 * rows * 3.8 / fig.get_figheight(), 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
