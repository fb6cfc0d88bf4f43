"""Many processes under one memory, in simulated time (DESIGN.md section 12).

``m.run(jobs, *, quantum=10_000, cost=None, load_control=None)`` interleaves the
jobs' trace records on one CPU under a round-robin scheduler, with one FIFO
paging disk and a private I/O device per job, in exact integer nanoseconds.
This module holds what both implementations of ``run`` share: the public
argument types (:class:`Job`, :class:`Cost`, :class:`WorkingSet`), the result
(:class:`RunResult`, its per-job table of :data:`JOBS_DTYPE`), the one
argument check (:func:`check_run_args`) and the error of a clock that would
pass int64 (:func:`time_overflow`), so that ``pymmu.Machine.run`` and
``pymmu.reference.Machine.run`` refuse exactly the same calls with exactly the
same errors. The rules themselves are in docs/semantics.md ("Many processes in
time"); ``pymmu.reference_run`` follows them one by one.

>>> import pymmu
>>> from pymmu.reference import Machine
>>> from pymmu.traces import Trace
>>> m = Machine(1, swap_slots=8, zero_page=False)
>>> a = Job(Trace([0x0000, 0x1000, 0x0000], ["S", "S", "L"]))
>>> b = Job(Trace([0x0000], ["L"]))
>>> cost = Cost(ref=1, tlb_miss=0, minor=10, zero=100, major=20,
...             disk_read=1000, disk_write=500, switch=5)
>>> r = m.run([a, b], cost=cost)
>>> r.elapsed_ns, r.cpu_ns, r.disk_busy_ns, r.switches
(2622, 264, 2500, 2)
>>> r.jobs["end_ns"].tolist(), r.jobs["disk_wait_ns"].tolist()
([2622, 1122], [2474, 884])
"""
from __future__ import annotations

import dataclasses
import operator
import os
from collections.abc import Iterable

import numpy as np

from pymmu.errors import ProcessStateError

__all__ = ["Cost", "Job", "WorkingSet", "RunResult", "JOBS_DTYPE", "check_run_args",
           "time_overflow"]

# Times are int64 nanoseconds in the core: every argument that is a time or a
# count of references must fit in one, and so must every instant of a run.
_INT64_MAX = (1 << 63) - 1

#: What can make an instant of a run pass 2**63 - 1 ns, as ``time_overflow``
#: says it (the core names them by index: ``OV_*`` in pymmu/_run.pyx).
OVERFLOW_WHAT = (
    "the CPU time of a reference",
    "a switch",
    "a paging-disk operation",
    "an I/O burst",
    "a disk write of a suspension",
)


def time_overflow(what: str, job: int, pid: int, index) -> OverflowError:
    """The error of a run whose clock would pass 2**63 - 1 ns (docs/semantics.md,
    "Many processes in time", rule 12), the same from both implementations.

    Parameters
    ----------
    what : str
        One of :data:`OVERFLOW_WHAT`: the time that does not fit.
    job : int
        The job (its position in ``jobs``) whose reference, switch, I/O burst
        or suspension it is.
    pid : int
        That job's process.
    index : int or None
        The position in the job's trace of the record that reference belongs
        to (for a switch, the record the job runs next); None for a suspension.

    Returns
    -------
    OverflowError
        With ``.index``, ``.pid`` and ``.job`` set, for the caller to raise.

    Examples
    --------
    >>> e = time_overflow(OVERFLOW_WHAT[0], 1, 2, 7)
    >>> print(e)
    m.run: simulated time would pass 2**63 - 1 ns (the int64 clock) with the CPU time of a reference (job 1, pid 2, trace record 7): use smaller costs or I/O times
    >>> e.index, e.pid, e.job
    (7, 2, 1)
    """
    where = f"job {job}, pid {pid}" + ("" if index is None else f", trace record {index}")
    error = OverflowError(f"m.run: simulated time would pass 2**63 - 1 ns (the int64 "
                          f"clock) with {what} ({where}): use smaller costs or I/O times")
    error.index = index
    error.pid = pid
    error.job = job
    return error

