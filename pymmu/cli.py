"""The ``pymmu`` command line: one subcommand per job.

Each subcommand is registered by an ``add_<name>(subparsers)`` function that
builds its parser and sets ``func``, the callable that runs it and returns the exit
status. Adding a command (``simulate``, ``sweep``) is one more such function and
one more entry in ``COMMANDS``; ``main`` does not change.

``simulate``, ``sweep`` and ``thrash`` check their option values before reading
a trace, and report every failure (a bad option, an unreadable trace, a machine too big
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


# ---- thrash ------------------------------------------------------------------

def _run_thrash(args: argparse.Namespace) -> int:
    try:
        return _thrash_command(args)
    except _CommandError as e:
        return _error("thrash", str(e))


def _load_control_option(text: str):
    """``--load-control``: "ws:W" (W >= 1), "none", or "auto" (one pass of a job)."""
    text = text.strip()
    if text in ("none", "auto"):
        return None if text == "none" else "auto"
    kind, _, window = text.partition(":")
    if kind != "ws" or not window:
        raise _OptionError("--load-control", f"{text!r} is not ws:WINDOW (a window of "
                                             "page references, e.g. ws:40000) or none")
    return _int_option("--load-control", window, 1, (1 << 63) - 1)


def _thrash_traces(args: argparse.Namespace) -> list[str]:
    """The trace files: TRACE arguments, then the samples --sample names."""
    from pymmu.traces import sample, samples

    paths = list(args.trace)
    for text in args.sample or []:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if names == ["all"]:
            names = list(samples())
        if not names:
            raise _OptionError("--sample", f"{text!r} names no sample")
        for name in names:
            try:
                paths.append(sample(name))
            except ValueError as e:
                raise _OptionError("--sample", str(e)) from None
    if not paths:
        raise _CommandError("give TRACE files or --sample NAMES (comma-separated, or "
                            f"all: {', '.join(samples())})")
    return paths


def _thrash_command(args: argparse.Namespace) -> int:
    import json
    from concurrent.futures import BrokenExecutor

    from pymmu import thrashing
    from pymmu._args import POLICIES
    from pymmu.errors import MMUError

    # Check every option before reading a trace.
    frames = None if args.frames is None else _int_option("--frames", args.frames, 1,
                                                          _MAX_FRAMES)
    max_degree = _int_option("--max-degree", args.max_degree, 1)
    records = _int_option("--records", args.records, 0)
    repeat = _int_option("--repeat", args.repeat, 1)
    big = (1 << 63) - 1
    io_every = _int_option("--io-every", args.io_every, 0, big)
    io_ns = _int_option("--io-ns", args.io_ns, 0, big)
    quantum = _int_option("--quantum", args.quantum, 1, big)
    disk_ns = _int_option("--disk-ns", args.disk_ns, 0, big)
    load_control = _load_control_option(args.load_control)
    if args.policy == "opt":
        raise _OptionError("--policy", "opt needs the future of one reference string and "
                                       "cannot run many processes: use "
                                       + ", ".join(p for p in POLICIES if p != "opt"))
    if args.policy not in POLICIES:
        raise _OptionError("--policy", f"{args.policy!r} is not one of "
                                       + ", ".join(p for p in POLICIES if p != "opt"))
    page_size = _page_size_option(args.page_size)
    seed = _int_option("--seed", args.seed)
    workers = None if args.workers is None else _int_option("--workers", args.workers, 1)
    if args.plot:
        _check_plot(args.plot)
    _check_progress(args)
    paths = _thrash_traces(args)
    try:
        result = thrashing.thrash(
            paths, frames, max_degree, load_control=load_control, records=records,
            repeat=repeat, io_every=io_every, io_ns=io_ns, quantum=quantum,
            disk_ns=disk_ns, policy=args.policy, page_size=page_size, seed=seed,
            format=args.format, reference=args.reference, scheduler=args.scheduler,
            max_workers=workers, progress=args.progress)
    except MemoryError:
        raise _out_of_memory(frames or 0, page_size) from None
    except BrokenExecutor:
        raise _CommandError("a worker process died (out of memory?) running the "
                            "degrees; try a smaller --frames or fewer --workers") from None
    except (OSError, ValueError, TypeError, OverflowError, ImportError, MMUError) as e:
        raise _CommandError(_describe(e)) from None
    if args.json:
        print(json.dumps({"paths": paths, **result.as_dict()}, indent=2))
    elif args.csv:
        _print_csv(result.to_dicts())
    else:
        _print_thrash(result)
    if args.plot:
        try:
            result.plot(args.plot)
        except (ImportError, OSError, ValueError) as e:
            raise _OptionError("--plot", _describe(e)) from None
        if not (args.json or args.csv):
            print(f"\nDenning's curve written to {args.plot}")
    return 0


def _print_thrash(result) -> None:
    p = result.params
    names = list(dict.fromkeys(result.names))
    pages = ", ".join(f"{n} {g:,}" for n, g in dict(zip(result.names, result.pages)).items())
    what = (f"the first {p['records']:,} records of each" if p["records"]
            else "each whole trace")
    print(f"jobs      {', '.join(names)} in turn, each in its own process: {what}, "
          f"{p['repeat']:,} time{'s' if p['repeat'] != 1 else ''} over "
          f"(distinct pages: {pages})")
    io = (f"an I/O burst of {p['io_ns']:,} ns every {p['io_every']:,} references"
          if p["io_every"] else "no I/O bursts")
    print(f"machine   {result.frames:,} frames of {p['page_size']:,} bytes, policy "
          f"{p['policy']}; disk {p['cost']['disk_read']:,} ns a page; {io}; "
          f"quantum {p['quantum']:,}")
    print()
    print(result.table())
    none = result.utilization()
    peak = max(none)
    at = result.degrees[none.index(peak)]
    last = result.degrees[-1]
    print()
    d = result.thrashing_degree()
    if d is None:
        print(f"the jobs' pages fit in {result.frames:,} frames up to degree {last}: "
              "try a larger --max-degree or a smaller --frames")
    else:
        print(f"from degree {d} the jobs' pages exceed the {result.frames:,} frames")
    summary = (f"peak utilization {100 * peak:.1f} % at degree {at}; at degree {last}: "
               f"{100 * none[-1]:.1f} % without load control")
    if len(result.windows) > 1:
        summary += (f", {100 * result.utilization(True)[-1]:.1f} % with "
                    f"{result.settings[1]}")
    print(summary)


def add_thrash(sub) -> None:
    from pymmu import thrashing as t

    p = sub.add_parser(
        "thrash",
        help="CPU utilization against the degree of multiprogramming, without and "
             "with working-set load control (Denning's curve)",
        description="For each degree of multiprogramming d from 1 to --max-degree, run "
                    "d jobs (the traces in turn, each in its own process) on a fresh "
                    "machine with one CPU, one paging disk and per-job I/O bursts "
                    "(pymmu.Machine.run), once without load control and once with "
                    "working-set load control, and print the CPU utilization against "
                    "d: it rises while the jobs' pages fit in memory, collapses when "
                    "they do not (thrashing), and load control keeps it near its peak. "
                    "Each degree is an independent cell on a local process pool, or "
                    "on a Dask cluster with --scheduler.",
    )
    p.add_argument("trace", metavar="TRACE", nargs="*",
                   help="trace files (lackey, simple or binary; plain or compressed), "
                        "run by the jobs in turn")
    p.add_argument("--sample", metavar="NAMES", action="append", default=None,
                   help="sample traces shipped with pymmu, comma-separated, or all "
                        "(ls,sort,gzip,sed); may be repeated and mixed with TRACE files")
    p.add_argument("--format", choices=("lackey", "simple", "binary"), default=None,
                   help="format of the TRACE files (default: detected from the content)")
    p.add_argument("--frames", default=None, metavar="N",
                   help="user frames of the machine (default: the pages of jobs 1 to "
                        "max-degree/2, rounded up: memory holds half the jobs)")
    p.add_argument("--max-degree", default=t.DEFAULT_MAX_DEGREE, metavar="K",
                   help=f"run degrees 1 to K (default {t.DEFAULT_MAX_DEGREE})")
    p.add_argument("--load-control", default="auto", metavar="ws:W",
                   help="the load-controlled runs: working-set load control with a "
                        "window of W page references, or none (default: ws:R, R the "
                        "records of one pass, so a job's working set is its pages)")
    p.add_argument("--records", default=t.DEFAULT_RECORDS, metavar="R",
                   help="each job runs the first R records of its trace (default "
                        f"{t.DEFAULT_RECORDS:,}; 0: the whole trace)")
    p.add_argument("--repeat", default=t.DEFAULT_REPEAT, metavar="N",
                   help=f"...N times in a row (default {t.DEFAULT_REPEAT}): a loop over "
                        "the same pages, so that jobs run long compared with loading them")
    p.add_argument("--io-every", default=t.DEFAULT_IO_EVERY, metavar="N",
                   help="a job's I/O burst comes after every N page references "
                        f"(default {t.DEFAULT_IO_EVERY:,}; 0: no I/O)")
    p.add_argument("--io-ns", default=t.DEFAULT_IO_NS, metavar="NS",
                   help=f"and lasts NS nanoseconds (default {t.DEFAULT_IO_NS:,})")
    p.add_argument("--quantum", default=t.DEFAULT_QUANTUM, metavar="N",
                   help=f"page references per time slice (default {t.DEFAULT_QUANTUM:,})")
    p.add_argument("--disk-ns", default=t.DEFAULT_DISK_NS, metavar="NS",
                   help="nanoseconds of one paging-disk read or write (default "
                        f"{t.DEFAULT_DISK_NS:,}); the other costs are pymmu.Cost()'s")
    p.add_argument("--policy", default="clock", metavar="POLICY",
                   help="page replacement: clock (default), fifo, lru, random or mru")
    p.add_argument("--page-size", default=4096, metavar="BYTES",
                   help="page size, a power of two from 512 to 65536 (default 4096)")
    p.add_argument("--seed", default=0, metavar="N",
                   help="seed of the random policy's generator (default 0)")
    p.add_argument("--reference", action="store_true",
                   help="run on pymmu.reference.Machine, the pure-Python model (same "
                        "numbers, far slower: use a small --records)")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="also draw Denning's curve (utilization against degree, one line "
                        "per setting) into this file (needs matplotlib: pip install "
                        "'pymmu[plot]')")
    p.add_argument("--scheduler", "--dask", dest="scheduler", metavar="ADDRESS",
                   default=None,
                   help="run the cells on this Dask distributed scheduler "
                        "(tcp://host:8786; needs pip install 'pymmu[dask]')")
    p.add_argument("-j", "--workers", default=None, metavar="N",
                   help="local worker processes (default: one per CPU; 1 runs the "
                        "cells in this process)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true",
                   help="print the model and one JSON row per cell instead of the table")
    g.add_argument("--csv", action="store_true",
                   help="print one CSV row per cell instead of the table")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="always show a progress bar over the cells (needs tqdm)")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="never show a progress bar (default: on a terminal)")
    p.set_defaults(func=_run_thrash)


# The subcommands, in the order `pymmu --help` lists them.
COMMANDS = [add_demo, add_simulate, add_sweep, add_convert, add_thrash]


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
