"""The long-sequence suite's tables: the remat table with its ratios and the targets beside it, the summary
table, and the time against unroll=k (its plot: :func:`.plots.plot_long`).

The LSTM points travel as rows (:class:`.harness.Row`, their memory figures in ``extra``); :func:`record`
and :func:`to_row` turn one into the flat record the tables read, and back.
"""

from __future__ import annotations

from typing import Any

from .harness import Row
from .peers import BACKWARD

GIB = 2**30
NAMES = {"jax": "JAX jit", "torch": "PyTorch eager", "tensorflow": "TensorFlow tf.function"}
UNROLL_NAMES = {"jax": "JAX jit", "torch": "torch.compile (fullgraph)", "tensorflow": "TensorFlow tf.function"}
MEASURE = {"jax": "XLA temporaries", "torch": "peak RSS growth", "tensorflow": "peak RSS growth"}
MEMORY_TARGET = {"jax": 20.0, "torch": 5.0, "tensorflow": 5.0}
TIME_TARGET = 1.5
ROW_FIELDS = {"backend", "T", "status", "reason", "median_s", "first_call_s", "times_s"}


def record(row: Row) -> dict[str, Any]:
    """An LSTM point's row as the flat record the tables and the plot read."""
    found = {"backend": row.backend, "T": row.T, "status": row.status, "reason": row.error, **row.extra}
    return found | {"median_s": row.median_s, "first_call_s": row.warmup_s, "per_step_us": (row.per_step_s or 0) * 1e6}


def to_row(found: dict[str, Any]) -> Row:
    """A point's record (from a worker, or one not run) as a row."""
    row = Row(
        found["backend"], f"remat={found['remat']}", "LSTM", found["T"], 32, 256, BACKWARD, True, status=found["status"]
    )
    row.error, row.warmup_s, row.median_s = found.get("reason", ""), found.get("first_call_s"), found.get("median_s")
    times = found.get("times_s") or []
    row.min_s, row.max_s, row.samples = min(times, default=None), max(times, default=None), len(times)
    row.per_step_s = None if row.median_s is None else row.median_s / row.T
    row.calls_per_sample = 1 if times else 0
    row.extra = {k: v for k, v in found.items() if k not in ROW_FIELDS | {"per_step_us"}} | {"times_s": times}
    return row


def memory_of(found: dict[str, Any] | None) -> int | None:
    """The figure a point's memory is judged by: XLA's temporaries on JAX, the peak RSS growth elsewhere."""
    if found is None or found.get("status") not in ("ok", "compiled, not run"):
        return None
    return found.get("xla_temp_size_in_bytes" if found["backend"] == "jax" else "rss_peak_growth_bytes")


