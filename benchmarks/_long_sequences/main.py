"""The command line: parse the flags, run the points, write the JSON, the table and the plot."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from . import plan, report

DESCRIPTION = """\
rnnscan.rnn on long sequences. (1) remat: an LSTM step (B=32, U=256, D=32, float32,
return_all_outputs=False), forward+backward, at T = 1,000, 4,000, 16,000 with remat off and
on and at 64,000 with remat on (off: extrapolated, never run), on JAX jit, PyTorch eager and
TensorFlow tf.function: memory (JAX: XLA's compiled temporaries; torch, TF: peak RSS growth
of a fresh process per point) and time. (2) unroll=k: W1 (masked tanh SimpleRNN, B=32, D=16,
U=64) at T=1,000, k = 1, 2, 4, 8, 16, on JAX jit, TF tf.function and torch.compile.
Writes long_sequences.json, .md and .png into --out."""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/long_sequences.py",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of a few minutes: T = 100, 400 (and 1,600 remat only), unroll at T=100, k = 1, 4",
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=plan.BACKENDS,
        default=list(plan.BACKENDS),
        help="backends to run (default: all three)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("long_sequences_results"),
        help="directory for long_sequences.{json,md,png} (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed calls per LSTM point after the first (default: 5, 3, 2, 1 up to T=1k, 4k, 16k, above)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads per framework in the workers (default: each framework's own); "
        "on a busy machine --threads 1 avoids PyTorch's stalls",
    )
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        default=None,
        metavar="BYTES",
        help="glibc's MALLOC_MMAP_THRESHOLD_ in the workers: blocks this big or bigger are mapped and handed back "
        "when freed, so the peak RSS shows live memory more closely (slower; default: glibc's own)",
    )
    parser.add_argument(
        "--max-gib",
        type=float,
        default=plan.Config.max_gib,
        help="skip (and say so) a remat=False point predicted above this (default: %(default)s)",
    )
    parser.add_argument(
        "--point-timeout",
        type=float,
        default=plan.Config.point_timeout_s,
        help="seconds per point before it is stopped and reported (default: %(default)s)",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        metavar="JSON",
        help="run nothing: write the table and the plot of an earlier run's long_sequences.json",
    )
    parser.add_argument("--no-unroll", action="store_true", help="leave out the unroll=k part")
    return parser.parse_args(argv)


def machine(threads: int | None) -> dict[str, Any]:
    """What the figures were taken on, and whether it was busy then."""
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    versions = {}
    for name in ("jax", "jaxlib", "torch", "tensorflow", "numpy"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    summary = f"{cores} cores ({platform.processor() or platform.machine()}), " + ", ".join(
        f"{k} {v}" for k, v in versions.items() if k != "jaxlib"
    )
    summary += f", threads: {threads if threads else 'framework defaults'}"
    info: dict[str, Any] = {
        "cores": cores,
        "platform": platform.platform(),
        "versions": versions,
        "threads": threads,
        "load_average_start": load,
        "summary": summary,
    }
    if load is not None and load > 0.5 * cores:
        info["busy"] = f"load average {load:.1f} on {cores} cores at the start"
    return info


def write(result: dict[str, Any], out: Path) -> None:
    """``long_sequences.json``, ``.md`` and ``.png`` into ``out``; the table printed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "long_sequences.json").write_text(json.dumps(result, indent=1) + "\n")
    text = report.markdown(result)
    (out / "long_sequences.md").write_text(text)
    report.plot(result, str(out / "long_sequences.png"))
    print("\n" + text)
    print(f"wrote {out / 'long_sequences'}.{{json,md,png}} ({result['wall_s'] / 60:.1f} min run)", file=sys.stderr)


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.from_json is not None:
        write(json.loads(args.from_json.read_text()), args.out)
        return 0
    config = plan.QUICK if args.quick else plan.Config()
    config = dataclasses.replace(
        config,
        backends=tuple(args.backends),
        max_gib=args.max_gib,
        point_timeout_s=args.point_timeout,
        repeats=args.repeats if args.repeats is not None else config.repeats,
    )
    env = plan.environment(args.threads, args.mmap_threshold)
    start = time.perf_counter()
    info = machine(args.threads)
    info["malloc_mmap_threshold"] = args.mmap_threshold
    print(f"long_sequences: {info['summary']}" + (f"; busy: {info['busy']}" if "busy" in info else ""), flush=True)

    def say(line: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f} s] {line}", flush=True)

    lstm = plan.run_lstm(config, env, say)
    unroll = [] if args.no_unroll else plan.run_unroll(config, env, say)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    info["load_average_end"] = load
    if load is not None and load > 0.5 * info["cores"] and "busy" not in info:
        info["busy"] = f"load average {load:.1f} on {info['cores']} cores at the end"
    result = {
        "command": shlex.join(["python", "benchmarks/long_sequences.py", *argv]),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "wall_s": time.perf_counter() - start,
        "machine": info,
        "config": dataclasses.asdict(config),
        "lstm": lstm,
        "unroll": unroll,
    }
    write(result, args.out)
    return 0
