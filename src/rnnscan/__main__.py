"""``python -m rnnscan demo | bench``."""

from __future__ import annotations

import argparse
import os
import sys

# Before any framework loads; what the user set stays. Level 3: TensorFlow's C++ errors on a CPU-only machine
# are noise (no CUDA driver; oneDNN without AVX-512 bools); real failures raise in Python. TensorFlow 2.21
# writes a few lines before its logging starts, which no setting hides: the bench imports the frameworks
# before its progress bar.
LOG_DEFAULTS = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "GLOG_minloglevel": "2"}


def main(argv: list[str] | None = None) -> int:
    """The command line: one subcommand per tool."""
    for name, value in LOG_DEFAULTS.items():
        os.environ.setdefault(name, value)
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
