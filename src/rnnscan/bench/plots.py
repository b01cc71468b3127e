"""The one plot module: rnnscan's time over each peer's (the grid's bench.png, keras_lstm.png), time per step
against T (bench_T.png), and the long-sequence suite's memory and time against T (long_sequences.png).

Fixed colours per implementation, log scales with plain tick labels, legends
below the panels. Each returns its panels' titles, or None when matplotlib is
not installed (or there is nothing to plot).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .harness import Row, groups
from .peers import KERAS3, MODES, XLA_MODES, short_mode
from .workloads import WORKLOADS

COLORS = {  # one colour per implementation, in every panel of every run
    "rnnscan": "#1f77b4", "rnnscan compiled": "#17becf",
    "loop by hand": "#ff7f0e", "lax.scan by hand": "#e377c2", "while_loop by hand": "#7f7f7f",
    "scan by hand compiled": "#bcbd22", "torch.nn fused": "#2ca02c", "tf_keras": "#8c564b", KERAS3: "#d62728",
}  # fmt: skip
STYLES = dict(zip(MODES + XLA_MODES, ("-", "--", ":", "-.")))  # the line of each pass against T
RATIO_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.8, 1, 1.25, 2, 5, 10, 20, 50, 100)
VERSUS = {"scan by hand compiled": "rnnscan compiled"}
LONG_COLORS = {
    "jax": "tab:blue",
    "torch": "tab:orange",
    "tensorflow": "tab:green",
}  # the rnnscan a peer is compared with (else "rnnscan")


def plot_ratios(rows: list[Row], path: Path, size: tuple[int, int, int]) -> list[str] | None:
    """rnnscan's median over each peer's (log scale, 1 marked: as fast), a panel per backend, a line per workload
    and pass, at one size ``(T, B, U)``; an implementation that failed on a line is named on it."""
    chosen = [r for r in rows if (r.T, r.B, r.U) == size]
    backends = list(dict.fromkeys(r.backend for r in chosen if r.status == "ok"))
    plt = _pyplot()
    if plt is None or not backends:
        return None
    fig, axes = plt.subplots(1, len(backends), figsize=(max(4.2 * len(backends), 6.4), 3.8), squeeze=False)
    for ax, backend in zip(axes[0], backends):
        problems = groups([r for r in chosen if r.backend == backend])
        ratios = []
        for y, members in enumerate(problems):
            by_impl = {r.impl: r for r in members if r.status == "ok"}
            for peer in (r for r in members if not r.rnnscan and r.status == "ok"):
                ours = by_impl.get(VERSUS.get(peer.impl, "rnnscan"))
                if ours is not None and ours.median_s and peer.median_s:
                    ratios.append(ours.median_s / peer.median_s)
                    ax.plot(ratios[-1], y, "o", color=COLORS.get(peer.impl, "gray"), zorder=3)
            failed = ", ".join(f"{r.impl}: {r.status}" for r in members if r.status not in ("ok", "planned"))
            if failed:  # a cell with no figure: said on its line, not left as a missing dot
                ax.text(0.98, y + 0.32, f"{failed} (see the notes)", transform=ax.get_yaxis_transform(), ha="right",
                        fontsize=6, color="dimgray")  # fmt: skip
        _ratio_axis(ax, ratios)
        ax.set_yticks(range(len(problems)), [f"{g[0].workload} {short_mode(g[0].mode)}" for g in problems], fontsize=8)
        ax.set_ylim(len(problems) - 0.5, -0.5)
        ax.set_title(backend, fontsize=10)
        ax.set_xlabel("rnnscan's time / the peer's (< 1: rnnscan is faster)", fontsize=8)
    peers = [r.impl for r in chosen if not r.rnnscan and r.status == "ok"]
    title = "rnnscan's time over each peer's, T={} B={} U={} float32 (medians)".format(*size)
    _save(plt, fig, path, title, _legend(peers, markers=True))
    return backends


def _ratio_axis(ax: Any, ratios: list[float]) -> None:
    """A log axis with 1 in the middle, and a tick label at or beyond every point on both sides."""
    low = max([t for t in RATIO_TICKS if t <= min(ratios, default=1)], default=RATIO_TICKS[0])
    high = min([t for t in RATIO_TICKS if t >= max(ratios, default=1)], default=RATIO_TICKS[-1])
    span = max(1.5, 1 / low, high) * 1.15
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlim(1 / span, span)  # faster to the left, slower to the right
    ticks = [t for t in RATIO_TICKS if 1 / span <= t <= span and (span < 3 or t not in (0.8, 1.25))]
    ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    ax.xaxis.set_minor_formatter("")
    ax.tick_params(labelsize=8)
    ax.grid(True, axis="x", alpha=0.3)


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
            for mode, style in STYLES.items():
                line = sorted((r for r in mine if r.impl == name and r.mode == mode), key=lambda r: r.T)
                times = [r.T for r in line], [(r.per_step_s or 0) * 1e6 for r in line]
                ax.plot(*times, style + "o", color=COLORS.get(name, "gray"), ms=3)
        ax.set(xscale="log", yscale="log")
        _log_ticks(ax, sorted({r.T for r in mine}))
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{backend}, {workload}: {WORKLOADS[workload].title}", fontsize=8)
        ax.set_xlabel("T (time steps)", fontsize=8)
        ax.set_ylabel("µs per step", fontsize=8)
    handles = _legend([r.impl for r in chosen], markers=False, modes=[r.mode for r in chosen])
    _save(plt, fig, path, f"time per step against T, B={batch} U={units} float32 (medians)", handles)
    return [f"{b}, {w}" for w in workloads for b in backends]


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


def _legend(names: list[str], markers: bool, modes: Sequence[str] = ()) -> list[Any]:
    """A handle per implementation (its colour), and without ``markers`` one per pass of ``modes`` (the line
    style)."""
    from matplotlib.lines import Line2D

    def handle(label: str, **style: Any) -> Any:
        return Line2D([], [], label=label, **style)

    handles = [
        handle(n, color=COLORS.get(n, "gray"), marker="o", linestyle="" if markers else "-")
        for n in dict.fromkeys(names)
    ]
    passes = [handle(m, color="black", linestyle=s) for m, s in STYLES.items() if m in modes]
    return handles if markers else handles + passes


def _save(plt: Any, fig: Any, path: Path, title: str, handles: list[Any]) -> None:
    rows = -(-len(handles) // 4)
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.02 + 0.035 * rows * 3.8 / fig.get_figheight(), 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_long(records: list[dict[str, Any]], path: Path) -> list[str] | None:
    """The long-sequence suite's LSTM points (:func:`.long_report.record`): memory against T (log-log) for each
    backend, remat off and on; the memory per call and the time per step beside it. remat=False where it was
    not run: its extrapolation, dotted, hollow."""
    from .long_report import NAMES, memory_of, per_call

    plt = _pyplot()
    if plt is None or not records:
        return None
    import matplotlib.ticker

    fig, (ax_mem, ax_call, ax_time) = plt.subplots(1, 3, figsize=(15, 4.4))
    panels = ((ax_mem, memory_of, 2**-20), (ax_call, per_call, 2**-20), (ax_time, lambda r: r["per_step_us"], 1))
    for backend in dict.fromkeys(r["backend"] for r in records):
        colour = LONG_COLORS.get(backend, "gray")
        for remat, style, marker in ((False, "-", "o"), (True, "--", "s")):
            ok = sorted(
                (r for r in records if r["backend"] == backend and r["remat"] == remat and r["status"] == "ok"),
                key=lambda r: r["T"],
            )
            if not ok:
                continue
            for ax, value, scale in panels:
                points = [(r["T"], value(r) * scale) for r in ok if value(r) is not None]
                ax.plot(*zip(*points), style, marker=marker, color=colour, label=f"{NAMES[backend]}, remat={remat}")
            if remat:
                continue
            for r in records:
                guess = r.get("extrapolated") if r["backend"] == backend and r["status"] == "not run" else None
                if guess:
                    points = [ok[-1]["T"], r["T"]], [memory_of(ok[-1]) / 2**20, guess["bytes"] / 2**20]
                    ax_mem.plot(*points, ":", marker="o", markerfacecolor="none", color=colour)
    titles = ("memory of forward+backward\n(JAX: XLA temporaries; torch, TF: peak RSS growth)",
              "peak RSS growth per call\n(calls after the first)", "time per step, forward+backward")  # fmt: skip
    for ax, title, unit in zip((ax_mem, ax_call, ax_time), titles, ("MiB", "MiB", "µs per time step")):
        ax.set(xscale="log", yscale="linear" if ax is ax_time else "log", xlabel="T (time steps)", ylabel=unit)
        ax.set_title(title)
    note = "hollow, dotted: remat=False extrapolated, not run"
    ax_mem.text(0.02, 0.98, note, transform=ax_mem.transAxes, va="top", fontsize=7)
    for ax in (ax_mem, ax_call, ax_time):
        ax.grid(True, which="both", alpha=0.3)
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers, not powers of ten
            axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax_time.legend(fontsize=7, loc="best")
    ax_time.set_ylim(bottom=0)
    fig.suptitle("LSTM B=32 U=256 D=32 float32: rnnscan.rnn with remat=False and remat=True", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [ax.get_title() for ax in (ax_mem, ax_call, ax_time)]
