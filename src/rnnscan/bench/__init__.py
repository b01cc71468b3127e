"""``python -m rnnscan bench``: what rnnscan costs against what you would otherwise use, on your machine.

Three workloads (W1 a masked tanh SimpleRNN, W2 an LSTM step with two states, W3
a nested dict state with a rank-3 leaf), each run by rnnscan and by its peers on
the same backend, on the same data, in the same run:

* NumPy: rnnscan, a loop by hand, Keras 3 (numpy backend; forward only).
* JAX (``jax.jit``): rnnscan, ``jax.lax.scan`` by hand, Keras 3 (jax backend).
* PyTorch (eager): rnnscan, a loop by hand, Keras 3 (torch backend),
  ``torch.nn.RNN``/``torch.nn.LSTM`` (fused kernels) for W1/W2; the full grid
  adds rnnscan under ``torch.compile`` (T <= 100).
* TensorFlow (``tf.function``): rnnscan, ``tf.while_loop`` by hand,
  ``tf_keras.backend.rnn``, Keras 3 (tensorflow backend); the full grid adds
  rnnscan under XLA.

Keras 3 runs in one subprocess per backend. Forward and forward+backward
(gradients of a loss of the outputs with respect to the weights); the first call
(warm-up, compilation) is reported on its own; the figures are medians of repeated
runs with their spread, per time step, and as ratios to the fastest peer on the
same backend. A peer that is not installed is a row marked ``missing``. Writes
``bench.json`` (every figure and the machine), ``bench.png`` (time per step
against T) and ``bench.md`` (the tables in Markdown) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .harness import Settings, execute, make_plan, parse_list, progress_bar
from .peers import BACKENDS
from .report import derive, document, machine, markdown, plot, print_tables
from .threads import limit_threads
from .workloads import WORKLOADS

QUICK = {"times": (10, 100), "batches": (32,), "units": (64,), "repeats": 5, "min_sample_s": 0.01, "max_total_s": 2.0}
SMOKE = {"times": (4,), "batches": (2,), "units": (8,), "repeats": 2, "min_sample_s": 0.001, "max_total_s": 0.2}

__all__ = ["main", "Settings"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rnnscan bench",
        description="Time rnnscan against the loops you would otherwise use, on this machine: a table on the "
        "terminal, bench.json (every figure and the machine), bench.png (time per step against T), bench.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="a small grid: T in {10, 100}, B=32, U=64 (a few minutes at most)"
    )
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tests: tiny sizes, no real timing
    parser.add_argument("--out", type=Path, default=Path("rnnscan-bench"), help="output folder (default rnnscan-bench)")
    parser.add_argument("--repeats", type=int, default=None, help="timed samples per figure (default 7, quick 5)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated, of " + ",".join(BACKENDS))
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated, of " + ",".join(WORKLOADS))
    parser.add_argument("--T", dest="times", default=None, help="time steps, comma-separated (default 10,100,1000)")
    parser.add_argument("--B", dest="batches", default=None, help="batch sizes (default 1,32,256)")
    parser.add_argument("--U", dest="units", default=None, help="units (default 64,256)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for every framework (default: each framework's own; 1 steadies figures on a busy machine)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The flags as :class:`Settings` (``--smoke`` over ``--quick`` over the full grid; explicit sizes win)."""
    preset = SMOKE if args.smoke else QUICK if args.quick else {}
    settings = Settings(quick=args.quick or args.smoke, smoke=args.smoke, concurrent_workers=args.smoke, **preset)  # type: ignore[arg-type]
    settings.backends = parse_list(args.backends, str, BACKENDS)
    settings.workloads = parse_list(args.workloads, str.upper, WORKLOADS)
    for name in ("times", "batches", "units"):
        if getattr(args, name):
            setattr(settings, name, parse_list(getattr(args, name), int))
    if args.repeats is not None:
        settings.repeats = args.repeats
    settings.threads = args.threads
    sizes = settings.times + settings.batches + settings.units
    if settings.repeats < 1 or (settings.threads is not None and settings.threads < 1) or min(sizes) < 1:
        raise ValueError("--repeats, --threads, --T, --B and --U must be positive")
    return settings


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the tables; write bench.json, bench.png and bench.md. Returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValueError as error:
        print(f"python -m rnnscan bench: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    limit_threads(settings.threads, torch="torch" in settings.backends)
    machine_info = machine()
    plan = make_plan(settings)
    print(f"rnnscan bench: {plan.size} figures on {', '.join(settings.backends)}", file=sys.stderr)
    with progress_bar(plan.size, enabled=not args.no_progress) as advance:
        rows = derive(execute(plan, settings, advance))
    wall = time.perf_counter() - start

    command = list(argv if argv is not None else sys.argv[1:])
    doc = document(rows, settings.as_dict(), command, machine_info, wall)
    (args.out / "bench.json").write_text(json.dumps(doc, indent=1))
    (args.out / "bench.md").write_text(markdown(rows, doc))
    batch = 32 if 32 in settings.batches else settings.batches[0]
    units = 64 if 64 in settings.units else settings.units[0]
    plotted = plot(rows, args.out / "bench.png", batch, units)

    print_tables(rows)
    print(f"{len(rows)} figures in {wall:.0f} s; wrote {args.out / 'bench.json'}, {args.out / 'bench.md'}", end="")
    print(f", {args.out / 'bench.png'}" if plotted else " (no plot: matplotlib is not installed)")
    return 0
