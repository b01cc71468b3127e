"""The grid (``--suite grid``, the default; ``--quick`` is CI's run): rnnscan against the loops you would
otherwise use, on the three workloads of :mod:`.workloads`, every backend, a grid of sizes.

The implementations and passes are in :mod:`.peers`, the plan and the timing in
:mod:`.harness`, the tables in :mod:`.report`, the plots in :mod:`.plots`. Keras 3
runs in a worker per backend (:func:`work`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .harness import Row, Settings, execute, install, plan, run_all
from .peers import BACKENDS, KERAS3, implementations
from .plots import plot_ratios, plot_times
from .report import derive, markdown_grid, print_report
from .threads import limit_threads
from .workloads import INPUT_DIM, WORKLOADS

NAME = "bench"
QUICK = {"times": (10, 100), "batches": (32,), "units": (64,), "repeats": 5, "min_sample_s": 0.01, "max_total_s": 2.0}
QUICK_TIME = "about a minute on 2 idle cores (51 s in docs/bench), longer on a busy one"
SUMMARY = f"""\
grid (the default): rnnscan against the loops you would otherwise use. Workloads
(float32, D={INPUT_DIM} input features, a right-padded mask):
{{workloads}}
  peers: a loop written by hand and Keras 3 on every backend; torch.nn.RNN/LSTM
  (fused) on PyTorch; tf_keras on TensorFlow; the full grid adds torch.compile
  and XLA. Forward and forward+backward (NumPy: forward only). Sizes: T varies
  at B=32 U=64, then B and U vary one at a time at T=100. --quick: T in 10,100,
  B=32, U=64, 5 samples:
  {QUICK_TIME}.
  Writes bench.json, bench.md, bench.png (rnnscan's time over each peer's) and
  bench_T.png (time per step against T).""".format(
    workloads="\n".join(f"  {k} {w.title}:\n     {w.definition}" for k, w in WORKLOADS.items())
)


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated (default: W1,W2,W3)")
    group.add_argument("--T", dest="times", help="time steps (default: 10,30,100,300,1000)")
    group.add_argument("--B", dest="batches", help="batch sizes (default: 1,32,256)")
    group.add_argument("--U", dest="units", help="units (default: 64,256)")


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
    settings.backends = parse_list(args.backends or ",".join(BACKENDS), str, BACKENDS)
    settings.workloads = parse_list(args.workloads, str.upper, tuple(WORKLOADS))
    for name in ("times", "batches", "units"):
        if getattr(args, name):
            setattr(settings, name, parse_list(getattr(args, name), int))
    settings.repeats = settings.repeats if args.repeats is None else args.repeats
    settings.threads = args.threads
    if min(settings.repeats, settings.threads or 1, *settings.times, *settings.batches, *settings.units) < 1:
        raise ValueError("--repeats, --threads, --T, --B and --U must be positive")
    return settings


def run(args: argparse.Namespace, quiet_import: Callable[[str], Any]) -> tuple[list[Row], dict[str, Any]]:
    """Time the grid of the flags: its rows, and what bench.json says of the run besides."""
    settings = settings_from(args)
    impls = implementations()
    absent = [b for b in settings.backends if next(i for i in impls if i.backend == b).missing()]
    not_run = {b: f"{b} is not installed: {install(b)}" for b in absent}
    settings.backends = tuple(b for b in settings.backends if b not in absent)
    limit_threads(settings.threads, torch="torch" in settings.backends)
    todo, missing = plan(settings, impls)
    for backend in settings.backends:  # their start-up lines before the progress bar, not through it
        quiet_import(backend)
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
    head = {"settings": {**settings.as_dict(), "D": INPUT_DIM, "dtype": "float32"}, "not_run": not_run}
    return rows, {**head, "workloads": {k: f"{w.title}: {w.definition}" for k, w in WORKLOADS.items()}}


def settings_of(doc: dict[str, Any]) -> Settings:
    """The :class:`Settings` of a run read back from its JSON."""
    return Settings(**{k: v for k, v in doc["settings"].items() if k not in ("D", "dtype")})


def report(doc: dict[str, Any], rows: list[Row]) -> str:
    """What the terminal shows: the workloads, a table per backend, the notes."""
    import io

    out = io.StringIO()
    print_report(rows, settings_of(doc), doc["not_run"], out)
    return out.getvalue().rstrip("\n")


def markdown(doc: dict[str, Any], rows: list[Row]) -> str:
    return markdown_grid(rows, doc, settings_of(doc))


def plot(doc: dict[str, Any], rows: list[Row], stem: Path) -> list[Path]:
    """bench.png and bench_T.png (none without matplotlib)."""
    center = settings_of(doc).center
    paths = [stem.with_suffix(".png"), stem.with_name(stem.name + "_T.png")]
    if plot_ratios(rows, paths[0], center) is None or plot_times(rows, paths[1], *center[1:]) is None:
        return []
    return paths


def work(job: dict[str, Any], emit: Callable[[Any], None]) -> int:
    """In a worker (``KERAS_BACKEND=<backend>``): time Keras 3's rows of one backend; every row comes back
    (a failure as an error row), as it is made and then in its final version."""
    backend, settings = job["backend"], Settings(**job["settings"])
    limit_threads(settings.threads, torch=backend == "torch")
    (impl,) = [i for i in implementations() if i.backend == backend and i.name == KERAS3]
    rows = [Row.from_json(r) for r in job["rows"]]
    try:
        import keras

        if keras.backend.backend() != backend:
            raise RuntimeError(f"KERAS_BACKEND is {keras.backend.backend()!r}, the job is for {backend!r}")
    except Exception as error:
        for row in rows:
            row.status, row.error = "error", f"{type(error).__name__}: {error}"
            emit(row)
        return 1
    for row in rows:
        row.note = f"Keras {keras.__version__}, {impl.note}, subprocess"
    for row in run_all(rows, lambda _: impl, settings, emit):
        emit(row)
    return 0


def _progress_bar(total: int, enabled: bool) -> Any:
    """A tqdm bar on stderr, or None (not enabled, or tqdm not installed)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="figure", dynamic_ncols=True, file=sys.stderr) if enabled else None
