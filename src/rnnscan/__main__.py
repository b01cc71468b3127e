"""``python -m rnnscan demo | bench``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """The command line: one subcommand per tool."""
    parser = argparse.ArgumentParser(prog="python -m rnnscan", description="rnnscan's command-line tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{demo,bench}")
    from .demo import add_arguments

    demo = commands.add_parser(
        "demo", help="train a custom recurrent cell with rnnscan.rnn on Python's own source code"
    )
    add_arguments(demo)
    bench = commands.add_parser("bench", help="time rnnscan against its peers", add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER, help="passed to rnnscan.bench")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # argparse's REMAINDER would reject `bench --quick`: pass the flags through as they are
        argv = ["bench", "--", *argv[1:]]
    args = parser.parse_args(argv)

    if args.command == "demo":
        from .demo import run_from_args

        return run_from_args(args)
    from .bench import main as bench_main

    return int(bench_main(args.args[1:] if args.args[:1] == ["--"] else args.args) or 0)


if __name__ == "__main__":
    sys.exit(main())
