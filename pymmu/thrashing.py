"""Thrashing and its cure: CPU utilization against the degree of multiprogramming.

This is the library side of ``pymmu thrash`` (DESIGN.md section 12): for each
degree of multiprogramming d from 1 to ``max_degree``, :func:`thrash` runs d
jobs with ``Machine.run`` on a fresh machine, once without load control and
once with working-set load control, and records the CPU utilization. Plotted
against d (:meth:`ThrashResult.plot`), the two lines are Denning's curve:
utilization rises with d while the jobs' pages fit in memory (one job's I/O
bursts overlap another's CPU time), collapses once they do not (every job
waits on the paging disk: thrashing), and with load control stays near its
peak (the jobs that do not fit wait, suspended, instead of stealing frames).

The jobs and the machine
------------------------
* Job i (from 0) runs trace ``i % len(traces)``: the traces in turn, each job
  in its own fresh process (one private rwx mapping over the whole address
  space, as ``replay``), spawned at time 0.
* Each trace is cut to its first ``records`` records and a job runs that
  prefix ``repeat`` times in a row: a program whose main loop goes over the
  same pages again. The sample traces are short (40,000 records are about
  0.06 ms of CPU time), most of it the dynamic loader touching new pages;
  repeating the prefix makes jobs that run long compared with the time it
  takes to load their pages from the disk, as Denning's model assumes,
  without adding pages.
* Every job blocks on its own I/O device for ``io_ns`` after every
  ``io_every`` page references: the I/O bursts that leave the CPU idle at
  degree 1.
* The machine is ``Machine(frames, swap_slots=S, zero_page=False)`` with S
  the pages of all the run's jobs (it never runs out of swap), so every page
  a job touches competes for frames, as in ``pymmu simulate``.
* The costs are ``pymmu.Cost()``'s but for the paging disk: ``disk_ns`` per
  page read or written (default 20 µs, an SSD's order of magnitude, and 5
  times faster than ``Cost``'s 100 µs, so that load control, which writes the
  pages of the jobs it suspends and reads them back, pays off on jobs this
  short).
* ``frames`` defaults to the pages of jobs 1 to ceil(max_degree / 2): memory
  holds half of the largest degree's jobs, whatever the traces.
* Load control is ``WorkingSet(window)``; the default window is one pass of
  a job (``records``, or the longest trace), so that a job's working set is
  the pages of its loop.
* Utilization is ``RunResult.utilization``: the CPU's busy time (references,
  fault handling, context switches) over the elapsed time.

Every degree and setting is an independent cell, run in this process, on a
local process pool or on Dask exactly as :func:`pymmu.sweep`'s cells are (the
traces are read once, and sent to each worker once).

>>> from pymmu.traces import sample
>>> r = thrash([sample(name) for name in ("ls", "sort", "gzip", "sed")])
>>> r
ThrashResult(4 traces, degrees 1-8, 128 frames, load control ws:40000)
>>> r.pages                       # one pass of each job: 4 jobs fill the 128 frames
[32, 32, 32, 32]
>>> [f"{u:.0%}" for u in r.utilization()]
['34%', '77%', '99%', '99%', '82%', '24%', '24%', '23%']
>>> [f"{u:.0%}" for u in r.utilization(load_control=True)]
['34%', '77%', '99%', '99%', '72%', '87%', '92%', '86%']
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

import numpy as np

from pymmu._args import POLICIES, as_int, check_machine_args, nonneg_int, positive_int

__all__ = [
    "DEFAULT_DISK_NS", "DEFAULT_IO_EVERY", "DEFAULT_IO_NS", "DEFAULT_MAX_DEGREE",
    "DEFAULT_QUANTUM", "DEFAULT_RECORDS", "DEFAULT_REPEAT", "ThrashResult",
    "default_frames", "thrash",
]

#: Degrees of multiprogramming run by default: 1 to 8.
DEFAULT_MAX_DEGREE = 8
#: Records of each trace a job runs (its first ones); 0 means the whole trace.
DEFAULT_RECORDS = 40_000
#: Times a job runs its records in a row.
DEFAULT_REPEAT = 10
#: A job's I/O burst comes after every this many page references...
DEFAULT_IO_EVERY = 10_000
#: ...and blocks it for this many nanoseconds.
DEFAULT_IO_NS = 20_000
#: References per time slice (``Machine.run``'s default).
DEFAULT_QUANTUM = 10_000
#: Nanoseconds of one paging-disk read or write.
DEFAULT_DISK_NS = 20_000

#: The keys of a row (one cell: a degree and a load-control setting).
ROW_KEYS = (
    "degree", "load_control", "window", "frames", "pages", "utilization",
    "elapsed_ns", "cpu_ns", "disk_busy_ns", "switches", "references",
    "minor_faults", "major_faults", "evictions", "swap_outs", "swap_ins",
    "suspended_ns", "faulted", "throughput",
)


def _label(window: int) -> str:
    """The name of a load-control setting: "none" or "ws:W"."""
    return f"ws:{window}" if window else "none"


def default_frames(pages: Sequence[int], max_degree: int) -> int:
    """The frame count :func:`thrash` uses when none is given: the pages of
    jobs 1 to ceil(max_degree / 2) (job i runs trace ``i % len(pages)``), so
    that memory holds half of the largest degree's jobs.

    >>> default_frames([53, 49, 48, 49], 8)
    199
    >>> default_frames([100], 5)
    300
    """
    half = max(1, math.ceil(max_degree / 2))
    return max(1, sum(pages[i % len(pages)] for i in range(half)))


# --------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------

@dataclasses.dataclass
class ThrashResult:
    """The result of :func:`thrash`: one row per (load-control setting, degree).

    Attributes
    ----------
    rows : list of dict
        One per cell, settings outer (without load control first), degrees
        inner. Keys: ``degree``; ``load_control`` ("none" or "ws:W") and
        ``window`` (0 or W); ``frames``; ``pages`` (the distinct pages of the
        run's jobs, all together: what they need to run without evictions);
        ``RunResult``'s ``utilization``, ``elapsed_ns``, ``cpu_ns``,
        ``disk_busy_ns`` and ``switches``; the counters ``references``,
        ``minor_faults``, ``major_faults``, ``evictions``, ``swap_outs`` and
        ``swap_ins`` of the run; ``suspended_ns`` (summed over the jobs);
        ``faulted`` (jobs killed by a memory fault) and ``throughput`` (jobs
        completed per simulated second, ``degree / elapsed``).
    degrees : list of int
        1 to ``max_degree``.
    windows : list of int
        The settings: 0 (without load control) and, if it ran, the window.
    frames : int
    names : list of str
        The traces' names, in job order (job i runs trace ``i % len(names)``).
    pages : list of int
        Distinct pages of each trace (of its first ``records`` records).
    params : dict
        The model: ``records``, ``repeat``, ``io_every``, ``io_ns``,
        ``quantum``, ``cost`` (a dict of ``pymmu.Cost``'s fields), ``policy``,
        ``page_size``, ``seed``.
    """

    rows: list
    degrees: list
    windows: list
    frames: int
    names: list
    pages: list
    params: dict

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    @property
    def settings(self) -> list[str]:
        """The settings' labels, in order: "none", then "ws:W" if it ran."""
        return [_label(w) for w in self.windows]

    def _window(self, load_control) -> int:
        if load_control is True:
            if len(self.windows) < 2:
                raise KeyError("this result has no run with load control")
            return self.windows[1]
        if load_control is False or load_control is None:
            return 0
        if isinstance(load_control, str):
            for w in self.windows:
                if _label(w) == load_control:
                    return w
            raise KeyError(load_control)
        return as_int(load_control, "load_control")

    def row(self, degree: int, load_control=False) -> dict:
        """The row of one cell: ``load_control`` False (without), True (with),
        or a setting's label or window (``KeyError`` if it did not run)."""
        w = self._window(load_control)
        for r in self.rows:
            if r["degree"] == degree and r["window"] == w:
                return r
        raise KeyError((degree, _label(w)))

    def utilization(self, load_control=False) -> list[float]:
        """CPU utilization by degree (1 to ``max_degree``), for one setting."""
        return [self.row(d, load_control)["utilization"] for d in self.degrees]

    def matrix(self, key: str = "utilization") -> np.ndarray:
        """``key`` of every cell, rows degrees, columns settings."""
        float_keys = ("utilization", "throughput")
        out = np.empty((len(self.degrees), len(self.windows)),
                       dtype=float if key in float_keys else np.int64)
        for j, w in enumerate(self.windows):
            for i, d in enumerate(self.degrees):
                out[i, j] = self.row(d, w)[key]
        return out

    def thrashing_degree(self) -> int | None:
        """The first degree whose jobs' pages exceed the frames (None: none do)."""
        for d in self.degrees:
            if self.row(d)["pages"] > self.frames:
                return d
        return None

    def __repr__(self) -> str:
        n = len(self.names)
        lc = f"load control {_label(self.windows[1])}" if len(self.windows) > 1 \
            else "no load control"
        return (f"ThrashResult({n} trace{'s' if n != 1 else ''}, degrees "
                f"{self.degrees[0]}-{self.degrees[-1]}, {self.frames:,} frames, {lc})")

    def to_dicts(self) -> list[dict]:
        """The rows as plain dicts (JSON-ready)."""
        return [dict(r) for r in self.rows]

    def as_dict(self) -> dict:
        """Everything, as plain values (for ``json.dumps``): the traces, the
        machine, the model and the rows."""
        return {"traces": list(self.names), "pages": list(self.pages),
                "frames": self.frames, "max_degree": self.degrees[-1],
                "load_control": self.settings[-1] if len(self.windows) > 1 else None,
                **{k: (dict(v) if isinstance(v, dict) else v)
                   for k, v in self.params.items()},
                "rows": self.to_dicts()}

    def to_pandas(self):
        """The rows as a ``pandas.DataFrame``: one row per cell, one column per key.

        pandas (the ``pandas`` extra) is imported here, not with this module.
        """
        from pymmu.simulate import rows_to_pandas

        return rows_to_pandas(self.to_dicts(), "ThrashResult")

    def table(self) -> str:
        """A text table: one line per degree; the jobs' pages, then CPU
        utilization, elapsed time and major faults for each setting."""
        settings = self.settings
        groups = [("CPU utilization", lambda r: f"{100 * r['utilization']:.1f} %"),
                  ("elapsed (ms)", lambda r: f"{r['elapsed_ns'] / 1e6:,.2f}"),
                  ("major faults", lambda r: f"{r['major_faults']:,}")]
        head = ["degree", "pages"] + [s for _ in groups for s in settings]
        body = []
        for d in self.degrees:
            cells = [str(d), f"{self.row(d)['pages']:,}"]
            for _, fmt in groups:
                cells += [fmt(self.row(d, w)) for w in self.windows]
            body.append(cells)
        widths = [max(len(r[c]) for r in [head] + body) for c in range(len(head))]
        widths = widths[:2] + [max(w, 8) for w in widths[2:]]
        # a line over the columns of each group, with the group's title
        k = len(settings)
        top = " " * (sum(widths[:2]) + 2)
        for g, (title, _) in enumerate(groups):
            span = sum(widths[2 + g * k: 2 + (g + 1) * k]) + 2 * (k - 1)
            top += "  " + title.center(span) if len(title) <= span else "  " + title
        lines = [top.rstrip()]
        lines += ["  ".join(s.rjust(w) for s, w in zip(r, widths)) for r in [head] + body]
        return "\n".join(lines)

    def plot(self, path=None, *, title: str | None = None):
        """Draw Denning's curve: utilization against degree, one line per
        setting (see :func:`pymmu.plot.denning_curves`; needs matplotlib)."""
        from pymmu.plot import denning_curves

        return denning_curves(self, path, title=title)


# --------------------------------------------------------------------------
# Traces
# --------------------------------------------------------------------------

_SUFFIXES = (".xz", ".gz", ".bz2", ".lackey", ".simple", ".pmt", ".trace", ".txt")


def _trace_name(path) -> str:
    """``/x/ls.lackey.xz`` -> ``ls``: the file name without its trace suffixes."""
    name = os.path.basename(os.fspath(path))
    stripped = True
    while stripped:
        stripped = False
        for s in _SUFFIXES:
            if name.endswith(s) and len(name) > len(s):
                name = name[:-len(s)]
                stripped = True
    return name


def _load(item, records: int, format):
    """One trace, cut to its first ``records`` records (0: all), as a Trace that
    owns its columns. A file is read only as far as needed."""
    from pymmu.traces import Trace, stream

    if isinstance(item, Trace):
        return Trace.concat([item[:records] if records else item])
    if not isinstance(item, (str, os.PathLike)):
        raise TypeError(f"a trace must be a pymmu.traces.Trace or a path, "
                        f"not {type(item).__name__}")
    parts, n = [], 0
    chunks = stream(item, format=format)
    try:
        for chunk in chunks:
            if records and n + len(chunk) >= records:
                parts.append(chunk[:records - n])
                break
            parts.append(chunk)
            n += len(chunk)
    finally:
        chunks.close()
    return Trace.concat(parts)


# --------------------------------------------------------------------------
# One cell
# --------------------------------------------------------------------------

def _cell(traces, degree: int, window: int, spec: dict) -> dict:
    """Run ``degree`` jobs on a fresh machine, with ``WorkingSet(window)`` load
    control if ``window`` (else none): the cell's row."""
    from pymmu.run import Job, WorkingSet

    if spec["reference"]:
        from pymmu.reference import Machine
    else:
        from pymmu import Machine

    n = len(traces)
    pages = sum(spec["pages"][i % n] for i in range(degree))
    m = Machine(spec["frames"], page_size=spec["page_size"], swap_slots=max(pages, 1),
                policy=spec["policy"], zero_page=False, seed=spec["seed"])
    jobs = [Job([traces[i % n]] * spec["repeat"], io_every=spec["io_every"],
                io_ns=spec["io_ns"]) for i in range(degree)]
    r = m.run(jobs, quantum=spec["quantum"], cost=spec["cost"],
              load_control=WorkingSet(window) if window else None)
    s = r.stats
    row = {
        "degree": degree, "load_control": _label(window), "window": window,
        "frames": m.frames, "pages": pages, "utilization": r.utilization,
        "elapsed_ns": r.elapsed_ns, "cpu_ns": r.cpu_ns, "disk_busy_ns": r.disk_busy_ns,
        "switches": r.switches, "references": int(r.jobs["references"].sum()),
        "minor_faults": s["minor_faults"], "major_faults": s["major_faults"],
        "evictions": s["evictions"], "swap_outs": s["swap_outs"], "swap_ins": s["swap_ins"],
        "suspended_ns": int(r.jobs["suspended_ns"].sum()),
        "faulted": int(r.jobs["faulted"].sum()),
        "throughput": degree / (r.elapsed_ns / 1e9) if r.elapsed_ns else 0.0,
    }
    return row


# --------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------

_AUTO = "auto"


def thrash(traces, frames: int | None = None, max_degree: int = DEFAULT_MAX_DEGREE, *,
           load_control=_AUTO, records: int = DEFAULT_RECORDS,
           repeat: int = DEFAULT_REPEAT, io_every: int = DEFAULT_IO_EVERY,
           io_ns: int = DEFAULT_IO_NS, quantum: int = DEFAULT_QUANTUM,
           disk_ns: int | None = DEFAULT_DISK_NS, cost=None, policy: str = "clock",
           page_size: int = 4096, seed: int = 0, format: str | None = None,
           reference: bool = False, client=None, scheduler: str | None = None,
           max_workers: int | None = None, progress=False) -> ThrashResult:
    """CPU utilization against the degree of multiprogramming, without and with
    working-set load control: the numbers of Denning's curve.

    For each degree d from 1 to ``max_degree``, d jobs (job i runs trace
    ``i % len(traces)``, each in its own fresh process) run with
    ``Machine.run`` on a fresh machine; see the module notes for the model.

    Parameters
    ----------
    traces : pymmu.traces.Trace or path, or a sequence of them
        The jobs' traces, taken in turn. A path (lackey, simple or binary;
        plain or compressed; ``pymmu.traces.sample("ls")``) is read once, only
        as far as ``records``.
    frames : int, optional
        User frames of each machine. Default: :func:`default_frames`, the
        pages of jobs 1 to ceil(max_degree / 2).
    max_degree : int
        The largest degree of multiprogramming (at least 1).
    load_control : pymmu.WorkingSet, int, None or "auto"
        The second setting: ``WorkingSet(W)`` (or its window W as an int);
        "auto" (the default) is one pass of a job: ``WorkingSet(R)``, R the
        longest trace's record count after the cut; None runs without load
        control only.
    records : int
        Each trace is cut to its first ``records`` records (0: the whole trace).
    repeat : int
        A job runs its records this many times in a row (at least 1).
    io_every, io_ns : int
        ``pymmu.Job``'s I/O bursts: ``io_ns`` nanoseconds after every
        ``io_every`` page references (``io_every=0``: none).
    quantum : int
        References per time slice.
    disk_ns : int or None
        Nanoseconds of one paging-disk read or write (``Cost.disk_read`` and
        ``Cost.disk_write``); None keeps those of ``cost``.
    cost : pymmu.Cost, optional
        The other costs (default ``pymmu.Cost()``).
    policy : str
        "clock", "fifo", "lru" or "random" ("opt" needs one future: it cannot
        run many processes).
    page_size : int
    seed : int
        Seed of the "random" policy (the same for every cell).
    format : str, optional
        The format of trace files (default: detected).
    reference : bool
        Run on ``pymmu.reference.Machine`` (the readable pure-Python model:
        the same numbers, far slower).
    client, scheduler, max_workers, progress
        Where the cells run and whether a tqdm bar follows them, as in
        :func:`pymmu.sweep`: a Dask ``client`` or ``scheduler`` address, or a
        local pool of ``max_workers`` processes (1: in this process).

    Returns
    -------
    ThrashResult
        ``.rows`` (a dict per cell), ``.utilization(load_control=False)``,
        ``.table()``, ``.matrix(key)``, ``.plot(path)``, ``.to_pandas()``.

    Raises
    ------
    TypeError, ValueError
        A bad argument (the message names it), before any trace is read.
    OSError, pymmu.TraceError
        A trace file that cannot be read, or is not a trace.
    """
    from pymmu.run import Cost, WorkingSet, _time_int
    from pymmu.traces import Trace

    # Check everything before reading any trace.
    items = [traces] if isinstance(traces, (Trace, str, os.PathLike)) else list(traces)
    if not items:
        raise ValueError("traces is empty: give at least one trace")
    max_degree = positive_int(max_degree, "max_degree")
    records = nonneg_int(records, "records")
    repeat = positive_int(repeat, "repeat")
    if not isinstance(policy, str):
        raise TypeError(f"policy must be a str, not {type(policy).__name__}")
    if policy == "opt":
        raise ValueError("policy 'opt' needs the future of one reference string and "
                         "cannot run many processes: use clock, fifo, lru or random")
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of clock, fifo, lru, random, not {policy!r}")
    page_size = as_int(page_size, "page_size")
    seed = as_int(seed, "seed")
    if frames is not None:
        frames = positive_int(frames, "frames")
    check_machine_args(frames or 1, page_size, 0, policy, 48, None, 64, seed)
    if cost is None:
        cost = Cost()
    elif not isinstance(cost, Cost):
        raise TypeError(f"cost must be a pymmu.Cost or None, not {type(cost).__name__}")
    if disk_ns is not None:
        disk_ns = _time_int(disk_ns, "disk_ns", minimum=0)
        cost = dataclasses.replace(cost, disk_read=disk_ns, disk_write=disk_ns)
    if isinstance(load_control, str):
        if load_control != _AUTO:
            raise ValueError(f"load_control must be a WorkingSet, an int window, None "
                             f"or 'auto', not {load_control!r}")
        window = None                           # decided once the traces are read
    elif load_control is None:
        window = 0
    elif isinstance(load_control, WorkingSet):
        window = load_control.window
    else:
        window = WorkingSet(as_int(load_control, "load_control")).window
    io_every = _time_int(io_every, "io_every", minimum=0)
    io_ns = _time_int(io_ns, "io_ns", minimum=0)
    quantum = _time_int(quantum, "quantum", minimum=1)
    if client is not None and scheduler is not None:
        raise ValueError("give client or scheduler, not both")
    if max_workers is not None:
        max_workers = positive_int(max_workers, "max_workers")

    # The traces, read once.
    loaded, names = [], []
    for i, item in enumerate(items):
        loaded.append(_load(item, records, format))
        names.append(_trace_name(item) if isinstance(item, (str, os.PathLike))
                     else f"trace {i}")
    pages = [t.distinct_pages(page_size) for t in loaded]
    if frames is None:
        frames = default_frames(pages, max_degree)
    if window is None:
        window = max(1, max(len(t) for t in loaded))
    windows = [0, window] if window else [0]

    spec = {"frames": frames, "page_size": page_size, "policy": policy, "seed": seed,
            "repeat": repeat, "io_every": io_every, "io_ns": io_ns,
            "quantum": quantum, "cost": cost, "pages": pages,
            "reference": bool(reference)}
    degrees = list(range(1, max_degree + 1))
    cells = [(d, w, spec) for w in windows for d in degrees]
    from pymmu.simulate import _run_cells

    rows = _run_cells(_cell, tuple(loaded), cells, what="thrash", max_workers=max_workers,
                      client=client, scheduler=scheduler, progress=progress)
    params = {"records": records, "repeat": repeat, "io_every": io_every,
              "io_ns": io_ns, "quantum": quantum, "cost": dataclasses.asdict(cost),
              "policy": policy, "page_size": page_size, "seed": seed}
    return ThrashResult(rows=rows, degrees=degrees, windows=windows, frames=frames,
                        names=names, pages=pages, params=params)
