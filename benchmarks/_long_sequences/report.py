"""The run's figures: a JSON file, a Markdown table (with the targets beside it) and a plot."""

from __future__ import annotations

from typing import Any

from .plan import GIB, memory_of

NAMES = {"jax": "JAX jit", "torch": "PyTorch eager", "tensorflow": "TensorFlow tf.function"}
UNROLL_NAMES = {"jax": "JAX jit", "torch": "torch.compile (fullgraph)", "tensorflow": "TensorFlow tf.function"}
MEASURE = {"jax": "XLA temporaries", "torch": "peak RSS growth", "tensorflow": "peak RSS growth"}
MEMORY_TARGET = {"jax": 20.0, "torch": 5.0, "tensorflow": 5.0}
TIME_TARGET = 1.5
COLOURS = {"jax": "tab:blue", "torch": "tab:orange", "tensorflow": "tab:green"}


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


def _cell(record: dict[str, Any] | None, what: str) -> str:
    """A table cell: the measured figure, or what stood in for it."""
    if record is None:
        return "—"
    if record["status"] == "ok":
        if what == "memory":
            segment = f" (k={record['segment']})" if record.get("segment") else ""
            return size(memory_of(record)) + segment
        return seconds(record["median_s"])
    if record["status"] == "not run":
        guess = record.get("extrapolated")
        parts = [f"not run; ≈{size(guess['bytes'])} extrapolated"] if what == "memory" and guess else ["not run"]
        if what == "memory" and "compiled" in record:
            parts.append(f"{size(record['compiled'].get('xla_temp_size_in_bytes'))} compiled")
        return ", ".join(parts)
    return f"{record['status']}" + (" (see notes)" if what == "memory" else "")


def per_call(record: dict[str, Any] | None) -> int | None:
    """The RSS growth of the calls after the first (freed memory handed back to the system before them)."""
    return record.get("rss_per_call_growth_bytes") if record and record["status"] == "ok" else None


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


def unroll_table(records: list[dict[str, Any]]) -> list[str]:
    """W1's time per call for each unroll=k, with its ratio to k=1; torch.compile's first calls apart."""
    ok = [r for r in records if r["status"] == "ok"]
    if not ok:
        return [f"- unroll: {r['backend']}: {r['status']}: {r.get('reason', '')}" for r in records]
    ks = [row["k"] for row in next(iter(ok[0]["passes"].values()))]
    lines = ["| backend, pass | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---:|" * len(ks)]
    compile_lines = []
    for record in ok:
        for mode, cells in record["passes"].items():
            base = cells[0].get("median_s")
            texts = []
            for cell in cells:
                if "error" in cell:
                    texts.append("error")
                    continue
                ratio = f" ({cell['median_s'] / base:.2f}x)" if base and cell["k"] != ks[0] else ""
                texts.append(seconds(cell["median_s"]) + ratio)
            lines.append(f"| {UNROLL_NAMES[record['backend']]}, {mode} | " + " | ".join(texts) + " |")
            if record["backend"] == "torch":
                firsts = " | ".join(seconds(c.get("first_call_s")) for c in cells)
                compile_lines.append(f"| torch.compile first call (compiles), {mode} | {firsts} |")
    return (
        lines
        + compile_lines
        + [f"- unroll: {r['backend']}: {r['status']}: {r.get('reason', '')}" for r in records if r["status"] != "ok"]
    )


def summary_table(result: dict[str, Any]) -> list[str]:
    """The README's table: memory and time per call, a row per backend and setting, a column per T."""
    records = result["lstm"]
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


def markdown(result: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    config, records = result["config"], result["lstm"]
    rows = lstm_rows(records)
    out = [
        "# Long sequences: remat and unroll=k",
        "",
        f"`{result['command']}` — {result['date']}, {result['machine']['summary']}; "
        f"{result['wall_s'] / 60:.1f} min in all.",
        "",
    ]
    if result["machine"].get("busy"):
        out += [f"**The machine was busy** ({result['machine']['busy']}): the times are off, the ratios less so.", ""]
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
    out += ["", "In short (memory, time per forward+backward):", "", *summary_table(result)]
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
    out += unroll_table(result["unroll"])
    return "\n".join(out) + "\n"


def plot(result: dict[str, Any], path: str) -> None:
    """Memory against T (log-log) for each backend, remat off and on; the memory per call and the time per step
    beside it. remat=False where it was not run: its extrapolation, dotted, hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    records = result["lstm"]
    fig, (ax_mem, ax_call, ax_time) = plt.subplots(1, 3, figsize=(15, 4.4))
    panels = ((ax_mem, memory_of, 2**-20), (ax_call, per_call, 2**-20), (ax_time, lambda r: r["per_step_us"], 1))
    for backend in dict.fromkeys(r["backend"] for r in records):
        colour = COLOURS[backend]
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
                    ax_mem.plot(
                        [ok[-1]["T"], r["T"]],
                        [memory_of(ok[-1]) / 2**20, guess["bytes"] / 2**20],
                        ":",
                        marker="o",
                        markerfacecolor="none",
                        color=colour,
                    )
    ax_mem.set(
        xscale="log",
        yscale="log",
        xlabel="T (time steps)",
        ylabel="MiB",
        title="memory of forward+backward\n(JAX: XLA temporaries; torch, TF: peak RSS growth)",
    )
    ax_call.set(
        xscale="log",
        yscale="log",
        xlabel="T (time steps)",
        ylabel="MiB",
        title="peak RSS growth per call\n(calls after the first)",
    )
    ax_time.set(
        xscale="log", xlabel="T (time steps)", ylabel="µs per time step", title="time per step, forward+backward"
    )
    ax_mem.text(
        0.02,
        0.98,
        "hollow, dotted: remat=False extrapolated, not run",
        transform=ax_mem.transAxes,
        va="top",
        fontsize=7,
    )
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
