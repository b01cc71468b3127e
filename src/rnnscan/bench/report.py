"""Ratios and checks across rows, and what a user reads: the tables, their notes, the JSON and two plots.

* Ratios: every figure over the fastest peer (not rnnscan) on the same problem
  (backend, workload, sizes, pass), so that results from different machines compare.
* Checks: every row's numbers (sums of the outputs at kept steps, or of each
  gradient) against rnnscan's on the same problem.
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import math
import os
import platform
import sys
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

from .harness import Row, Settings, groups
from .peers import BACKENDS, KERAS3, MODES
from .workloads import INPUT_DIM, WORKLOADS

AGREE_RTOL = 1e-3  # float32 sums over up to 256 x 1000 x 256 values
PACKAGES = ("rnnscan", "numpy", "jax", "jaxlib", "torch", "tensorflow", "tf_keras", "keras", "matplotlib")
# An error a peer is known to raise, and what it means.
KNOWN_ERRORS = {
    (KERAS3, "KeyError: 0"): "Keras 3's jax and numpy rnn loops index the states by position and fail on a dict "
    "state (W3): a limitation of Keras 3, not of rnnscan",
}
COLORS = {  # one colour per implementation, in every panel of every run
    "rnnscan": "#1f77b4",
    "rnnscan compiled": "#17becf",
    "rnnscan XLA": "#9467bd",
    "loop by hand": "#ff7f0e",
    "lax.scan by hand": "#ff7f0e",
    "while_loop by hand": "#ff7f0e",
    "scan by hand compiled": "#bcbd22",
    "torch.nn fused": "#2ca02c",
    "tf_keras": "#8c564b",
    KERAS3: "#d62728",
}
VERSUS = {"scan by hand compiled": "rnnscan compiled"}  # the rnnscan a peer is compared with (else "rnnscan")
LEGEND = (
    "Each cell: µs per time step, median (x its ratio to the fastest peer on the same problem); "
    "min-max of the samples; the first call (warm-up, compilation). ~: an unsteady figure (see the notes)."
)


def derive(rows: list[Row]) -> list[Row]:
    """Set ``ratio``, ``fastest_peer``, ``max_rel_diff`` and ``agrees`` on every row; the rows in table order."""
    for members in groups(rows):
        ok = [r for r in members if r.status == "ok"]
        fastest = min((r for r in ok if not r.rnnscan), key=lambda r: r.median_s or 0.0, default=None)
        reference = next((r for r in ok if r.impl == "rnnscan"), None)
        for row in ok:
            row.fastest_peer = fastest.impl if fastest else None
            row.ratio = row.median_s / fastest.median_s if fastest and row.median_s and fastest.median_s else None
            if reference is not None:
                row.max_rel_diff = relative_difference(row.checksum, reference.checksum)
                row.agrees = row.max_rel_diff <= AGREE_RTOL
    backend = {b: k for k, b in enumerate(BACKENDS)}
    return sorted(rows, key=lambda r: (backend.get(r.backend, 9), r.workload, r.B, r.U, r.T, MODES.index(r.mode)))


def relative_difference(got: list[float], want: list[float]) -> float:
    """Largest ``|sum - sum_ref| / abs_sum_ref`` over the arrays (pairs of sum, absolute sum)."""
    if len(got) != len(want):
        return math.inf
    pairs = range(0, len(want), 2)
    return max(
        (max(abs(got[i] - want[i]), abs(got[i + 1] - want[i + 1])) / max(want[i + 1], 1e-30) for i in pairs),
        default=0.0,
    )


def machine() -> dict[str, Any]:
    """CPU, cores, OS, Python and package versions (read from package metadata, nothing imported)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "thread_settings": {
            k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS") if k in os.environ
        },
    }


