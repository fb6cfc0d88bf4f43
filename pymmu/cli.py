"""The ``pymmu`` command line: one subcommand per job.

Each subcommand is registered by an ``add_<name>(subparsers)`` function that
builds its parser and sets ``func``, the callable that runs it and returns the exit
status. Adding a command (``simulate``, ``sweep``) is one more such function and
one more entry in ``COMMANDS``; ``main`` does not change.

``simulate`` and ``sweep`` check their option values before reading the trace,
and report every failure (a bad option, an unreadable trace, a machine too big
for memory, a fault of the run) as one line ``pymmu CMD: error: ...`` with exit
status 2 (argparse's status for a bad command line), never as a traceback.

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


# ---- simulate and sweep ------------------------------------------------------

def _error(command: str, message: str) -> int:
    """Print one error line, as argparse does, and return its exit status (2)."""
    # One line whatever the message: a multi-line message would read like a traceback.
    message = "; ".join(line.strip() for line in message.splitlines() if line.strip())
    print(f"pymmu {command}: error: {message}", file=sys.stderr)
    return 2


class _CommandError(Exception):
    """An error worded for the user: ``_run_*`` prints it as one line, exit status 2."""


class _OptionError(_CommandError):
    """A bad option value, reported as ``--OPTION: what is wrong``."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")


# The core numbers frames with 32-bit integers (see pymmu._args.check_machine_args).
_MAX_FRAMES = (1 << 31) - 1


def _int_option(option: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value`` (text from the command line, or an int default) as an int in
    [low, high]; ``_OptionError`` naming ``option`` otherwise."""
    if isinstance(value, int):
        n = value
    else:
        try:
            n = int(value, 0)
        except ValueError:
            raise _OptionError(option, f"{value!r} is not an integer") from None
    if low is not None and n < low:
        raise _OptionError(option, f"must be at least {low}, got {n}")
    if high is not None and n > high:
        raise _OptionError(option, f"must be at most {high:,}, got {n}")
    return n


def _page_size_option(value) -> int:
    n = _int_option("--page-size", value)
    if n < 512 or n > 65536 or n & (n - 1):
        raise _OptionError("--page-size",
                           f"must be a power of two from 512 to 65536, got {n}")
    return n


def _describe(e: BaseException) -> str:
    """The message of an exception, or its name when it has none (``MemoryError()``).

    An OSError reads "PATH: No such file or directory" rather than "[Errno 2] ...".
    """
    if isinstance(e, OSError) and e.strerror:
        return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    return str(e) or type(e).__name__


def _check_progress(args: argparse.Namespace) -> None:
    """``--progress`` asks for a bar: say so now if tqdm is missing, before any work.

    (Without ``--progress`` a missing tqdm only means no bar, as in the library.)
    """
    if args.progress:
        try:
            import tqdm.auto  # noqa: F401
        except ImportError:
            raise _CommandError("--progress needs tqdm: pip install 'pymmu[progress]'"
                                ) from None


def _check_plot(path: str) -> None:
    """Fail now, not after the whole grid has run, if ``--plot path`` cannot be written."""
    import os

    from pymmu.plot import _require_matplotlib

    try:
        _require_matplotlib()
    except ImportError as e:
        raise _OptionError("--plot", _describe(e)) from None
    from matplotlib.backend_bases import FigureCanvasBase

    ext = os.path.splitext(path)[1][1:].lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if ext and ext not in formats:   # no extension at all: matplotlib writes PNG
        raise _OptionError("--plot", f"{path}: matplotlib cannot write .{ext} files "
                                     f"(it writes {', '.join(sorted(formats))})")
    if os.path.isdir(path):
        raise _OptionError("--plot", f"{path} is a directory")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise _OptionError("--plot", f"{path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise _OptionError("--plot", f"{path}: directory {directory} is not writable")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise _OptionError("--plot", f"{path}: the file is not writable")


def _out_of_memory(frames: int, page_size: int) -> _CommandError:
    # The machine's memory is one array of frames x page_size bytes, allocated up front.
    need = (frames + 1) * page_size
    return _CommandError(f"not enough memory for {frames:,} frames of {page_size:,} "
                         f"bytes ({need / 2**30:,.1f} GiB); try a smaller --frames")


def _add_trace_args(p, *, seed: bool = True) -> None:
    p.add_argument("trace", metavar="TRACE", nargs="?",
                   help="trace file: Valgrind lackey (--trace-mem=yes) output or simple "
                        "'R ADDR' / 'W ADDR' lines, plain or compressed (xz, gzip, bz2), "
                        "or a binary trace (pymmu convert); read streaming, in memory "
                        "that does not grow with its length")
    p.add_argument("--sample", metavar="NAME", default=None,
                   help="use a sample trace shipped with pymmu instead of TRACE "
                        "(a real program's lackey trace: see pymmu.traces.samples())")
    p.add_argument("--format", choices=("lackey", "simple", "binary"), default=None,
                   help="trace format (default: detected from the file's content)")
    if seed:
        p.add_argument("--page-size", default=4096, metavar="BYTES",
                       help="page size, a power of two from 512 to 65536 (default 4096)")
        p.add_argument("--seed", default=0, metavar="N",
                       help="seed of the random policy's generator (default 0): the same "
                            "seed gives the same run; the other policies ignore it")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="always show progress bars (reading, then running; needs tqdm: "
                        "pip install 'pymmu[progress]')")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="never show a progress bar (default: on a terminal, for long runs)")


def _trace_arg(args: argparse.Namespace) -> str:
    """The trace file's path: TRACE, or the sample --sample names."""
    from pymmu.traces import sample, samples

    if (args.trace is None) == (args.sample is None):
        raise _CommandError("give a TRACE file or --sample NAME (one of "
                            f"{', '.join(samples())})")
    if args.sample is not None:
        try:
            return sample(args.sample)
        except ValueError as e:
            raise _OptionError("--sample", str(e)) from None
    return args.trace


def _print_csv(rows: list[dict]) -> None:
    """The rows as CSV on stdout, a header of their keys first."""
    import csv

    # "\n" rather than csv's "\r\n": this is a Unix pipe, not a file for Excel.
    w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)


