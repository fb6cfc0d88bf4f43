"""The ``pymmu`` command line: one subcommand per job.

Each subcommand is registered by an ``add_<name>(subparsers)`` function that
builds its parser and sets ``func``, the callable that runs it and returns the exit
status. Adding a command (``simulate``, ``sweep``) is one more such function and
one more entry in ``COMMANDS``; ``main`` does not change.

>>> build_parser().parse_args(["demo"]).command
'demo'
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser", "COMMANDS"]


def _run_demo(args: argparse.Namespace) -> int:
    from pymmu.demo import demo

    if args.reference:
        from pymmu.reference import Machine
    else:
        from pymmu import Machine
    demo(Machine)
    return 0


def add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="a narrated run of copy-on-write fork, the zero page, vfork + exec and swap",
        description="Print a narrated run of a small machine: pages written, fork and "
                    "copy-on-write (page tables side by side, frame refcounts), the zero "
                    "page, vfork then exec, and memory pressure with the clock hand and "
                    "swap, with the counters of each step.",
    )
    p.add_argument("--reference", action="store_true",
                   help="run on pymmu.reference.Machine, the pure-Python model, instead "
                        "of the Cython core (the output is the same)")
    p.set_defaults(func=_run_demo)


# The subcommands, in the order `pymmu --help` lists them.
COMMANDS = [add_demo]


def build_parser() -> argparse.ArgumentParser:
    from pymmu import __version__

    parser = argparse.ArgumentParser(
        prog="pymmu",
        description="pymmu: a virtual-memory emulator (page tables, copy-on-write fork, "
                    "vfork, exec, swap, page replacement).",
    )
    parser.add_argument("--version", action="version", version=f"pymmu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pymmu`` console script and ``python -m pymmu``."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # `pymmu demo | head`: the reader left; exit quietly like other Unix tools.
        import os
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
