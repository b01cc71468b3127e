"""Ratios and checks across rows, the machine's description, and the three outputs: table, JSON, PNG.

* Ratios: every figure over the fastest peer (not rnnscan) on the same backend,
  workload, size and pass, so that results from different machines compare.
* Checks: every row's numbers (sums of the outputs at kept steps, or of each
  gradient) against rnnscan's on the same problem.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import os
import platform
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from .peers import BACKENDS, KERAS3, MODES
from .workloads import INPUT_DIM, WORKLOADS

Row = dict[str, Any]
AGREE_RTOL = 1e-3  # float32 sums over up to 256 x 1000 x 256 values
_GROUP = ("backend", "workload", "T", "B", "U", "mode")
_PACKAGES = ("rnnscan", "numpy", "jax", "jaxlib", "torch", "tensorflow", "tf_keras", "keras", "matplotlib")


def group_key(row: Row) -> tuple[Any, ...]:
    """The problem a row is about: backend, workload, sizes and pass."""
    return tuple(row[k] for k in _GROUP)


def derive(rows: list[Row]) -> list[Row]:
    """Add ``ratio`` (to the fastest peer of the group), ``fastest_peer`` and ``max_rel_diff`` to every row."""
    groups: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for row in rows:
        groups[group_key(row)].append(row)
    for members in groups.values():
        ok = [r for r in members if r["status"] == "ok"]
        peers = [r for r in ok if not r["rnnscan"]]
        fastest = min(peers, key=lambda r: r["median_s"]) if peers else None
        reference = next((r for r in ok if r["rnnscan"] and r["impl"] == "rnnscan"), None)
        for row in members:
            row["fastest_peer"] = fastest["impl"] if fastest else None
            row["ratio"] = row["median_s"] / fastest["median_s"] if fastest and row["status"] == "ok" else None
            if row["status"] == "ok" and reference is not None:
                row["max_rel_diff"] = _relative_difference(row["checksum"], reference["checksum"])
                row["agrees"] = row["max_rel_diff"] <= AGREE_RTOL
    return sorted(rows, key=_order)


def _relative_difference(got: list[float], want: list[float]) -> float:
    """Largest ``|sum - sum_ref| / abs_sum_ref`` over the arrays (pairs of sum, absolute sum)."""
    if len(got) != len(want):
        return math.inf
    worst = 0.0
    for i in range(0, len(want), 2):
        scale = max(want[i + 1], 1e-30)
        worst = max(worst, abs(got[i] - want[i]) / scale, abs(got[i + 1] - want[i + 1]) / scale)
    return worst


def _order(row: Row) -> tuple[Any, ...]:
    backend = BACKENDS.index(row["backend"]) if row["backend"] in BACKENDS else len(BACKENDS)
    return (backend, row["workload"], row["B"], row["U"], row["T"], MODES.index(row["mode"]))


# -- the machine -----------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """CPU, cores, OS, Python and framework versions (read from package metadata, nothing imported)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS") if k in os.environ}
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "thread_settings": threads,
    }


def document(
    rows: list[Row], settings: dict[str, Any], argv: list[str], machine_info: dict[str, Any], wall_s: float
) -> dict[str, Any]:
    """The JSON document: settings, machine, wall time and every row."""
    return {
        "schema": 1,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m rnnscan bench", *argv]),
        "settings": {**settings, "D": INPUT_DIM, "dtype": "float32"},
        "workloads": {k: w.title for k, w in WORKLOADS.items()},
        "machine": machine_info,
        "wall_s": wall_s,
        "rows": rows,
    }


# -- the table --------------------------------------------------------------------------
def _us(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:.3g}" if us < 100 else f"{us:.0f}"


def _cell(row: Row, multiline: bool) -> str:
    """One figure: µs per step and the ratio; with the spread and warm-up on further lines."""
    if row["status"] != "ok":
        return row["status"]
    ratio = f" x{row['ratio']:.2f}" if row.get("ratio") is not None else ""
    flag = "" if row.get("agrees", True) else " (differs!)"
    first = f"{_us(row['per_step_s'])}{ratio}{flag}"
    if not multiline:
        return first
    t = row["T"]
    return f"{first}\n{_us(row['min_s'] / t)}-{_us(row['max_s'] / t)}\n{_duration(row['warmup_s'])}"


def _duration(seconds: float) -> str:
    return f"{seconds:.2g} s" if seconds >= 1 else f"{seconds * 1e3:.2g} ms"


def pivot(rows: list[Row], backend: str) -> tuple[list[str], list[tuple[str, list[Row | None]]]]:
    """One backend's figures: implementations as columns, problems (workload, sizes, pass) as rows."""
    mine = [r for r in rows if r["backend"] == backend]
    impls: list[str] = []
    for r in mine:
        if r["impl"] not in impls:
            impls.append(r["impl"])
    impls.sort(key=lambda name: 0 if name.startswith("rnnscan") else 2 if name == KERAS3 else 1)
    problems: dict[tuple[Any, ...], dict[str, Row]] = {}
    for r in mine:
        problems.setdefault(group_key(r), {})[r["impl"]] = r
    lines = []
    for key, by_impl in problems.items():
        _, workload, t, b, u, mode = key
        label = f"{workload} T={t} B={b} U={u} {'fwd' if mode == MODES[0] else 'fwd+bwd'}"
        lines.append((label, [by_impl.get(name) for name in impls]))
    return impls, lines