def size(n: float | None) -> str:
    if n is None:
        return "—"
    for unit, scale in (("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if abs(v) >= 100 else f"{v:.3g} {unit}"
    return f"{n:.0f} B"


def seconds(s: float | None) -> str:
    if s is None:
        return "—"
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


def _find(records: list[dict[str, Any]], backend: str, time_steps: int, remat: bool) -> dict[str, Any] | None:
    return next((r for r in records if r["backend"] == backend and r["T"] == time_steps and r["remat"] == remat), None)


def _cell(found: dict[str, Any] | None, what: str) -> str:
    """A table cell: the measured figure, or what stood in for it."""
    if found is None:
        return "—"
    if found["status"] == "ok":
        if what == "memory":
            segment = f" (k={found['segment']})" if found.get("segment") else ""
            return size(memory_of(found)) + segment
        return seconds(found["median_s"])
    if found["status"] == "not run":
        guess = found.get("extrapolated")
        parts = [f"not run; ≈{size(guess['bytes'])} extrapolated"] if what == "memory" and guess else ["not run"]
        if what == "memory" and "compiled" in found:
            parts.append(f"{size(found['compiled'].get('xla_temp_size_in_bytes'))} compiled")
        return ", ".join(parts)
    return f"{found['status']}" + (" (see notes)" if what == "memory" else "")


def per_call(found: dict[str, Any] | None) -> int | None:
    """The RSS growth of the calls after the first (freed memory handed back to the system before them)."""
    return found.get("rss_per_call_growth_bytes") if found and found["status"] == "ok" else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def lstm_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per backend and T: both settings side by side, and their ratios."""
    rows = []
    for backend in dict.fromkeys(r["backend"] for r in records):
        for time_steps in sorted({r["T"] for r in records if r["backend"] == backend}):
            off, on = _find(records, backend, time_steps, False), _find(records, backend, time_steps, True)
            ok = [r if r is not None and r["status"] == "ok" else None for r in (off, on)]
            rows.append(
                {
                    "backend": backend,
                    "T": time_steps,
                    "off": off,
                    "on": on,
                    "memory_ratio": _ratio(memory_of(ok[0]) if ok[0] else None, memory_of(ok[1]) if ok[1] else None),
                    "per_call_ratio": _ratio(per_call(off), per_call(on)),
                    "time_ratio": _ratio(ok[1]["median_s"] if ok[1] else None, ok[0]["median_s"] if ok[0] else None),
                }
            )
    return rows


def targets(rows: list[dict[str, Any]], target_T: int) -> list[str]:
    """The issue's targets at ``target_T``, per backend: the figure, the target, met or not."""
    lines = []
    for row in rows:
        if row["T"] != target_T:
            continue
        backend, memory, timing = row["backend"], row["memory_ratio"], row["time_ratio"]
        want = MEMORY_TARGET[backend]
        mem = "not measured" if memory is None else f"{memory:.1f}x smaller ({'met' if memory >= want else 'NOT met'})"
        if backend != "jax" and row["per_call_ratio"] is not None:
            ratio = row["per_call_ratio"]
            mem += f"; per call {ratio:.1f}x smaller ({'met' if ratio >= want else 'NOT met'})"
        tim = "not measured" if timing is None else f"{timing:.2f}x ({'met' if timing <= TIME_TARGET else 'NOT met'})"
        lines.append(
            f"- {NAMES[backend]}: {MEASURE[backend]} {mem}, target >= {want:g}x; "
            f"time with remat {tim}, target <= {TIME_TARGET}x"
        )
    return lines


def long_lines(records: list[dict[str, Any]], remat_only_T: tuple[int, ...]) -> list[str]:
    """remat=True at the remat-only T, and what remat=False would need there."""
    lines = []
    for time_steps in remat_only_T:
        for backend in dict.fromkeys(r["backend"] for r in records):
            on, off = _find(records, backend, time_steps, True), _find(records, backend, time_steps, False)
            have = size(memory_of(on)) if on and on["status"] == "ok" else (on or {}).get("status", "—")
            guess = (off or {}).get("extrapolated")
            would = f"≈{size(guess['bytes'])} ({size(guess['per_step_bytes'])} per step)" if guess else "unknown"
            if off and "compiled" in off:
                compiled = size(off["compiled"].get("xla_temp_size_in_bytes"))
                would += f"; XLA's figure for the compiled program, not run: {compiled}"
            lines.append(f"- T={time_steps:,}, {NAMES[backend]}: remat=True {have}; remat=False would need {would}")
    return lines


def unroll_table(rows: list[Row]) -> list[str]:
    """W1's time per call for each unroll=k, with its ratio to k=1; torch.compile's first calls apart."""
    ok = [r for r in rows if r.status == "ok"]
    failed = [f"- unroll: {r.backend}, {r.mode}, {r.impl}: {r.status}: {r.error}" for r in rows if r.status != "ok"]
    ks = sorted({r.extra["k"] for r in ok})
    lines = ["| backend, pass | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---:|" * len(ks)]
    compile_lines = []
    for backend, mode in dict.fromkeys((r.backend, r.mode) for r in ok):
        cells = {r.extra["k"]: r for r in ok if (r.backend, r.mode) == (backend, mode)}
        base = cells[ks[0]].median_s if ks[0] in cells else None
        texts = [
            seconds(c.median_s) + (f" ({c.median_s / base:.2f}x)" if base and k != ks[0] else "") if c else "error"
            for k, c in ((k, cells.get(k)) for k in ks)
        ]
        lines.append(f"| {UNROLL_NAMES[backend]}, {mode} | " + " | ".join(texts) + " |")
        if backend == "torch":
            firsts = " | ".join(seconds(cells[k].warmup_s) if k in cells else "" for k in ks)
            compile_lines.append(f"| torch.compile first call (compiles), {mode} | {firsts} |")
    return (lines if ok else []) + compile_lines + failed


def summary_table(records: list[dict[str, Any]]) -> list[str]:
    """The short table: memory and time per call, a row per backend and setting, a column per T."""
    all_T = sorted({r["T"] for r in records})
    lines = ["| backend | remat | " + " | ".join(f"T={t:,}" for t in all_T) + " |", "|---|---|" + "---:|" * len(all_T)]
    for backend in dict.fromkeys(r["backend"] for r in records):
        for remat in (False, True):
            cells = []
            for time_steps in all_T:
                r = _find(records, backend, time_steps, remat)
                if r is None:
                    cells.append("—")
                elif r["status"] == "ok":
                    cells.append(f"{size(memory_of(r))}, {seconds(r['median_s'])}")
                elif r["status"] == "not run" and r.get("extrapolated"):
                    cells.append(f"≈{size(r['extrapolated']['bytes'])} (not run)")
                else:
                    cells.append(r["status"])
            lines.append(f"| {NAMES[backend]} ({MEASURE[backend]}) | {remat} | " + " | ".join(cells) + " |")
    return lines


def machine_summary(doc: dict[str, Any]) -> str:
    """The cores, CPU, framework versions and threads of a run, in a line."""
    m, threads = doc["machine"], doc["settings"].get("threads")
    versions = ", ".join(
        f"{k} {v}" for k, v in m["versions"].items() if k in ("jax", "torch", "tensorflow", "numpy") and v
    )
    return f"{m['cpus_usable']} cores ({m['cpu']}), {versions}, threads: {threads or 'framework defaults'}"


def markdown(doc: dict[str, Any], all_rows: list[Row]) -> str:
    """The whole report as Markdown."""
    config = doc["settings"]
    records = [record(r) for r in all_rows if r.extra.get("kind") == "lstm"]
    rows = lstm_rows(records)
    out = [
        "# Long sequences: remat and unroll=k",
        "",
        f"`{doc['command']}` — {doc['date']}, {machine_summary(doc)}; {doc['wall_s'] / 60:.1f} min in all.",
        "",
    ]
    if doc.get("busy"):
        out += [f"**The machine was busy** ({doc['busy']}): the times are off, the ratios less so.", ""]
    out += [
        "LSTM step (B=32, U=256, D=32, float32, `return_all_outputs=False`), forward+backward "
        "(loss = sum of the last output, gradient with respect to the weights). Memory: on JAX, XLA's "
        "`memory_analysis().temp_size_in_bytes` of the compiled `jax.grad`; on PyTorch and TensorFlow, the peak "
        "RSS growth of a fresh process over all its calls (RSS polled every 5 ms, minus the RSS before the first call, "
        "so the first call's one-off costs are in it: tracing and graph building). Per call: the "
        "peak RSS growth over the calls after the first, on every backend, with the C heap's free memory handed "
        "back to the system (`malloc_trim`) before them. "
        "Time: the median of the calls after the first. k: the steps per remat segment (`remat=True`: about √T).",
        "",
        "| backend | T | memory, remat=False | memory, remat=True | ratio | per call, remat=False "
        "| per call, remat=True | ratio | time, remat=False | time, remat=True | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        mr = f"{row['memory_ratio']:.1f}x" if row["memory_ratio"] else "—"
        pr = f"{row['per_call_ratio']:.1f}x" if row["per_call_ratio"] else "—"
        tr = f"{row['time_ratio']:.2f}x" if row["time_ratio"] else "—"
        out.append(
            f"| {NAMES[row['backend']]} | {row['T']:,} | {_cell(row['off'], 'memory')} | {_cell(row['on'], 'memory')} "
            f"| {mr} | {size(per_call(row['off']))} | {size(per_call(row['on']))} | {pr} "
            f"| {_cell(row['off'], 'time')} | {_cell(row['on'], 'time')} | {tr} |"
        )
    out += ["", "In short (memory, time per forward+backward):", "", *summary_table(records)]
    target_T = max(config["both_T"])
    out += ["", f"Targets at T={target_T:,}:", "", *targets(rows, target_T), ""]
    out += long_lines(records, tuple(config["remat_only_T"]))
    notes = [r for r in records if r["status"] in ("skipped", "error")]
    if notes:
        out += ["", "Points not measured:", ""]
        out += [
            f"- {NAMES[r['backend']]}, T={r['T']:,}, remat={r['remat']}: {r['status']}: {r['reason']}" for r in notes
        ]
    out += [
        "",
        f"## unroll=k: W1 (masked tanh SimpleRNN, B=32, D=16, U=64) at T={config['unroll_T']:,}",
        "",
        "Median time per call (interleaved across k), its ratio to k=1; torch.compile's first call, which "
        "compiles, apart.",
        "",
    ]
    out += unroll_table([r for r in all_rows if "k" in r.extra or r.impl == "unroll"])
    return "\n".join(out) + "\n"