def document(
    rows: list[Row], settings: Settings, command: list[str], not_run: dict[str, str], wall_s: float
) -> dict[str, Any]:
    """The JSON document: settings, machine, wall time, the backends not run and every row."""
    return {
        "schema": 2,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m rnnscan bench", *command]),
        "settings": {**settings.as_dict(), "D": INPUT_DIM, "dtype": "float32"},
        "workloads": {k: f"{w.title}: {w.definition}" for k, w in WORKLOADS.items()},
        "machine": machine(),
        "wall_s": wall_s,
        "not_run": not_run,
        "rows": [r.to_json() for r in rows],
    }


def rows_of(doc: dict[str, Any]) -> list[Row]:
    """The rows of a document read back from ``bench.json``."""
    return [Row.from_json(r) for r in doc["rows"]]


# -- the tables -------------------------------------------------------------------------------
def us(seconds: float) -> str:
    """Microseconds, 3 significant digits below 100, whole above; never in e-notation."""
    value = seconds * 1e6
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def duration(seconds: float) -> str:
    """A first-call time: ``2.1 s``, ``190 ms``, ``4.2 ms``."""
    ms = seconds * 1e3
    return f"{seconds:.1f} s" if seconds >= 1 else f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def cell(row: Row | None, full: bool) -> str:
    """One figure: µs per step and its ratio; with ``full``, the min-max and the first call on further lines."""
    if row is None:
        return ""
    if row.status != "ok":
        return row.status
    assert row.per_step_s is not None and row.min_s is not None and row.max_s is not None
    text = us(row.per_step_s) + (f" x{row.ratio:.2f}" if row.ratio is not None else "")
    text += ("" if row.steady else "~") + (" (differs!)" if row.agrees is False else "")
    if full:
        text += f"\n{us(row.min_s / row.T)}-{us(row.max_s / row.T)}\n{duration(row.warmup_s or 0.0)}"
    return text


def pivot(rows: list[Row], backend: str) -> tuple[list[str], list[tuple[str, list[Row | None]]]]:
    """One backend's figures: implementations as columns, problems (workload, sizes, pass) as lines."""
    mine = [r for r in rows if r.backend == backend]
    impls = sorted(
        dict.fromkeys(r.impl for r in mine), key=lambda n: 0 if n.startswith("rnnscan") else 2 if n == KERAS3 else 1
    )
    lines = []
    for members in groups(mine):
        r, by_impl = members[0], {m.impl: m for m in members}
        label = f"{r.workload} T={r.T} B={r.B} U={r.U} {'fwd' if r.mode == MODES[0] else 'fwd+bwd'}"
        lines.append((label, [by_impl.get(name) for name in impls]))
    return impls, lines


