"""The one report: every suite's JSON document and files (:func:`document`, :func:`write`), the machine, and
the grid's ratios, checks, tables and notes (plots: .plots; a suite's own tables: its module).

* Ratios: every figure over the fastest peer (not rnnscan) on the same problem
  (backend, workload, sizes, pass), so that results from different machines compare:
  the median of the ratios of the samples of each round (see :func:`ratio`).
* Checks: every row's numbers (sums of the outputs at kept steps, or of each
  gradient) against rnnscan's on the same problem.
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import textwrap
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

from .harness import Row, Settings, groups
from .peers import BACKENDS, KERAS3, MODES, XLA_MODES, short_mode
from .timing import UNSTEADY
from .workloads import INPUT_DIM, WORKLOADS

AGREE_RTOL = 1e-3  # float32 sums over up to 256 x 1000 x 256 values
PACKAGES = ("rnnscan", "numpy", "jax", "jaxlib", "torch", "tensorflow", "tf_keras", "keras", "matplotlib")
# An error a peer is known to raise, and what it means.
KNOWN_ERRORS = {
    (KERAS3, "KeyError: 0"): "Keras 3's jax and numpy rnn loops index the states by position and fail on a dict "
    "state (W3): a limitation of Keras 3, not of rnnscan",
}
LEGEND = (
    "Each cell: µs per time step, median (x its ratio to the fastest peer on the same problem, the median of the "
    "rounds' ratios); "
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
            row.ratio = ratio(row, fastest) if fastest else None
            if reference is not None:
                row.max_rel_diff = relative_difference(row.checksum, reference.checksum)
                row.agrees = row.max_rel_diff <= AGREE_RTOL
    backend, mode = {b: k for k, b in enumerate(BACKENDS)}, MODES + XLA_MODES
    return sorted(rows, key=lambda r: (backend.get(r.backend, 9), r.workload, r.B, r.U, r.T, mode.index(r.mode)))


def ratio(row: Row, peer: Row) -> float | None:
    """``row``'s time over ``peer``'s: the median of the ratios of their samples round by round where they were
    timed in the same rounds (a slow spell of the machine then hits both sides of each ratio), else the ratio of
    their medians."""
    if row.timed_together and row.timed_together == peer.timed_together and len(row.samples_s) == len(peer.samples_s):
        return statistics.median(a / b for a, b in zip(row.samples_s, peer.samples_s)) if row.samples_s else None
    return row.median_s / peer.median_s if row.median_s and peer.median_s else None


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
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {name: _version(name) for name in PACKAGES},
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "thread_settings": {
            k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS") if k in os.environ
        },
    }


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return None


def document(suite: str, rows: list[Row], head: dict[str, Any], command: list[str], wall_s: float) -> dict[str, Any]:
    """The JSON document of every suite: the suite, date, command, machine, wall time, what the suite says of
    the run (``head``: at least ``settings`` and ``not_run``) and every row."""
    return {
        "schema": 3,
        "suite": suite,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m rnnscan bench", *command]),
        "machine": machine(),
        "wall_s": wall_s,
        **head,
        "rows": [r.to_json() for r in rows],
    }


def write(doc: dict[str, Any], rows: list[Row], suite: ModuleType, out: Path, name: str) -> list[Path]:
    """``<name>.json``, ``<name>.md`` and the suite's plots into ``out``: the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.json", out / f"{name}.md"]
    paths[0].write_text(json.dumps(doc, indent=1) + "\n")
    paths[1].write_text(suite.markdown(doc, rows))
    return paths + suite.plot(doc, rows, out / name)


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
        label = f"{r.workload} T={r.T} B={r.B} U={r.U} {short_mode(r.mode)}"
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
            f"~ ({len(unsteady)} figures): measured twice, and still the median was over {UNSTEADY:g}x the fastest "
            f"sample, or a call took over {UNSTEADY:g}x a call of the same implementation over more steps: the "
            "machine was busy (multi-threaded kernels stall when another process takes a core); --threads 1 helps"
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


def markdown_grid(rows: list[Row], doc: dict[str, Any], settings: Settings) -> str:
    """bench.md: the machine and date, the workloads, every backend's table, the notes."""
    m = doc["machine"]
    parts = [
        f"{doc['date']}, `{doc['command']}`, {m['cpu']} ({m['cpus_usable']} usable of {m['cpu_count']} CPUs), "
        f"Python {m['python']}, in {doc['wall_s']:.0f} s. µs per time step, median, and (x) its ratio to the "
        "fastest peer on the same problem (the median of the ratios of the rounds in which they were timed together); "
        "~ marks an unsteady figure.",
        "\n".join(f"- {line}" for line in workload_lines(settings)),
    ]
    for backend in dict.fromkeys(r.backend for r in rows):
        parts += [f"**{backend}**", markdown_table(*pivot(rows, backend))]
    parts += ["Notes:", "\n".join(f"- {line}" for line in notes(rows, doc["not_run"]))]
    return "\n\n".join(parts) + "\n"