def _fmt_rate(rate: float) -> str:
    return f"{100 * rate:.4f} %"


def _run_simulate(args: argparse.Namespace) -> int:
    try:
        return _simulate_command(args)
    except _CommandError as e:
        return _error("simulate", str(e))


def _simulate_command(args: argparse.Namespace) -> int:
    import json
    import os

    from pymmu.errors import MMUError
    from pymmu.simulate import simulate

    # Check the options before reading the trace, which may take a while.
    frames = _int_option("--frames", args.frames, 1, _MAX_FRAMES)
    page_size = _page_size_option(args.page_size)
    seed = _int_option("--seed", args.seed)
    _check_progress(args)
    trace = _trace_arg(args)
    try:
        r = simulate(trace, frames, args.policy, page_size, seed=seed, format=args.format,
                     progress=args.progress)
    except MemoryError:
        raise _out_of_memory(frames, page_size) from None
    except (OSError, ValueError, TypeError, OverflowError, MMUError) as e:
        raise _CommandError(_describe(e)) from None
    if args.json:
        out = {"trace": trace, **r}
        print(json.dumps(out, indent=2))
        return 0
    if args.csv:
        _print_csv([r])
        return 0
    from pymmu._args import STAT_NAMES

    ps = r["page_size"]
    print(f"trace     {os.path.basename(trace)}: {r['records']:,} accesses, "
          f"{r['references']:,} page references, {r['distinct_pages']:,} distinct pages")
    print(f"machine   {r['frames']:,} frames of {ps:,} bytes, policy {r['policy']}, "
          f"{r['swap_slots']:,} swap slots, zero page off")
    rows = [(k, f"{r[k]:,}") for k in STAT_NAMES if r[k]]
    rows += [("faults", f"{r['faults']:,}"), ("fault rate", _fmt_rate(r["fault_rate"]))]
    wk = max(len(k) for k, _ in rows)
    wv = max(len(v) for _, v in rows)
    print()
    print(f"{'counter':<{wk}}  {'value':>{wv}}")
    for k, v in rows:
        print(f"{k:<{wk}}  {v:>{wv}}")
    return 0