#: One row per job of ``RunResult.jobs`` (DESIGN.md section 12 rule 9), in job
#: order. Times are nanoseconds; for every job ``cpu_ns + disk_wait_ns + io_ns +
#: ready_ns + suspended_ns == end_ns`` (each instant of a job's life is counted
#: once; see docs/semantics.md).
JOBS_DTYPE = np.dtype([
    ("pid", np.int64),            # the job's process
    ("references", np.int64),     # page references made (a record spanning two pages: 2)
    ("minor_faults", np.int64),
    ("major_faults", np.int64),
    ("cpu_ns", np.int64),         # its references' CPU time plus the switches into it
    ("disk_wait_ns", np.int64),   # blocked on the paging disk
    ("io_ns", np.int64),          # blocked on its own I/O device (bursts)
    ("ready_ns", np.int64),       # in the ready queue (from time 0 at the start)
    ("suspended_ns", np.int64),   # suspended by load control
    ("end_ns", np.int64),         # when its last record completed (or it was killed)
    ("faulted", np.bool_),        # killed by a MemoryFault (exit status 139)
])


def _time_int(value, name: str, *, minimum: int, unit: str = "nanoseconds") -> int:
    """``value`` as an int in ``[minimum, 2**63)``: ``TypeError`` for anything
    that is not an integer (bools and floats included), ``ValueError`` for one
    out of range. ``name`` says which argument, in both; ``unit`` what it
    counts."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None
    if value < minimum:
        what = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
        raise ValueError(f"{name} {what}, got {value}")
    if value > _INT64_MAX:
        raise ValueError(f"{name} must be below 2**63 (an int64 of {unit}), got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class Cost:
    """What each event costs in simulated nanoseconds (DESIGN.md section 12).

    Every field is an int >= 0 (numpy integers are accepted and stored as
    int); anything else raises ``TypeError`` or ``ValueError`` naming the
    field. Frozen: change one with ``dataclasses.replace(cost, switch=0)``.

    Parameters
    ----------
    ref : int
        CPU time of every page reference.
    tlb_miss : int
        Added per TLB miss (a ``tlb_misses`` increment).
    minor : int
        Added per minor fault.
    zero : int
        Added when a zero fill took a frame that was not pre-zeroed (a
        ``zero_fills`` increment without a ``zero_pool_hits`` one).
    copy : int
        Added per COW copy.
    major : int
        Added per major fault (swap-in or file read).
    disk_read, disk_write : int
        Time one paging-disk operation occupies the disk.
    switch : int
        CPU time of dispatching a process other than the one that ran last.

    Examples
    --------
    >>> Cost().major, Cost(switch=0).switch
    (2000, 0)
    >>> Cost(ref=-1)
    Traceback (most recent call last):
    ...
    ValueError: Cost.ref must not be negative, got -1
    """

    ref: int = 1
    tlb_miss: int = 20
    minor: int = 500
    zero: int = 1_000
    copy: int = 1_000
    major: int = 2_000
    disk_read: int = 100_000
    disk_write: int = 100_000
    switch: int = 2_000

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = _time_int(getattr(self, f.name), f"Cost.{f.name}", minimum=0)
            object.__setattr__(self, f.name, value)   # a numpy int becomes an int


def _check_trace_arg(trace) -> None:
    """A job's trace must be a Trace or an iterable of them (checked item by
    item when the run starts: a generator can be read only once)."""
    from pymmu.traces import Trace

    if isinstance(trace, Trace):
        return
    if isinstance(trace, (str, bytes, os.PathLike)):
        raise TypeError("Job needs a Trace or an iterable of Traces, not a path: "
                        "use pymmu.traces.read(path) or pymmu.traces.stream(path)")
    if not isinstance(trace, Iterable):
        raise TypeError("Job needs a pymmu.traces.Trace or an iterable of Traces, "
                        f"not {type(trace).__name__}")


@dataclasses.dataclass(frozen=True, eq=False)
class Job:
    """One job of ``m.run``: a trace to run in a process (DESIGN.md section 12).

    Parameters
    ----------
    trace : pymmu.traces.Trace or iterable of Trace
        The records, run in order; an iterable (e.g. ``traces.stream(path)``)
        runs as the concatenation of its Traces, read in full when the run
        starts (so a generator serves one run only).
    process : Process, optional
        A running process of the machine to run in; None (the default) runs
        the job in a fresh process whose whole address space is one private
        anonymous rwx mapping, spawned at the start (in job order) and exited
        when the job ends. Checked by ``m.run``.
    io_every : int
        With ``io_every > 0``, the job blocks on its own I/O device after every
        ``io_every``-th page reference (counted from its start), except after
        its last one. 0 (the default): no I/O bursts.
    io_ns : int
        How long each burst blocks (a burst of 0 ns still gives up the CPU).

    Examples
    --------
    >>> from pymmu.traces import Trace
    >>> Job(Trace([0, 4096]), io_every=1, io_ns=50).io_ns
    50
    >>> Job("ls.lackey.xz")
    Traceback (most recent call last):
    ...
    TypeError: Job needs a Trace or an iterable of Traces, not a path: use pymmu.traces.read(path) or pymmu.traces.stream(path)
    """

    trace: object
    process: object = None
    io_every: int = 0
    io_ns: int = 0

    def __post_init__(self):
        _check_trace_arg(self.trace)
        object.__setattr__(self, "io_every", _time_int(self.io_every, "Job.io_every",
                                                       minimum=0, unit="references"))
        object.__setattr__(self, "io_ns", _time_int(self.io_ns, "Job.io_ns", minimum=0))

    def __repr__(self) -> str:
        from pymmu.traces import Trace

        what = (f"Trace of {len(self.trace):,} records" if isinstance(self.trace, Trace)
                else type(self.trace).__name__)
        proc = "fresh process" if self.process is None else f"pid {self.process.pid}"
        io = f", io_every={self.io_every}, io_ns={self.io_ns}" if self.io_every else ""
        return f"Job({what}, {proc}{io})"


@dataclasses.dataclass(frozen=True)
class WorkingSet:
    """Working-set load control (DESIGN.md section 12 rule 10).

    A process's working set is the set of distinct pages among its last
    ``window`` page references; processes are suspended while the active
    working sets add up to more than the machine's frames.

    Parameters
    ----------
    window : int
        References per working set, at least 1 and below 2**63 (numpy ints
        accepted; bools, floats and others raise ``TypeError``). A window
        longer than a job's references is all of them (the pages it has
        referenced so far); what a working set costs in memory follows the
        references made, never the window.

    Examples
    --------
    >>> WorkingSet(1000).window
    1000
    >>> WorkingSet(0)
    Traceback (most recent call last):
    ...
    ValueError: WorkingSet.window must be at least 1, got 0
    >>> WorkingSet(2**63)
    Traceback (most recent call last):
    ...
    ValueError: WorkingSet.window must be below 2**63 (an int64 of references), got 9223372036854775808
    """

    window: int

    def __post_init__(self):
        object.__setattr__(self, "window", _time_int(self.window, "WorkingSet.window",
                                                     minimum=1, unit="references"))


class RunResult:
    """What ``m.run`` returns (DESIGN.md section 12 rule 9).

    Attributes
    ----------
    jobs : numpy.ndarray
        One row per job, in job order, of :data:`JOBS_DTYPE` (read-only).
    elapsed_ns : int
        The last job's ``end_ns``.
    cpu_ns : int
        The sum of the jobs' ``cpu_ns`` (switches included).
    utilization : float
        ``cpu_ns / elapsed_ns`` (0.0 when ``elapsed_ns`` is 0).
    disk_busy_ns : int
        Time of every paging-disk operation queued during the run, including
        the writes of suspension evictions and writes that end after
        ``elapsed_ns``.
    switches : int
        Dispatches of a process other than the one dispatched last (each
        charged ``Cost.switch``, even when that is 0).
    stats : dict
        Counter deltas over the run, with the keys of ``Machine.stats`` (like
        ``replay``'s return value).
    """

    __slots__ = ("jobs", "elapsed_ns", "cpu_ns", "utilization", "disk_busy_ns",
                 "switches", "stats")

    def __init__(self, jobs, *, disk_busy_ns: int, switches: int, stats):
        jobs = np.array(jobs, dtype=JOBS_DTYPE)        # a copy, then frozen
        if jobs.ndim != 1:
            raise ValueError("RunResult: jobs must be one row per job")
        jobs.flags.writeable = False
        self.jobs = jobs
        self.elapsed_ns = int(jobs["end_ns"].max()) if len(jobs) else 0
        self.cpu_ns = int(jobs["cpu_ns"].sum())
        self.utilization = self.cpu_ns / self.elapsed_ns if self.elapsed_ns else 0.0
        self.disk_busy_ns = int(disk_busy_ns)
        self.switches = int(switches)
        self.stats = dict(stats)

    def as_dict(self) -> dict:
        """Plain Python values (ints, floats, lists of dicts): for ``json.dumps``."""
        names = JOBS_DTYPE.names
        return {
            "elapsed_ns": self.elapsed_ns, "cpu_ns": self.cpu_ns,
            "utilization": self.utilization, "disk_busy_ns": self.disk_busy_ns,
            "switches": self.switches, "stats": dict(self.stats),
            "jobs": [dict(zip(names, row)) for row in self.jobs.tolist()],
        }

    def table(self) -> str:
        """The summary line and the per-job table, as text."""
        names = JOBS_DTYPE.names
        rows = [[("yes" if v else "") if n == "faulted" else f"{v:,}"
                 for n, v in zip(names, row)] for row in self.jobs.tolist()]
        widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
        lines = [f"elapsed {self.elapsed_ns:,} ns, cpu {self.cpu_ns:,} ns, utilization "
                 f"{self.utilization:.1%}, disk busy {self.disk_busy_ns:,} ns, "
                 f"{self.switches:,} switches",
                 "  ".join(n.rjust(w) for n, w in zip(names, widths)).rstrip()]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
        return "\n".join(lines)

    __str__ = table

    def __repr__(self) -> str:
        return (f"RunResult(elapsed_ns={self.elapsed_ns:,}, cpu_ns={self.cpu_ns:,}, "
                f"utilization={self.utilization:.3f}, disk_busy_ns={self.disk_busy_ns:,}, "
                f"switches={self.switches:,}, jobs={len(self.jobs)})")


def _job_trace(number: int, trace):
    """Job ``number``'s trace as one Trace: an iterable's items concatenated,
    checked for bad records (kind code over 3, size 0) before anything runs."""
    from pymmu.errors import TraceError
    from pymmu.traces import Trace, first_bad_record

    if isinstance(trace, Trace):
        whole = trace
    else:
        parts = []
        for i, part in enumerate(trace):
            if not isinstance(part, Trace):
                raise TypeError(f"job {number}: item {i} of its trace is a "
                                f"{type(part).__name__}, not a Trace")
            parts.append(part)
        whole = Trace.concat(parts)
    bad = first_bad_record(whole)
    if bad is not None:
        code = int(whole.kind[bad])
        why = (f"kind code {code} is not one of 0..3" if code > 3 else
               "size 0: a record covers at least one byte")
        raise TraceError(f"job {number}: {why}", index=bad)
    return whole


def check_run_args(machine, jobs, quantum, cost, load_control):
    """Check the arguments of ``machine.run`` before anything changes.

    The one check both implementations call, so that they refuse the same
    calls with the same errors (DESIGN.md section 12 rule 8).

    Parameters
    ----------
    machine : pymmu.Machine or pymmu.reference.Machine
    jobs : iterable of Job
        At least one. A bare ``pymmu.traces.Trace`` among them stands for
        ``Job(trace)``.
    quantum : int
        References per time slice, >= 1.
    cost : Cost or None
        None means ``Cost()``.
    load_control : WorkingSet or None

    Returns
    -------
    entries : list of (Job, Process or None, Trace)
        Per job, in job order: the job, its process (None: a fresh one is to
        be spawned) and its whole trace as one ``Trace`` (an iterable's parts
        concatenated, every record checked).
    quantum : int
    cost : Cost
    window : int
        The working-set window, 0 without load control.

    Raises
    ------
    TypeError
        ``jobs`` is not an iterable of Jobs, ``quantum`` not an int, ``cost``
        not a Cost, ``load_control`` not a WorkingSet, a trace item not a Trace.
    ValueError
        No jobs; ``quantum < 1``; the machine's policy is ``opt`` (it needs one
        future); a job's process is not a running process of this machine (an
        exited or zombie one, a suspended vfork parent, one of another
        machine); two jobs with the same process.
    pymmu.TraceError
        A record with a kind code over 3 or a size of 0 (``.index``: its
        position in its job's trace; the message names the job).
    pymmu.ProcessStateError
        With ``strict_vfork``, a job whose process is a vfork child and whose
        trace has a STORE or MODIFY record (its writes would land in the parent).
    """
    from pymmu.traces import Trace

    if isinstance(jobs, (Job, Trace)) or not isinstance(jobs, Iterable) \
            or isinstance(jobs, (str, bytes)):
        raise TypeError("run needs a list of pymmu.Job (one per process), not "
                        f"{type(jobs).__name__}: wrap a single job in a list")
    jobs = [Job(j) if isinstance(j, Trace) else j for j in jobs]
    if not jobs:
        raise ValueError("run needs at least one job")
    for i, job in enumerate(jobs):
        if not isinstance(job, Job):
            raise TypeError(f"job {i} is a {type(job).__name__}, not a pymmu.Job")
    quantum = _time_int(quantum, "quantum", minimum=1, unit="references")
    if cost is None:
        cost = Cost()
    elif not isinstance(cost, Cost):
        raise TypeError(f"cost must be a pymmu.Cost or None, not {type(cost).__name__}")
    if load_control is None:
        window = 0
    elif isinstance(load_control, WorkingSet):
        window = load_control.window
    else:
        raise TypeError("load_control must be a pymmu.WorkingSet or None, not "
                        f"{type(load_control).__name__}")
    policy = machine.policy
    if isinstance(policy, str) and policy == "opt":
        raise ValueError("the opt policy needs the future of one reference string: "
                         "m.run interleaves many, use m.replay for opt")
    seen: dict[int, int] = {}
    for i, job in enumerate(jobs):
        p = job.process
        if p is None:
            continue
        if getattr(p, "_m", None) is not machine:
            raise ValueError(f"job {i}: its process must be a Process of this machine, "
                             f"not {p!r}")
        if p.state != "running":
            raise ValueError(f"job {i}: process {p.pid} is {p.state}, not running")
        if p.pid in seen:
            raise ValueError(f"jobs {seen[p.pid]} and {i} have the same process "
                             f"(pid {p.pid}): one job per process")
        seen[p.pid] = i
    entries = [(job, job.process, _job_trace(i, job.trace)) for i, job in enumerate(jobs)]
    strict = getattr(machine, "strict_vfork", getattr(machine, "_strict_vfork", False))
    for i, (job, p, trace) in enumerate(entries):
        # A vfork child's stores land in its parent, as its writes do (section 5):
        # counted (vfork_child_writes), or refused under strict_vfork, here, up
        # front, since a refusal in the middle of a run has no rule of its own.
        if p is not None and strict and getattr(p, "_lender", None) is not None \
                and bool(np.any(trace.kind >= 2)):   # STORE, MODIFY
            raise ProcessStateError(f"job {i}: process {p.pid} is a vfork child and its "
                                    "trace writes (strict_vfork)")
    return entries, quantum, cost, window
