"""Trace simulation: one run (:func:`simulate`) and grids of runs (:func:`sweep`).

This is the library side of ``pymmu simulate`` and ``pymmu sweep``.

The machine a simulation runs on
--------------------------------
Every run builds a fresh :class:`pymmu.Machine` with

* ``zero_page=False``: a first read allocates a zero-filled frame instead of
  mapping the shared zero page, so every page the trace touches competes for
  frames and ``faults = minor_faults + major_faults`` equals the miss count of
  a textbook simulator of the same policy on the page-number sequence
  (``Trace.pages(page_size)``); the fault rate is that miss count divided by
  the number of page references (the miss ratio);
* ``swap_slots`` = the number of distinct pages the trace touches
  (``Trace.distinct_pages(page_size)``), so eviction never runs out of swap and
  no trace ends in ``OutOfMemory``, whatever the frame count;
* the trace replayed in one process whose whole address space (``2**va_bits``
  bytes) is one private anonymous rwx mapping, as ``Machine.replay`` does.

Traces of any length
--------------------
A trace given as a path is never held whole: one streaming pass converts it to
pymmu's binary format in a temporary file (a binary trace is used as it is)
while counting its records, page references and distinct pages, and the
replay then streams that file one chunk at a time (``Machine.replay`` of an
iterable gives exactly the counters of the whole). So a run's memory does not
grow with the trace's length. The exception is ``opt``: Belady's policy needs
the whole future, so it maps the binary file whole and keeps its look-ahead,
8 bytes per page reference.

Progress
--------
With ``progress``, a tqdm bar (the ``progress`` extra) covers reading the file
and then the replay; without tqdm there is no bar and no error.

Sweeps
------
:func:`sweep` runs one independent task per (policy, frames) cell, on a local
``concurrent.futures.ProcessPoolExecutor`` or on a Dask distributed cluster
(``client=`` or ``scheduler=``). The trace is converted once to a binary file
that the local pool's workers map (the page cache holds it once for all of
them); on Dask, the loaded binary trace is scattered to every worker once and
each cell is one task. Dask and matplotlib are imported only when used.

>>> from pymmu.traces import Trace
>>> t = Trace([0x1000, 0x2000, 0x3000, 0x1000, 0x4000, 0x1000])
>>> r = simulate(t, frames=2, policy="lru")
>>> r["faults"], r["references"], r["fault_rate"]
(5, 6, 0.8333333333333334)
>>> table = sweep(t, [1, 2, 4], ["fifo", "opt"], max_workers=1)
>>> table
SweepResult(2 policies x 3 frame counts, page_size 4096)
>>> table.fault_rate("opt", 2), table.fault_rate("fifo", 2)
(0.6666666666666666, 0.8333333333333334)
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from pymmu._args import POLICIES, as_int, check_machine_args, positive_int

__all__ = [
    "DEFAULT_CHUNK", "DEFAULT_POLICIES", "SweepResult", "default_frames",
    "detect_format", "load_trace", "parse_frames", "simulate", "sweep",
]

#: Records per ``replay`` call when a run is chunked (for a progress bar).
DEFAULT_CHUNK = 1 << 16
#: The policies ``sweep`` (and ``pymmu sweep``) compare by default.
DEFAULT_POLICIES = ("clock", "lru", "fifo", "opt")
#: Traces with at least this many records count as "long": with ``progress=None``
#: (auto) they get a bar when stderr is a terminal.
LONG_TRACE = 1 << 20
#: Files of at least this many bytes get a reading bar with ``progress=None``.
LONG_FILE = 1 << 24

_DERIVED = ("records", "references", "distinct_pages", "faults", "fault_rate")


# --------------------------------------------------------------------------
# Trace files
# --------------------------------------------------------------------------

def load_trace(path, format: str | None = None):
    """Read a whole trace file (``format``: "lackey", "simple", "binary" or None to
    detect it): :func:`pymmu.traces.read`."""
    from pymmu.traces import read

    return read(path, format)


def detect_format(path) -> str:
    """The format of a trace file: :func:`pymmu.traces.detect_format`."""
    from pymmu.traces import detect_format as detect

    return detect(path)


def _is_path(trace) -> bool:
    return isinstance(trace, (str, os.PathLike))


def _check_trace(trace) -> None:
    from pymmu.traces import Trace

    if not isinstance(trace, Trace) and not _is_path(trace):
        raise TypeError(f"trace must be a pymmu.traces.Trace or a path, "
                        f"not {type(trace).__name__}")


def _count(chunks, page_size: int) -> dict[str, int]:
    """Records, page references and distinct pages of a trace, chunk by chunk."""
    from pymmu._tracefile import PageSet

    pages = PageSet(page_size.bit_length() - 1)
    records = 0
    for t in chunks:
        pages.add(t.addr, t.size)
        records += len(t)
    return {"records": records, "references": pages.references,
            "distinct_pages": pages.count}


@contextlib.contextmanager
def _prepared(trace, page_size: int, progress, format=None, *, to_file: bool):
    """The trace as cells replay it: ``(source, counts, name)``.

    ``source`` is a Trace, or the path of a binary trace file: a path given
    as text is converted into a temporary directory (removed on exit) in the
    same pass that counts it; with ``to_file``, a Trace is saved there too,
    so that worker processes can map it. ``counts`` is :func:`_count`'s dict.
    """
    from pymmu import trace_io
    from pymmu.traces import Trace

    _check_trace(trace)
    if isinstance(trace, Trace) and not to_file:
        yield trace, _count([trace], page_size), None
        return
    name = os.path.basename(os.fspath(trace)) if _is_path(trace) else None
    if _is_path(trace) and format is None:
        format = trace_io.detect_format(trace)
    if format == "binary":
        with _ReadBar(progress, trace) as bar:
            counts = _count(trace_io.stream(trace, format="binary", _progress=bar.to),
                            page_size)
        yield os.fspath(trace), counts, name
        return
    with tempfile.TemporaryDirectory(prefix="pymmu-") as tmp:
        out = os.path.join(tmp, "trace.pmt")
        w = trace_io.TraceWriter(out)
        try:
            if isinstance(trace, Trace):
                chunks = [trace]
                counts = _count(chunks, page_size)
                w.write(trace)
            else:
                with _ReadBar(progress, trace) as bar:
                    def written():
                        for t in trace_io.stream(trace, format=format, _progress=bar.to):
                            w.write(t)
                            yield t
                    counts = _count(written(), page_size)
        except BaseException:
            w.abort()
            raise
        w.close()
        yield out, counts, name


def _chunks(source, chunk_size: int):
    """The chunks a cell replays: slices of a Trace, or a binary file streamed."""
    from pymmu.traces import Trace, stream

    if isinstance(source, Trace):
        return (source[i:i + chunk_size] for i in range(0, len(source), chunk_size))
    return stream(source, format="binary", chunk=chunk_size)


# --------------------------------------------------------------------------
# Progress bar (tqdm, optional)
# --------------------------------------------------------------------------

class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress_bar(progress, total: int, long: bool, **kw):
    """A tqdm bar, or a do-nothing stand-in when progress is off or tqdm is missing.

    ``progress``: True (always, if tqdm is installed), False (never) or None
    (auto: when ``long`` and stderr is a terminal).
    """
    if progress is False or (progress is None and not long):
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, disable=None if progress is None else False,
                file=sys.stderr, dynamic_ncols=True, leave=False, **kw)


class _ReadBar:
    """A bar over the bytes of a file being read, fed fractions of it."""

    def __init__(self, progress, path):
        self.size = max(os.path.getsize(path), 1)
        self.bar = _progress_bar(progress, self.size, self.size >= LONG_FILE, unit="B",
                                 unit_scale=True, desc=f"reading {os.path.basename(path)}")
        self.done = 0

    def to(self, fraction: float) -> None:
        now = min(int(fraction * self.size), self.size)
        if now > self.done:
            self.bar.update(now - self.done)
            self.done = now

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()


# --------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------

def _check_policy(policy) -> str:
    if not isinstance(policy, str):
        raise TypeError(f"policy must be a str, not {type(policy).__name__}")
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    return policy


def simulate(trace, frames, policy="clock", page_size=4096, *, va_bits=48,
             tlb_entries=64, seed=0, swap_slots=None, chunk_size=None, format=None,
             progress=False) -> dict[str, Any]:
    """Replay ``trace`` on a fresh machine and return its counters and fault rate.

    Parameters
    ----------
    trace : pymmu.traces.Trace or path
        The trace. A path (lackey, simple or binary; plain or compressed; the
        format detected) is streamed, in memory independent of its length:
        see the module notes.
    frames : int
        User frames of the machine (at least 1).
    policy : str
        Page replacement: "clock", "fifo", "lru", "random" or "opt".
    page_size : int
        A power of two from 512 to 65536.
    va_bits, tlb_entries
        Passed to :class:`pymmu.Machine`.
    seed : int
        Seed of the "random" policy's generator (passed to
        :class:`pymmu.Machine`); the same seed gives the same run. The other
        policies do not use it.
    swap_slots : int, optional
        Default (None): the number of distinct pages of the trace, so that the
        run can never run out of memory. :func:`sweep` computes it once and
        passes it to every cell.
    format : str, optional
        The format of a trace file ("lackey", "simple", "binary"); default:
        detected from its content.
    chunk_size : int, optional
        Records per chunk of the streamed replay (the counters are the same
        whatever it is); default :data:`DEFAULT_CHUNK`. Ignored for "opt",
        which always replays the whole trace in one call.
    progress : bool or None
        Show tqdm progress bars on stderr, for reading the file and for the
        replay: True, False (default) or None (only for long traces and when
        stderr is a terminal). No bar, and no error, when tqdm is not installed.

    Returns
    -------
    dict
        ``policy``, ``frames``, ``page_size``, ``swap_slots``; the trace's
        ``records`` (accesses), ``references`` (page references: a record that
        crosses a page boundary makes one per page) and ``distinct_pages``;
        every counter of ``Machine.stats`` for the run; ``faults`` =
        ``minor_faults + major_faults`` (the textbook miss count: see the
        module notes) and ``fault_rate`` = ``faults / references`` (0.0 for an
        empty trace).

    Raises
    ------
    pymmu.MemoryFault
        A record lies above ``2**va_bits``; its ``.index`` is the record's
        position in the whole trace.
    pymmu.traces.TraceError
        The file is not a trace, or has a bad line (file and line number).
    """
    _check_trace(trace)
    policy = _check_policy(policy)
    page_size = as_int(page_size, "page_size")
    check_machine_args(frames, page_size, 0, policy, va_bits, None, tlb_entries, seed)
    if chunk_size is not None:
        chunk_size = positive_int(chunk_size, "chunk_size")
    with _prepared(trace, page_size, progress, format, to_file=False) as (source, counts, _):
        if swap_slots is None:
            swap_slots = counts["distinct_pages"]
        return _simulate(source, frames, policy, page_size, counts, swap_slots=swap_slots,
                         va_bits=va_bits, tlb_entries=tlb_entries, seed=seed,
                         chunk_size=chunk_size, progress=progress)


def _simulate(source, frames, policy, page_size, counts, *, swap_slots, va_bits=48,
              tlb_entries=64, seed=0, chunk_size=None, progress=False) -> dict[str, Any]:
    """:func:`simulate` on a prepared source (see :func:`_prepared`) whose counts are known."""
    from pymmu import Machine
    from pymmu.traces import Trace, load

    m = Machine(frames, page_size=page_size, swap_slots=swap_slots, policy=policy,
                va_bits=va_bits, zero_page=False, tlb_entries=tlb_entries, seed=seed)
    n = counts["records"]
    bar = _progress_bar(progress, n, n >= LONG_TRACE, unit="rec", unit_scale=True,
                        desc=f"{policy} {m.frames} frames")
    try:
        if policy == "opt":
            # the look-ahead must see the whole trace: one replay of all of it
            counters = m.replay(source if isinstance(source, Trace) else load(source))
            bar.update(n)
        else:
            def counted():
                for chunk in _chunks(source, chunk_size or DEFAULT_CHUNK):
                    yield chunk
                    bar.update(len(chunk))
            counters = m.replay(counted())
    finally:
        bar.close()
    faults = counters["minor_faults"] + counters["major_faults"]
    references = counts["references"]
    result: dict[str, Any] = {
        "policy": policy,
        "frames": m.frames,
        "page_size": m.page_size,
        "swap_slots": m.swap_slots,
        **counts,
    }
    result.update(counters)
    result["faults"] = faults
    result["fault_rate"] = faults / references if references else 0.0
    return result


# --------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------

def rows_to_pandas(rows: list, owner: str):
    """``rows`` (dicts) as a ``pandas.DataFrame``, for ``owner.to_pandas``; pandas
    (the ``pandas`` extra) is imported only here."""
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError(f"{owner}.to_pandas needs pandas: pip install "
                          "'pymmu[pandas]' (or pandas)") from e
    return pd.DataFrame(rows)


@dataclasses.dataclass
class SweepResult:
    """The result of :func:`sweep`: one row (a :func:`simulate` dict) per cell.

    Attributes
    ----------
    rows : list of dict
        One per (policy, frames) cell, in ``policies`` x ``frames`` order.
    frames : list of int
    policies : list of str
    page_size : int
    name : str or None
        The trace's name (its file name when ``sweep`` read it from a path).
    """

    rows: list
    frames: list
    policies: list
    page_size: int = 4096
    name: str | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def row(self, policy: str, frames: int) -> dict:
        """The row of one cell (``KeyError`` if the sweep did not run it)."""
        for r in self.rows:
            if r["policy"] == policy and r["frames"] == frames:
                return r
        raise KeyError((policy, frames))

    def fault_rate(self, policy: str, frames: int) -> float:
        """Faults per page reference of one cell."""
        return self.row(policy, frames)["fault_rate"]

    def matrix(self, key: str = "fault_rate") -> np.ndarray:
        """``key`` of every cell as an array, rows ``frames``, columns ``policies``."""
        out = np.empty((len(self.frames), len(self.policies)),
                       dtype=float if key == "fault_rate" else np.int64)
        for i, f in enumerate(self.frames):
            for j, p in enumerate(self.policies):
                out[i, j] = self.row(p, f)[key]
        return out

    def __repr__(self) -> str:
        # The dataclass repr would print every row: a wall of dicts.
        def count(n: int, one: str, many: str) -> str:
            return f"{n} {one if n == 1 else many}"

        trace = f"trace {self.name!r}, " if self.name is not None else ""
        return (f"SweepResult({trace}{count(len(self.policies), 'policy', 'policies')} x "
                f"{count(len(self.frames), 'frame count', 'frame counts')}, "
                f"page_size {self.page_size})")

    def to_dicts(self) -> list[dict]:
        """The rows as plain dicts (JSON-ready)."""
        return [dict(r) for r in self.rows]

    def to_pandas(self):
        """The rows as a ``pandas.DataFrame``: one row per cell, one column per key.

        pandas (the ``pandas`` extra) is imported here, not with this module.
        """
        return rows_to_pandas(self.to_dicts(), "SweepResult")

    def table(self, key: str = "fault_rate") -> str:
        """A text table: one row per frame count, one column per policy.

        ``key="fault_rate"`` shows percentages; any other key (``"faults"``,
        ``"evictions"``...) shows the integer counter.
        """
        head = ["frames"] + list(self.policies)
        body = []
        for i, f in enumerate(self.frames):
            cells = [f"{f:,}"]
            for p in self.policies:
                v = self.row(p, f)[key]
                cells.append(f"{100 * v:.3f} %" if key == "fault_rate" else f"{v:,}")
            body.append(cells)
        widths = [max(len(r[c]) for r in [head] + body) for c in range(len(head))]
        widths = [max(w, 8) for w in widths]
        lines = ["  ".join(s.rjust(w) for s, w in zip(r, widths)) for r in [head] + body]
        return "\n".join(lines)

    def plot(self, path=None, *, title: str | None = None, key: str = "fault_rate",
             log_y: bool = False):
        """Draw the miss-ratio curves, or those of the counter ``key``, on a linear or
        (``log_y``) symmetric-log y axis (see :func:`pymmu.plot.miss_ratio_curves`)."""
        from pymmu.plot import miss_ratio_curves

        return miss_ratio_curves(self, path, title=title, key=key, log_y=log_y)


# The cell runner, shared by sweep and pymmu.thrashing.thrash: every cell is
# ``fn(shared, *args)``, where ``shared`` (the trace, or the traces) is what
# every cell reads. On the local pool it arrives once per worker, by the pool's
# initializer, and stays in this module global for every cell that worker runs;
# on Dask it is scattered to every worker once.
_WORKER_SHARED = None


def _init_worker(shared) -> None:
    global _WORKER_SHARED
    _WORKER_SHARED = shared


def _pool_cell(fn, *args):
    return fn(_WORKER_SHARED, *args)


def _cell(source, policy: str, frames: int, page_size: int, counts: dict, seed: int) -> dict:
    """One cell of a sweep: swap for every distinct page, so none runs out of memory."""
    return _simulate(source, frames, policy, page_size, counts,
                     swap_slots=counts["distinct_pages"], seed=seed)


def _run_cells(fn, shared, cells: list, *, what: str = "sweep", max_workers=None,
               client=None, scheduler: str | None = None, progress=False,
               dask_shared=None) -> list:
    """``fn(shared, *args)`` for every ``args`` tuple of ``cells``: the results,
    in ``cells`` order.

    The cells run one after another in this process (``max_workers=1``), on a
    local process pool (``max_workers`` workers, default one per CPU and at
    most one per cell), or on a Dask cluster (``client`` or ``scheduler``).
    ``fn`` must be a module-level function (it is pickled to the workers).
    ``dask_shared``, if given, is a callable returning what Dask scatters
    instead of ``shared`` (a file path means nothing on another host).
    ``what`` names the task in messages, progress bars and Dask keys.
    """
    results: list = [None] * len(cells)
    bar = _progress_bar(progress, len(cells), True, unit="cell", desc=what)
    try:
        if client is not None or scheduler is not None:
            data = shared if dask_shared is None else dask_shared()
            _run_dask(fn, data, cells, what, client, scheduler, results, bar)
        else:
            _run_local(fn, shared, cells, max_workers, results, bar)
    finally:
        bar.close()
    return results


def _run_local(fn, shared, cells, max_workers, results, bar) -> None:
    if max_workers is None:
        max_workers = min(len(cells), os.cpu_count() or 1)
    if max_workers == 1:
        for i, args in enumerate(cells):
            results[i] = fn(shared, *args)
            bar.update(1)
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=max_workers, initializer=_init_worker,
                             initargs=(shared,)) as pool:
        futures = {pool.submit(_pool_cell, fn, *args): i for i, args in enumerate(cells)}
        try:
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update(1)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _run_dask(fn, data, cells, what, client, scheduler, results, bar) -> None:
    try:
        from dask.distributed import Client, as_completed
    except ImportError as e:
        raise ImportError(
            f"running a {what} on Dask needs dask.distributed: "
            "pip install 'pymmu[dask]' (or 'dask[distributed]')") from e

    own = client is None
    if own:
        client = Client(scheduler)
    try:
        # the shared data, sent to every worker once (a trace's columns travel as
        # pickled numpy arrays; the cells then use the worker's copy)
        remote = client.scatter(data, broadcast=True)
        futures = {}
        for i, args in enumerate(cells):
            fut = client.submit(fn, remote, *args, pure=False,
                                key=f"pymmu-{what}-{i}-{id(remote):x}")
            futures[fut] = i
        try:
            for fut in as_completed(list(futures)):
                results[futures[fut]] = fut.result()
                bar.update(1)
        finally:
            for fut in futures:
                fut.cancel()
            client.cancel(remote)
    finally:
        if own:
            client.close()


def _frames_list(frames_list) -> list[int]:
    if isinstance(frames_list, (int, np.integer)) and not isinstance(frames_list, bool):
        frames_list = [frames_list]
    out = []
    for f in frames_list:
        f = positive_int(f, "frames")
        if f not in out:
            out.append(f)
    if not out:
        raise ValueError("frames_list is empty")
    return sorted(out)


def _policies_list(policies) -> list[str]:
    if isinstance(policies, str):
        policies = [p.strip() for p in policies.split(",") if p.strip()]
    out = []
    for p in policies:
        p = _check_policy(p)
        if p not in out:
            out.append(p)
    if not out:
        raise ValueError("policies is empty")
    return out


def sweep(trace, frames_list: Iterable[int] | None = None,
          policies: Sequence[str] | str = DEFAULT_POLICIES, *, page_size=4096, seed=0,
          format=None, client=None, scheduler: str | None = None, max_workers: int | None = None,
          progress=False) -> SweepResult:
    """Simulate every (policy, frames) cell of a grid: miss-ratio curves.

    Each cell is an independent :func:`simulate` run on its own machine.

    Parameters
    ----------
    trace : pymmu.traces.Trace or path
        The trace. A path is read once, streaming, into a temporary binary
        file that every cell replays (see the module notes): memory does not
        grow with the trace's length.
    frames_list : iterable of int, optional
        Frame counts (duplicates dropped, sorted). Default:
        :func:`default_frames` of the trace's distinct pages.
    policies : sequence of str, or a comma-separated str
        Policies to compare; default clock, lru, fifo and opt.
    page_size : int
    seed : int
        Seed of the "random" policy, the same for every cell (see
        :func:`simulate`), so that a sweep is reproducible wherever its cells run.
    format : str, optional
        The format of a trace file (see :func:`simulate`).
    client : dask.distributed.Client, optional
        Run the cells on this Dask cluster: the trace is scattered to every
        worker once (``client.scatter(trace, broadcast=True)``), then one task
        per cell is submitted. The client is left open.
    scheduler : str, optional
        Address of a Dask scheduler (``tcp://host:8786``): connect a client to
        it for this sweep (and close it afterwards). Needs the ``dask`` extra.
    max_workers : int, optional
        Local pool size (default: ``os.cpu_count()``, at most one per cell).
        1 runs the cells one after another in this process.
    progress : bool or None
        tqdm bars over reading the file and over the cells (see
        :func:`simulate`; None: when stderr is a terminal).

    Returns
    -------
    SweepResult
        ``.rows`` (one dict per cell), ``.table()``, ``.matrix()``, ``.plot()``,
        ``.to_pandas()``.
    """
    _check_trace(trace)
    frames = None if frames_list is None else _frames_list(frames_list)
    pols = _policies_list(policies)
    page_size = as_int(page_size, "page_size")
    seed = as_int(seed, "seed")
    if client is not None and scheduler is not None:
        raise ValueError("give client or scheduler, not both")
    # Check the machine arguments here, once, rather than in every task.
    for f in (frames[0], frames[-1]) if frames else (1,):
        check_machine_args(f, page_size, 0, pols[0], 48, None, 64, seed)
    dask = client is not None or scheduler is not None
    if max_workers is not None:
        max_workers = positive_int(max_workers, "max_workers")
    # local worker processes share the trace through a binary file they map
    to_file = not dask and max_workers != 1
    with _prepared(trace, page_size, progress, format, to_file=to_file) as (
            source, counts, name):
        if frames is None:
            frames = default_frames(counts["distinct_pages"])
        cells = [(p, f, page_size, counts, seed) for p in pols for f in frames]

        def loaded():
            from pymmu.traces import Trace, load

            return source if isinstance(source, Trace) else load(source)

        rows = _run_cells(_cell, source, cells, what="sweep", max_workers=max_workers,
                          client=client, scheduler=scheduler, progress=progress,
                          dask_shared=loaded)
    return SweepResult(rows=rows, frames=frames, policies=pols, page_size=page_size,
                       name=name)


def parse_frames(text: str) -> list[int]:
    """Frame counts from the command line: ``"16,32,64"``, or ``"4:512"`` for the
    powers of two from 4 to 512 (both ends included when they are powers of
    two), or a mix (``"4:64,100"``).

    ``ValueError`` names the text and the part that is wrong: a part that is
    not an integer, a count below 1, a range whose low end is above its high
    end, or a range with no power of two in it (``"5:7"``).

    >>> parse_frames("16,32,64"), parse_frames("4:32"), parse_frames("3:20")
    ([16, 32, 64], [4, 8, 16, 32], [4, 8, 16])
    """
    def integer(s: str) -> int:
        try:
            return int(s)
        except ValueError:
            raise ValueError(f"{text!r}: {s.strip()!r} is not an integer") from None

    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if ":" in part:
            lo_s, hi_s = part.split(":", 1)
            lo, hi = integer(lo_s), integer(hi_s)
            if lo < 1 or hi < lo:
                raise ValueError(f"{text!r}: range {part!r} needs 1 <= LOW <= HIGH")
            # The powers of two in [lo, hi]: start at the first one >= lo.
            f = 1 << (lo - 1).bit_length()
            if f > hi:
                raise ValueError(f"{text!r}: range {part!r} holds no power of two")
            while f <= hi:
                out.append(f)
                f *= 2
        else:
            f = integer(part)
            if f < 1:
                raise ValueError(f"{text!r}: frame counts must be at least 1, got {f}")
            out.append(f)
    if not out:
        raise ValueError(f"{text!r}: no frame counts given")
    return sorted(set(out))


def default_frames(distinct_pages: int) -> list[int]:
    """The frame counts ``pymmu sweep`` uses when none are given: powers of two
    from 4 up to the first one that holds every distinct page.

    >>> default_frames(270)
    [4, 8, 16, 32, 64, 128, 256, 512]
    """
    top = max(4, 1 << max(0, math.ceil(math.log2(max(distinct_pages, 1)))))
    out, f = [], 4
    while f <= top:
        out.append(f)
        f *= 2
    return out