def text_table(impls: list[str], lines: list[tuple[str, list[Row | None]]]) -> str:
    """A plain-text table, a line per problem with its spread and first call under it."""
    table = [[["workload, size, pass"], *([n] for n in impls)]]
    table += [[[label], *(cell(c, True).split("\n") for c in cells)] for label, cells in lines]
    widths = [max(len(s) for line in table for s in line[k]) for k in range(len(impls) + 1)]
    out = []
    for k, line in enumerate(table):
        for i in range(max(len(c) for c in line)):
            parts = [
                (c[i] if i < len(c) else "").rjust(w) if j else (c[i] if i < len(c) else "").ljust(w)
                for j, (c, w) in enumerate(zip(line, widths))
            ]
            out.append("  ".join(parts).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(impls: list[str], lines: list[tuple[str, list[Row | None]]]) -> str:
    """A Markdown table of µs per step (median) and ratios, one line per problem."""
    text = ["| workload, size, pass | " + " | ".join(impls) + " |", "|---|" + "---:|" * len(impls)]
    text += ["| " + " | ".join([label, *(cell(c, False) for c in cells)]) + " |" for label, cells in lines]
    return "\n".join(text)


def workload_lines(settings: Settings) -> list[str]:
    """The workloads run, defined, and the sizes and dtype."""
    lines = [f"{k} {WORKLOADS[k].title}: {WORKLOADS[k].definition}" for k in settings.workloads]
    return [*lines, f"inputs (B, T, D={INPUT_DIM}) float32 with a right-padded (B, T) mask, lengths in [T/2, T]"]


def notes(rows: list[Row], not_run: dict[str, str]) -> list[str]:
    """How each implementation runs, and what every cell that is not a figure means."""
    lines = sorted({f"{r.backend} {r.impl}: {r.note}" for r in rows if r.note})
    failed: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for r in rows:
        if r.status in ("error", "missing"):
            failed[r.backend, r.impl, r.error.splitlines()[0] if r.error else ""].append(r.workload)
    for (backend, impl, error), workloads in sorted(failed.items()):
        known = KNOWN_ERRORS.get((impl, error))
        where = ", ".join(sorted(set(workloads)))
        cells = f"{len(workloads)} cell{'s' * (len(workloads) > 1)}"
        lines.append(f"{backend} {impl} {where} ({cells}): {error}" + (f": {known}" if known else ""))
    unsteady = [r for r in rows if r.status == "ok" and not r.steady]
    if unsteady:
        lines.append(
            f"~ ({len(unsteady)} figures): the median stayed above 1.5x the fastest sample after a second set of "
            "samples: the machine was busy (multi-threaded kernels stall when a core is taken); --threads 1 helps"
        )
    differs = sorted({f"{r.backend} {r.impl} {r.workload}" for r in rows if r.agrees is False})
    if differs:
        lines.append(f"(differs!): numbers off rnnscan's by more than {AGREE_RTOL:g} (relative): {', '.join(differs)}")
    if not_run:
        lines.append("not run: " + "; ".join(f"{b} ({why})" for b, why in not_run.items()))
    return lines


def print_report(rows: list[Row], settings: Settings, not_run: dict[str, str], out: Any = None) -> None:
    """The workloads, one table per backend, then the notes."""
    wrap = functools.partial(textwrap.fill, width=100, initial_indent="  ", subsequent_indent="      ")
    print("\n".join(["workloads:", *map(wrap, workload_lines(settings)), "", textwrap.fill(LEGEND, 100)]), file=out)
    for backend in dict.fromkeys(r.backend for r in rows):
        print(f"\n{backend}\n{text_table(*pivot(rows, backend))}", file=out)
    print("\n".join(["", "notes:", *map(wrap, notes(rows, not_run))]), file=out)


def markdown(rows: list[Row], doc: dict[str, Any], settings: Settings) -> str:
    """bench.md: the machine and date, the workloads, every backend's table, the notes."""
    m = doc["machine"]
    parts = [
        f"{doc['date']}, `{doc['command']}`, {m['cpu']} ({m['cpus_usable']} usable of {m['cpu_count']} CPUs), "
        f"Python {m['python']}, in {doc['wall_s']:.0f} s. µs per time step, median, and (x) its ratio to the "
        "fastest peer on the same problem; ~ marks an unsteady figure.",
        "\n".join(f"- {line}" for line in workload_lines(settings)),
    ]
    for backend in dict.fromkeys(r.backend for r in rows):
        parts += [f"**{backend}**", markdown_table(*pivot(rows, backend))]
    parts += ["Notes:", "\n".join(f"- {line}" for line in notes(rows, doc["not_run"]))]
    return "\n\n".join(parts) + "\n"


# -- the plots ---------------------------------------------------------------------------------
def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _plain_ticks(axis: Any, suffix: str = "") -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}{suffix}"))
    axis.set_minor_formatter(NullFormatter())


