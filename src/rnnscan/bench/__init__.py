"""``python -m rnnscan bench``: every benchmark of rnnscan, on your machine, behind one harness.

A suite is a module of this package (:data:`SUITES`). Every suite makes
:class:`.harness.Row` s with the one timing routine (:func:`.timing.measure`),
in this process or in workers (:mod:`.worker`), and :func:`run` writes what
it made in one JSON schema (:func:`.report.document`), a Markdown report and
plots (:mod:`.plots`); ``--from-json`` makes the report and plots again from
a JSON file, for any suite.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from types import ModuleType

from .harness import Row, Settings
from .report import document, rows_of, write

__all__ = ["SUITES", "Row", "Settings", "main", "parser", "run"]

# A suite: a module of rnnscan.bench with NAME (its files' default stem), SUMMARY (its --help paragraph),
# add_arguments(group), run(args, quiet_import) -> (rows, the JSON's other fields), report(doc, rows),
# markdown(doc, rows), plot(doc, rows, stem) -> paths written, and work(job, emit) if it runs workers.
SUITES = {
    "grid": "grid",  # the default: rnnscan against its peers on three workloads (--quick: CI's run)
    "keras-lstm": "keras_lstm",  # a Keras 3 LSTM train step, Keras's loop against rnnscan's
    "long": "long",  # long sequences: remat's memory and time, unroll=k's time
    "parallel": "parallel",  # parallel=True against the sequential loop
}


def suite(name: str) -> ModuleType:
    """The module of suite ``name``."""
    return importlib.import_module(f"{__name__}.{SUITES[name]}")


def parser() -> argparse.ArgumentParser:
    """The bench's flags (also the ``bench`` subcommand of ``python -m rnnscan``)."""
    suites = {name: suite(name) for name in SUITES}
    p = argparse.ArgumentParser(
        prog="python -m rnnscan bench",
        description="Time rnnscan on this machine: one suite per run, its tables on the\nterminal and, in --out, "
        "its JSON (every figure and the machine), a Markdown\nreport and plots. Suites:\n\n"
        + "\n\n".join(m.SUMMARY for m in suites.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--suite", choices=list(SUITES), default="grid", help="what to run (default: grid)")
    p.add_argument("--quick", action="store_true", help="a short run of the suite (grid: CI's)")
    p.add_argument("--out", type=Path, default=Path("rnnscan-bench"), help="output folder (default: rnnscan-bench)")
    p.add_argument("--name", help="the output files' stem (default: the suite's)")
    p.add_argument("--repeats", type=int, help="timed samples per figure (default: the suite's)")
    p.add_argument("--backends", help="comma-separated (default: every backend the suite runs)")
    p.add_argument("--threads", type=int, help="threads for every framework (default: each one's own; 1 steadies)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--from-json", type=Path, metavar="JSON", help="run nothing: the report and plots of a JSON file")
    for name, module in suites.items():
        module.add_arguments(p.add_argument_group(f"--suite {name}"))
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the report; write its files. Returns the exit status."""
    return run(parser().parse_args(argv), list(sys.argv[1:] if argv is None else argv))


def run(args: argparse.Namespace, command: list[str]) -> int:
    """Run the suite of parsed flags (``command``: the flags as given, for the JSON)."""
    from ..__main__ import quiet_logs, quiet_stderr

    quiet_logs()
    start = time.perf_counter()
    if args.from_json is not None:
        doc = json.loads(args.from_json.read_text())
        args.suite = doc.get("suite", "grid")
    module = suite(args.suite)

    def quiet_import(framework: str) -> None:  # a framework's start-up lines filtered as its log level says
        from .._frameworks import ops

        with quiet_stderr():
            ops(framework)

    if args.from_json is None:
        try:
            rows, head = module.run(args, quiet_import)
        except ValueError as error:
            print(f"python -m rnnscan bench: {error}", file=sys.stderr)
            return 2
        doc = document(args.suite, rows, head, command, time.perf_counter() - start)
    rows = rows_of(doc)
    files = write(doc, rows, module, args.out, args.name or module.NAME)
    print(module.report(doc, rows))
    timed = sum(r.status in ("ok", "error") for r in rows)
    plotted = "" if len(files) > 2 else " (no plots: matplotlib is not installed)"
    how = f"timed in {doc['wall_s']:.0f} s" if args.from_json is None else f"read from {args.from_json}"
    print(f"{timed} figures {how}; wrote {', '.join(map(str, files))}{plotted}")
    return 0