def add_simulate(sub) -> None:
    from pymmu._args import POLICIES

    p = sub.add_parser(
        "simulate",
        help="replay a memory trace on one machine and print its counters",
        description="Replay a memory trace in one process on a machine with N frames "
                    "and print the counters of the run (the nonzero ones), the faults "
                    "and the fault rate (faults per page reference). The machine has "
                    "no shared zero page, so faults equal the misses of a textbook "
                    "simulator of the policy, and one swap slot per distinct page, so "
                    "it never runs out of memory.",
    )
    _add_trace_args(p)
    p.add_argument("--frames", required=True, metavar="N",
                   help="user frames of the machine")
    p.add_argument("--policy", choices=POLICIES, default="clock",
                   help="page replacement policy (default clock)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true",
                   help="print the counters and derived numbers as JSON")
    g.add_argument("--csv", action="store_true",
                   help="print them as CSV: a header line of names, then one row")
    p.set_defaults(func=_run_simulate)


def _run_sweep(args: argparse.Namespace) -> int:
    try:
        return _sweep_command(args)
    except _CommandError as e:
        return _error("sweep", str(e))


def _sweep_command(args: argparse.Namespace) -> int:
    import json
    import os
    from concurrent.futures import BrokenExecutor

    from pymmu._args import STAT_NAMES
    from pymmu.errors import MMUError
    from pymmu.simulate import _policies_list, parse_frames, sweep

    # Check every option before reading the trace and running the grid.
    if args.show not in ("fault_rate", "faults", *STAT_NAMES):
        raise _OptionError("--show", f"{args.show!r} is not fault_rate, faults or a "
                                     f"counter ({', '.join(STAT_NAMES)})")
    try:
        frames = parse_frames(args.frames) if args.frames else None
    except ValueError as e:
        raise _OptionError("--frames", str(e)) from None
    if frames and frames[-1] > _MAX_FRAMES:
        raise _OptionError("--frames", f"must be at most {_MAX_FRAMES:,}, got {frames[-1]}")
    try:
        policies = _policies_list(args.policies)
    except ValueError as e:
        raise _OptionError("--policies", str(e)) from None
    page_size = _page_size_option(args.page_size)
    workers = None if args.workers is None else _int_option("--workers", args.workers, 1)
    seed = _int_option("--seed", args.seed)
    if args.log_y and not args.plot:
        raise _OptionError("--log-y", "applies to the chart: give --plot FILE too")
    if args.plot:
        _check_plot(args.plot)
    _check_progress(args)
    trace = _trace_arg(args)
    try:
        result = sweep(trace, frames, policies, page_size=page_size, seed=seed,
                       format=args.format, scheduler=args.scheduler, max_workers=workers,
                       progress=args.progress)
    except MemoryError:
        raise _out_of_memory(frames[-1] if frames else 0, page_size) from None
    except BrokenExecutor:
        # A worker process died without a Python exception: most often the
        # kernel's out-of-memory killer, for a machine too big for this host.
        raise _CommandError("a worker process died (out of memory?) running the grid; "
                            "try a smaller --frames or fewer --workers") from None
    except (OSError, ValueError, TypeError, OverflowError, ImportError, MMUError) as e:
        raise _CommandError(_describe(e)) from None
    result.name = os.path.basename(trace)
    if args.json:
        print(json.dumps({"trace": trace, "rows": result.to_dicts()}, indent=2))
    elif args.csv:
        _print_csv(result.to_dicts())
    else:
        r = result.rows[0]
        what = ("fault rate (faults per page reference)" if args.show == "fault_rate"
                else args.show)
        print(f"{what}: {result.name}, "
              f"{r['records']:,} accesses, {r['references']:,} page references, "
              f"{r['distinct_pages']:,} distinct pages of {result.page_size:,} bytes")
        print()
        print(result.table(args.show))
    if args.plot:
        # The chart shows what the table shows.
        try:
            result.plot(args.plot, key=args.show, log_y=args.log_y)
        except (ImportError, OSError, ValueError) as e:
            raise _OptionError("--plot", _describe(e)) from None
        if not (args.json or args.csv):   # keep machine-read output clean
            what = "miss-ratio" if args.show == "fault_rate" else args.show
            print(f"\n{what} curves written to {args.plot}")
    return 0