def print_tables(rows: list[Row], out: TextIO | None = None, use_rich: bool = True) -> None:
    """One table per backend: µs per step (median), its ratio to the fastest peer, spread and warm-up."""
    backends = [b for b in BACKENDS if any(r["backend"] == b for r in rows)]
    console = None
    if use_rich:
        try:
            from rich.console import Console

            console = Console(file=out, width=160) if out is not None else Console()
            if not console.is_terminal:
                console.width = 160
        except ImportError:
            console = None
    out = out or sys.stdout
    for backend in backends:
        impls, lines = pivot(rows, backend)
        title = f"{backend}: µs per step: median (x fastest peer), min-max; first call (warm-up, compile)"
        if console is not None:
            from rich.table import Table

            table = Table(title=title, show_lines=True, title_justify="left")
            table.add_column("workload, size, pass")
            for name in impls:
                table.add_column(name, justify="right")
            for label, cells in lines:
                table.add_row(label, *(_cell(c, True) if c else "" for c in cells))
            console.print(table)
        else:
            print(title, file=out)
            print(markdown_table(impls, lines), file=out)
    notes = sorted({f"{r['backend']} {r['impl']}: {r['note']}" for r in rows if r.get("note")})
    errors = sorted(
        {f"{r['backend']} {r['impl']} {r['workload']}: {r['status']}: {r['error']}" for r in rows if r.get("error")}
    )
    for line in ["notes:", *notes, *(["failures:", *errors] if errors else [])]:
        print(line, file=out)


def markdown_table(impls: list[str], lines: Iterable[tuple[str, list[Row | None]]]) -> str:
    """A Markdown table of µs per step (median) and ratios, one line per problem."""
    head = ["workload, size, pass", *impls]
    text = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(impls)) + "|"]
    for label, cells in lines:
        text.append("| " + " | ".join([label, *(_cell(c, False) if c else "" for c in cells)]) + " |")
    return "\n".join(text)


def markdown(rows: list[Row], doc: dict[str, Any]) -> str:
    """Every backend's table in Markdown, with the machine and date (for a README)."""
    m = doc["machine"]
    parts = [
        f"{doc['date']}, `{doc['command']}`, {m['cpu']} ({m['cpus_usable']} usable of {m['cpu_count']} CPUs), "
        f"Python {m['python']}; µs per step, median, and (x) its ratio to the fastest peer on the same backend.",
    ]
    for backend in BACKENDS:
        if any(r["backend"] == backend for r in rows):
            impls, lines = pivot(rows, backend)
            parts += [f"**{backend}**", markdown_table(impls, lines)]
    return "\n\n".join(parts) + "\n"


# -- the plot ---------------------------------------------------------------------------
def plot(rows: list[Row], path: Path, batch: int, units: int) -> bool:
    """Time per step against T: a panel per workload (rows) and backend (columns), a line per implementation.

    Forward solid, forward+backward dashed, min-max as error bars, at one (B, U).
    False (nothing written) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    chosen = [r for r in rows if r["status"] == "ok" and r["B"] == batch and r["U"] == units]
    backends = [b for b in BACKENDS if any(r["backend"] == b for r in rows)]
    workloads = sorted({r["workload"] for r in rows})
    # one colour per implementation in every panel: rnnscan's first, then the peers by name
    every = sorted({r["impl"] for r in chosen}, key=lambda n: (not n.startswith("rnnscan"), n))
    colors = {name: f"C{k % 10}" for k, name in enumerate(every)}
    fig, axes = plt.subplots(
        len(workloads), len(backends), figsize=(4.2 * len(backends), 3.3 * len(workloads)), squeeze=False
    )
    for i, workload in enumerate(workloads):
        for j, backend in enumerate(backends):
            ax = axes[i][j]
            mine = [r for r in chosen if r["workload"] == workload and r["backend"] == backend]
            names = sorted({r["impl"] for r in mine}, key=lambda n: (not n.startswith("rnnscan"), n))
            for name in names:
                color = colors[name]
                for mode, style in zip(MODES, ("-", "--")):
                    line = sorted((r for r in mine if r["impl"] == name and r["mode"] == mode), key=lambda r: r["T"])
                    if not line:
                        continue
                    t = [r["T"] for r in line]
                    med = [r["per_step_s"] * 1e6 for r in line]
                    err = [
                        [m - r["min_s"] / r["T"] * 1e6 for m, r in zip(med, line)],
                        [r["max_s"] / r["T"] * 1e6 - m for m, r in zip(med, line)],
                    ]
                    label = f"{name} ({'fwd' if mode == MODES[0] else 'fwd+bwd'})"
                    ax.errorbar(t, med, yerr=err, fmt=style + "o", color=color, ms=3, lw=1.2, capsize=2, label=label)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{backend}, {workload}: {WORKLOADS[workload].title}", fontsize=8)
            ax.set_xlabel("T (time steps)", fontsize=8)
            ax.set_ylabel("µs per step", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, which="both", alpha=0.3)
            if mine:
                ax.legend(fontsize=6)
    fig.suptitle(f"rnnscan and its peers, B={batch} U={units} float32 (median, min-max)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