def plot_ratios(rows: list[Row], path: Path, size: tuple[int, int, int]) -> list[str] | None:
    """bench.png: rnnscan's time over each peer's (log scale, 1 = as fast), a panel per backend, a line per
    workload and pass, at one size ``(T, B, U)``. Returns the panels' titles (None: no matplotlib)."""
    plt = _pyplot()
    chosen = [r for r in rows if r.status == "ok" and (r.T, r.B, r.U) == size]
    backends = list(dict.fromkeys(r.backend for r in chosen))
    if plt is None or not backends:
        return None
    fig, axes = plt.subplots(1, len(backends), figsize=(4.2 * len(backends), 3.6), squeeze=False)
    titles = []
    for ax, backend in zip(axes[0], backends):
        labels: list[str] = []
        for members in groups([r for r in chosen if r.backend == backend]):
            by_impl = {r.impl: r for r in members}
            labels.append(f"{members[0].workload} {'fwd' if members[0].mode == MODES[0] else 'fwd+bwd'}")
            y = len(labels) - 1
            for peer in (r for r in members if not r.rnnscan):
                ours = by_impl.get(VERSUS.get(peer.impl, "rnnscan"))
                if ours is not None and ours.median_s and peer.median_s:
                    ax.scatter(
                        ours.median_s / peer.median_s,
                        y,
                        color=COLORS.get(peer.impl, "gray"),
                        s=36,
                        zorder=3,
                        label=peer.impl,
                    )
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_xscale("log")
        _plain_ticks(ax.xaxis, "x")
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_title(backend, fontsize=10)
        ax.set_xlabel("rnnscan's time / peer's (<1: rnnscan faster)", fontsize=8)
        handles = dict(zip(*reversed(ax.get_legend_handles_labels())))
        ax.legend(handles.values(), handles.keys(), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
        titles.append(backend)
    t, b, u = size
    fig.suptitle(f"rnnscan against each peer, T={t} B={b} U={u} float32 (medians)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return titles


def plot_times(rows: list[Row], path: Path, batch: int, units: int) -> list[str] | None:
    """bench_T.png: µs per step against T, a panel per workload (rows) and backend (columns), a line per
    implementation (forward solid, forward+backward dashed), at one (B, U). Returns the panels' titles."""
    plt = _pyplot()
    chosen = [r for r in rows if r.status == "ok" and (r.B, r.U) == (batch, units)]
    backends = list(dict.fromkeys(r.backend for r in chosen))
    workloads = list(dict.fromkeys(r.workload for r in chosen))
    if plt is None or not backends:
        return None
    fig, axes = plt.subplots(
        len(workloads), len(backends), figsize=(4 * len(backends), 3 * len(workloads) + 1), squeeze=False
    )
    titles = []
    for i, workload in enumerate(workloads):
        for j, backend in enumerate(backends):
            ax, mine = axes[i][j], [r for r in chosen if r.workload == workload and r.backend == backend]
            for name in dict.fromkeys(r.impl for r in mine):
                for mode, style in zip(MODES, ("-", "--")):
                    line = sorted((r for r in mine if r.impl == name and r.mode == mode), key=lambda r: r.T)
                    if line:
                        ax.plot(
                            [r.T for r in line],
                            [r.per_step_s * 1e6 for r in line],
                            style + "o",
                            color=COLORS.get(name, "gray"),
                            ms=3,
                        )
            ax.set(xscale="log", yscale="log")
            _plain_ticks(ax.xaxis)
            _plain_ticks(ax.yaxis)
            ax.tick_params(labelsize=7)
            ax.grid(True, which="both", alpha=0.3)
            titles.append(f"{backend}, {workload}")
            ax.set_title(f"{backend}, {workload}: {WORKLOADS[workload].title}", fontsize=8)
            ax.set_xlabel("T (time steps)", fontsize=8)
            ax.set_ylabel("µs per step", fontsize=8)
    from matplotlib.lines import Line2D

    names = dict.fromkeys(r.impl for r in chosen)
    handles = [Line2D([], [], color=COLORS.get(n, "gray"), marker="o", ms=3, label=n) for n in names]
    handles += [Line2D([], [], color="black", linestyle=s, label=m) for m, s in zip(MODES, ("-", "--"))]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7)
    fig.suptitle(f"time per step against T, B={batch} U={units} float32 (medians)", fontsize=10)
    fig.tight_layout(rect=(0, 0.04 + 0.02 * math.ceil(len(handles) / 4), 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return titles