def add_sweep(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="fault rates over a grid of policies and frame counts (miss-ratio curves)",
        description="Simulate a trace for every policy and frame count of a grid and "
                    "print the fault rates (or, with --show, a counter) as a table "
                    "(rows: frames, columns: policies), or as JSON or CSV rows, "
                    "optionally plotting the same numbers as one curve per policy "
                    "(the miss-ratio curves). Each cell "
                    "is an independent task on a local process pool, or on a Dask "
                    "distributed cluster with --scheduler.",
    )
    _add_trace_args(p)
    p.add_argument("--frames", default=None, metavar="LIST",
                   help="frame counts: '16,32,64', or 'LOW:HIGH' for the powers of two "
                        "from LOW to HIGH ('3:20' is 4,8,16), or a mix (default: 4, 8, "
                        "... up to the first power of two that holds every distinct "
                        "page)")
    p.add_argument("--policies", default="clock,lru,fifo,opt", metavar="LIST",
                   help="comma-separated policies (default clock,lru,fifo,opt; also random)")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="also draw the curves of what the table shows (--show: the "
                        "miss ratio by default) into this file, one per policy; the "
                        "format follows the extension (needs matplotlib: pip install "
                        "'pymmu[plot]')")
    p.add_argument("--log-y", action="store_true",
                   help="logarithmic y axis for --plot (symmetric-log: values of 0 "
                        "stay on the chart)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run the cells on this Dask distributed scheduler "
                        "(tcp://host:8786; needs pip install 'pymmu[dask]')")
    p.add_argument("--workers", default=None, metavar="N",
                   help="local worker processes (default: one per CPU; 1 runs the "
                        "cells in this process)")
    p.add_argument("--show", default="fault_rate", metavar="COUNTER",
                   help="what the table and --plot show: fault_rate (default) or a "
                        "counter such as faults or evictions")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true",
                   help="print one JSON row per cell instead of the table")
    g.add_argument("--csv", action="store_true",
                   help="print one CSV row per cell instead of the table (a header "
                        "line of names first)")
    p.set_defaults(func=_run_sweep)


def _run_convert(args: argparse.Namespace) -> int:
    try:
        return _convert_command(args)
    except _CommandError as e:
        return _error("convert", str(e))


def _convert_command(args: argparse.Namespace) -> int:
    import os

    from pymmu.errors import MMUError
    from pymmu.simulate import _ReadBar
    from pymmu.traces import convert

    _check_progress(args)
    trace = _trace_arg(args)
    try:
        with _ReadBar(args.progress, trace) as bar:
            n = convert(trace, args.out, format=args.format, _progress=bar.to)
    except MemoryError:
        raise _CommandError("not enough memory to convert the trace") from None
    except (OSError, ValueError, TypeError, MMUError) as e:
        raise _CommandError(_describe(e)) from None
    print(f"{os.path.basename(trace)}: {n:,} records written to {args.out} "
          f"({os.path.getsize(args.out):,} bytes, pymmu binary trace)")
    return 0


def add_convert(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a trace to pymmu's binary format (fast to open, memory-mapped)",
        description="Read a trace (lackey or simple text, plain or compressed) "
                    "streaming, and write it in pymmu's binary trace format: a fixed "
                    "header and three columns that pymmu.traces.load maps in O(1). "
                    "The output appears only once complete.",
    )
    _add_trace_args(p, seed=False)
    p.add_argument("out", metavar="OUT", help="the binary trace file to write")
    p.set_defaults(func=_run_convert)


# The subcommands, in the order `pymmu --help` lists them.
COMMANDS = [add_demo, add_simulate, add_sweep, add_convert]


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
