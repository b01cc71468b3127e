"""``python -m rnnscan demo | bench``, and what keeps the tools' output free of the frameworks' log lines."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# Set before any framework loads; what the user set stays. Level 3: TensorFlow's C++ errors on a CPU-only machine
# are noise (no CUDA driver; oneDNN without AVX-512 bools); real failures raise in Python.
LOG_DEFAULTS = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "GLOG_minloglevel": "2"}
# A C++ log line of TensorFlow or XLA (absl's format: severity, date, time, thread, file:line]), and absl's notice
# that such lines go to stderr before logging starts: TensorFlow 2.21 writes them at import, before it reads
# TF_CPP_MIN_LOG_LEVEL.
C_LOG_LINE = re.compile(r"([IWEF])\d{4} [\d:.]+ +\d+ [\w.+-]+:\d+\]")
ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def quiet_logs() -> None:
    """TensorFlow's, gRPC's and absl's log levels, where the user set none; call before TensorFlow is imported."""
    for name, value in LOG_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if importlib.util.find_spec("absl") is not None:
        import absl.logging

        if absl.logging.get_verbosity() == absl.logging.WARNING:  # absl's default: the user set nothing
            absl.logging.set_verbosity(absl.logging.ERROR)
    tf_logger = logging.getLogger("tensorflow")  # its Python warnings (a bench builds many tf.functions: retracing)
    if tf_logger.level == logging.NOTSET:
        tf_logger.setLevel(logging.ERROR)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Hold what is written to file descriptor 2 in the block (C++ code included), then write it back without
    the C++ log lines below ``TF_CPP_MIN_LOG_LEVEL``: the level then holds from the first line on."""
    try:
        level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
        saved = os.dup(2)
    except (ValueError, OSError):  # no level to apply, or no file descriptor 2
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _hidden(line, level)))
            sys.stderr.flush()


def _hidden(line: str, level: int) -> bool:
    match = C_LOG_LINE.match(line)
    return SEVERITY[match[1]] < level if match else line.startswith(ABSL_NOTICE) and level > 0


def main(argv: list[str] | None = None) -> int:
    """The command line: one subcommand per tool."""
    quiet_logs()
    from . import bench, demo

    parser = argparse.ArgumentParser(prog="python -m rnnscan", description="rnnscan's command-line tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{demo,bench}")
    demo.add_arguments(
        commands.add_parser(
            "demo",
            help=demo.SUMMARY,
            description=demo.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    bench_parser = bench.parser()
    commands.add_parser(
        "bench",
        help="time rnnscan against its peers",
        parents=[bench_parser],
        add_help=False,
        description=bench_parser.description,
        formatter_class=bench_parser.formatter_class,
        prog=bench_parser.prog,
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo.run_from_args(args)
    return bench.run(args, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
