"""``python -m rnnscan bench``: what rnnscan costs against what you would otherwise use, on your machine.

The workloads are in :mod:`.workloads`, the implementations and passes in
:mod:`.peers`, the timing in :mod:`.timing`, the plan and its rows in
:mod:`.harness`, the tables, notes and JSON in :mod:`.report`, the plots in
:mod:`.plots`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .._frameworks import ops
from .harness import Row, Settings, execute, install, plan
from .peers import BACKENDS, implementations
from .plots import plot_ratios, plot_times
from .report import derive, document, markdown, print_report
from .threads import limit_threads
from .workloads import WORKLOADS

__all__ = ["Row", "Settings", "main", "parser"]

QUICK = {"times": (10, 100), "batches": (32,), "units": (64,), "repeats": 5, "min_sample_s": 0.01, "max_total_s": 2.0}
QUICK_TIME = "about 2 minutes on 2 idle cores, longer on a busy one"  # as the README says (measured there)

DESCRIPTION = """\
Time rnnscan against the loops you would otherwise use, on this machine, in one
run: tables on the terminal, and in --out: bench.json (every figure and the
machine), bench.md (the tables), bench.png (rnnscan's time over each peer's)
and bench_T.png (time per step against T).

workloads (float32, D=16 input features, a right-padded mask):
{workloads}

peers: a loop written by hand and Keras 3 on every backend; torch.nn.RNN/LSTM
(fused) on PyTorch; tf_keras on TensorFlow; the full grid adds torch.compile
and XLA. Forward and forward+backward (NumPy: forward only).

sizes: T varies at B=32 U=64, then B and U vary one at a time at T=100.
"""


def parser() -> argparse.ArgumentParser:
    """The bench's flags (also the ``bench`` subcommand of ``python -m rnnscan``)."""
    p = argparse.ArgumentParser(
        prog="python -m rnnscan bench",
        description=DESCRIPTION.format(
            workloads="\n".join(f"  {k} {w.title}:\n     {w.definition}" for k, w in WORKLOADS.items())
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help=f"T in 10,100, B=32, U=64, 5 samples ({QUICK_TIME})")
    p.add_argument("--out", type=Path, default=Path("rnnscan-bench"), help="output folder (default: rnnscan-bench)")
    p.add_argument("--name", default="bench", help="the output files' stem (default: bench)")
    p.add_argument("--repeats", type=int, help="timed samples per figure (default: 7; --quick: 5)")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated (default: all installed)")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated (default: W1,W2,W3)")
    p.add_argument("--T", dest="times", help="time steps (default: 10,30,100,300,1000)")
    p.add_argument("--B", dest="batches", help="batch sizes (default: 1,32,256)")
    p.add_argument("--U", dest="units", help="units (default: 64,256)")
    p.add_argument("--threads", type=int, help="threads for every framework (default: each one's own; 1 steadies)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--keras-lstm", nargs=argparse.REMAINDER, metavar="FLAGS", help="run the Keras LSTM layer "
                   "benchmark (rnnscan.bench.keras_lstm) instead; the flags after it are its own")  # fmt: skip
    p.add_argument("--parallel", nargs=argparse.REMAINDER, metavar="FLAGS", help="time rnn(parallel=True) against "
                   "the loop (rnnscan.bench.parallel) instead; the flags after it are its own")  # fmt: skip
    return p


def parse_list(text: str, convert: type, allowed: tuple | None = None) -> tuple:
    """``"10,100"`` -> ``(10, 100)``, checked against ``allowed``."""
    values = tuple(convert(v.strip()) for v in text.split(",") if v.strip())
    bad = [v for v in values if allowed is not None and v not in allowed]
    if bad or not values:
        raise ValueError(f"{bad or 'an empty list'} not among {list(allowed or ())}" if bad else "an empty list")
    return values


def settings_from(args: argparse.Namespace) -> Settings:
    """The flags as :class:`Settings` (``--quick`` over the full grid; explicit sizes win)."""
    settings = Settings(quick=args.quick, **(QUICK if args.quick else {}))  # type: ignore[arg-type]
    settings.backends = parse_list(args.backends, str, BACKENDS)
    settings.workloads = parse_list(args.workloads, str.upper, tuple(WORKLOADS))
    for name in ("times", "batches", "units"):
        if getattr(args, name):
            setattr(settings, name, parse_list(getattr(args, name), int))
    settings.repeats = settings.repeats if args.repeats is None else args.repeats
    settings.threads = args.threads
    if min(settings.repeats, settings.threads or 1, *settings.times, *settings.batches, *settings.units) < 1:
        raise ValueError("--repeats, --threads, --T, --B and --U must be positive")
    return settings


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the report; write its files. Returns the exit status."""
    return run(parser().parse_args(argv), list(sys.argv[1:] if argv is None else argv))


def run(args: argparse.Namespace, command: list[str]) -> int:
    """Run the benchmark of parsed flags (``command``: the flags as given, for bench.json)."""
    if args.keras_lstm is not None:
        return _keras_lstm(args.keras_lstm)
    if args.parallel is not None:
        from . import parallel

        return parallel.main(args.parallel)
    try:
        settings = settings_from(args)
    except ValueError as error:
        print(f"python -m rnnscan bench: {error}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    impls = implementations()
    absent = [b for b in settings.backends if next(i for i in impls if i.backend == b).missing()]
    not_run = {b: f"{b} is not installed: {install(b)}" for b in absent}
    settings.backends = tuple(b for b in settings.backends if b not in absent)
    limit_threads(settings.threads, torch="torch" in settings.backends)
    todo, missing = plan(settings, impls)
    for backend in settings.backends:  # their start-up lines before the progress bar, not through it
        ops(backend)
    print(f"rnnscan bench: {len(todo)} figures to time on {', '.join(settings.backends)}", file=sys.stderr)
    if not_run:
        print(f"rnnscan bench: not run: {'; '.join(not_run.values())}", file=sys.stderr)
    bar = _progress_bar(len(todo), enabled=not args.no_progress)

    def advance(row: Row) -> None:
        if bar is not None:
            bar.set_postfix_str(f"{row.backend} {row.impl} {row.workload} T={row.T}", refresh=False)
            bar.update(1)

    try:
        rows = derive(execute(todo, settings, impls, advance) + missing)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    doc = document(rows, settings, command, not_run, wall)
    path = {ext: args.out / f"{args.name}{ext}" for ext in (".json", ".md", ".png", "_T.png")}
    path[".json"].write_text(json.dumps(doc, indent=1))
    path[".md"].write_text(markdown(rows, doc, settings))
    plotted = plot_ratios(rows, path[".png"], settings.center) is not None
    plotted = plot_times(rows, path["_T.png"], *settings.center[1:]) is not None and plotted
    print_report(rows, settings, not_run)
    timed = sum(r.status != "missing" for r in rows)
    files = [path[".json"], path[".md"], *([path[".png"], path["_T.png"]] if plotted else [])]
    print(f"{timed} figures timed in {wall:.0f} s; wrote {', '.join(map(str, files))}", end="")
    print("" if plotted else " (no plots: matplotlib is not installed)")
    return 0


def _keras_lstm(argv: list[str]) -> int:
    from . import keras_lstm

    return int(keras_lstm.main(argv) or 0)


def _progress_bar(total: int, enabled: bool) -> Any:
    """A tqdm bar on stderr, or None (not enabled, or tqdm not installed)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="figure", dynamic_ncols=True, file=sys.stderr) if enabled else None
