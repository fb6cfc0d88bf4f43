"""The reference scheduler: ``pymmu.reference.Machine.run``, rule by rule.

A readable, slow model of DESIGN.md section 12 ("Many processes: time,
scheduling and thrashing"), restated in docs/semantics.md ("Many processes in
time"). It drives the reference machine one page reference at a time through
its internals (``_check_pages``, ``_touch``, ``_evict``, ``_evictable``), and
turns each reference's counter deltas into CPU time (rule 3) and paging-disk
operations (rule 4). Comments cite the rule they implement.

The simulation is a loop over decision points (the CPU is free: at time 0, after
a process blocks, ends, is killed or is preempted, and at each event while it
idles). Between them one process runs reference after reference. Things that
happen while the CPU is busy with someone else (a disk operation completes, an
I/O burst ends, so a process wakes up or a job ends) are events on a heap, keyed
``(time, kind, pid)``, taken in that order before anything that starts at or
after their time: exits before wake-ups (rule 8: "before anything else happens
at that time"), wake-ups in pid order (rule 7).

Time accounting: each instant of a job's life, from 0 to ``end_ns``, is counted
in exactly one of ``cpu_ns`` (its references and the switches into it),
``disk_wait_ns``, ``io_ns``, ``ready_ns`` and ``suspended_ns`` (suspension
takes precedence over waiting for the disk or an I/O burst).

Python's ints do not overflow, but the result is int64 and so is the core's
clock: every instant made by adding a time (a reference's CPU time, a switch,
a disk operation, an I/O burst) goes through ``_Run._at``, which raises
``pymmu.run.time_overflow``'s ``OverflowError`` past 2**63 - 1 (rule 12).
"""
from __future__ import annotations

import heapq
from collections import Counter, deque

from pymmu._args import STAT_NAMES
from pymmu.errors import MemoryFault, OutOfMemory
from pymmu.pte import PFN_SHIFT, PRESENT, ZERO
from pymmu.run import _INT64_MAX, OVERFLOW_WHAT, RunResult, check_run_args, time_overflow

__all__ = ["run"]

# Trace kind codes FETCH, LOAD, STORE, MODIFY: a modify is one write (as replay).
_ACCESS = ("execute", "read", "write", "write")
_COUNTER = {"read": "reads", "write": "writes", "execute": "fetches"}

# Event kinds on the heap, in the order they are taken at one instant.
_END, _WAKE = 0, 1

# What would pass the int64 clock (pymmu.run.OVERFLOW_WHAT, by name).
_CPU, _SWITCH, _DISK, _IO, _SUSPEND = OVERFLOW_WHAT


def _set_index(exc: BaseException, index: int) -> None:
    try:
        exc.index = index
    except (AttributeError, TypeError):
        pass


class _Job:
    """One job's progress and its row of the result."""

    def __init__(self, index: int, job, process, trace):
        self.index = index
        self.job = job
        self.proc = process                  # None until spawned (fresh)
        self.fresh = process is None
        self.pid = -1
        self.records = list(zip(trace.addr.tolist(), trace.kind.tolist(),
                                trace.size.tolist()))
        self.ri = 0                          # the record under way
        self.pi = 0                          # its next page (rule 2: one reference each)
        self.vmas: list = []                 # its pages' mappings, checked at its start
        # "ready", "running", "blocked", "suspended" or "ended"
        self.status = "ready"
        self.ready_since = 0
        self.block = (0, 0, 0)               # blocked: (cpu end, disk done, wait end)
        self.mark = 0                        # blocked time counted up to here
        self.susp_since = 0
        self.suspended_from = "ready"        # what it resumes as: "ready" or "blocked"
        self.admitted = 0                    # rule 10: admission order
        # rule 10: the last `window` pages referenced, and how often each occurs
        self.recent = deque()
        self.ws = Counter()
        # the row (rule 9)
        self.references = self.minor = self.major = 0
        self.cpu_ns = self.disk_wait_ns = self.io_ns = 0
        self.ready_ns = self.suspended_ns = self.end_ns = 0
        self.faulted = False

    def row(self) -> tuple:
        return (self.pid, self.references, self.minor, self.major, self.cpu_ns,
                self.disk_wait_ns, self.io_ns, self.ready_ns, self.suspended_ns,
                self.end_ns, self.faulted)


class _Run:
    """One call of ``run``: the clock, the ready queue, the disk, the jobs."""

    def __init__(self, m, entries, quantum: int, cost, window: int):
        self.m = m
        self.quantum, self.cost, self.window = quantum, cost, window
        self.jobs = [_Job(i, job, proc, trace)
                     for i, (job, proc, trace) in enumerate(entries)]
        self.now = 0                 # the CPU's clock
        self.disk_free = 0           # rule 1: when the paging disk finishes its queue
        self.disk_busy = 0
        self.switches = 0
        self.ready: deque[_Job] = deque()   # rule 2: first in, first out
        self.events: list = []       # heap of (time, kind, pid, job index)
        self.suspended: list[_Job] = []     # rule 10: first suspended first
        self.last: _Job | None = None       # rule 2: the process dispatched last
        self.admissions = 0

    # ------------------------------------------------------------------ the run

    def go(self) -> RunResult | None:
        m = self.m
        # Rule 1: fresh processes are spawned at the start, in job order, each
        # with one private anonymous rwx mapping over the whole space (as replay).
        for j in self.jobs:
            if j.fresh:
                j.proc = m.spawn()
                j.proc.mmap(1 << m._va_bits, "rwx", addr=0)
            j.pid = j.proc.pid
        before = dict(m._stats)
        try:
            completed = self._loop()
        except BaseException:
            # Rule 8: OutOfMemory (or a policy's error) stops the run and
            # raises after the fresh processes of this run exit.
            self._exit_fresh()
            raise
        finally:
            m._t_ns = 0              # events' t_ns is 0 outside run
        if not completed:            # a policy hook raised: reference's _api raises it
            self._exit_fresh()
            return None
        stats = {k: m._stats[k] - before[k] for k in STAT_NAMES}
        return RunResult([j.row() for j in self.jobs], disk_busy_ns=self.disk_busy,
                         switches=self.switches, stats=stats)

    def _exit_fresh(self) -> None:
        for j in self.jobs:
            if j.fresh and j.proc.state == "running":
                try:
                    j.proc.exit()
                except Exception:    # (a policy hook again): the first error wins
                    pass

    def _loop(self) -> bool:
        """Decision points until every job has ended. False: a hook raised."""
        # Rule 2: the ready queue starts with the jobs in order; rule 10: they
        # are admitted in job order at time 0. Rule 8: a job with no records has
        # nothing to complete: it ends (and its fresh process exits) at 0.
        for j in self.jobs:
            j.admitted = self._admit()
            if j.records:
                self.ready.append(j)
            else:
                self._block(j, 0, 0, 0, _END)
        while True:
            self._settle()
            if all(j.status == "ended" for j in self.jobs):
                return True
            if self.window:
                # Rule 10: at every dispatch, and whenever the CPU would
                # otherwise idle, first resume, then suspend.
                self._load_control()
                if self.m._hook_exc is not None:
                    return False
            if self.ready:
                if not self._run_slice(self._dispatch()):
                    return False
            else:
                # Rule 7: nothing ready: the CPU idles until the next event
                # (a wake-up, or an exit, after which load control looks again).
                if not self.events:
                    raise RuntimeError("reference run: nothing ready and nothing "
                                       "to wait for (a bug in the model)")
                self.now = max(self.now, self.events[0][0])

    # ------------------------------------------------------------------ events

    def _settle(self) -> None:
        """Take every event due by now, in (time, kind, pid) order: exits first
        (rule 8), then wake-ups in pid order (rule 7)."""
        while self.events and self.events[0][0] <= self.now:
            t, kind, _, i = heapq.heappop(self.events)
            j = self.jobs[i]
            if kind == _END:
                self._end(j, t)
            else:
                self._wake(j, t)

    def _block(self, j: _Job, c: int, d: int, w: int, kind: int) -> None:
        """``j`` leaves the CPU at ``c``: its disk operations complete at ``d``
        (``c`` if none), its wait ends at ``w`` (``d`` plus an I/O burst); then
        it wakes up (``_WAKE``) or its job ends (``_END``, at ``d``)."""
        j.status = "blocked"
        j.block, j.mark = (c, d, w), c
        heapq.heappush(self.events, (w, kind, j.pid, j.index))

    def _account_wait(self, j: _Job, upto: int) -> None:
        """Count ``j``'s blocked time from ``j.mark`` to ``upto``: the part before
        its disk operations completed as disk wait, the rest as its I/O burst."""
        c, d, w = j.block
        lo, hi = j.mark, min(upto, w)
        j.disk_wait_ns += max(0, min(hi, d) - max(lo, c))
        j.io_ns += max(0, min(hi, w) - max(lo, d))
        j.mark = upto

    def _end(self, j: _Job, t: int) -> None:
        """Rule 8: the job's last record completed (disk wait included) at ``t``;
        a fresh process exits at that instant. A job suspended while waiting for
        its last disk operation ends all the same: it needs no CPU any more."""
        if j.status == "suspended":
            j.suspended_ns += t - j.susp_since
            self.suspended.remove(j)
        else:
            self._account_wait(j, t)
        j.status = "ended"
        j.end_ns = t
        if j.fresh:
            j.proc.exit()

    def _wake(self, j: _Job, t: int) -> None:
        """Rule 4/5: the wait ended at ``t``; the process joins the ready queue's
        tail. Rule 10: while suspended, the wake-up is held until resumption."""
        if j.status == "suspended":
            j.suspended_from = "ready"
            return
        self._account_wait(j, t)
        j.status = "ready"
        j.ready_since = t
        self.ready.append(j)

    # ------------------------------------------------------------------ the CPU

    def _at(self, t: int, what: str, j: _Job, index) -> int:
        """Rule 12: the instant ``t`` of ``what`` of job ``j`` (at its record
        ``index``, or None), if it fits the int64 clock; else the run stops."""
        if t > _INT64_MAX:
            raise time_overflow(what, j.index, j.pid, index)
        return t

    def _dispatch(self) -> _Job:
        """Rule 2: the CPU takes the ready queue's head; a process other than
        the one dispatched last costs ``switch`` of CPU time, charged to it
        (rule 9), and its first reference starts when the switch ends."""
        j = self.ready.popleft()
        j.ready_ns += self.now - j.ready_since
        if self.last is not None and self.last is not j:
            self.now = self._at(self.now + self.cost.switch, _SWITCH, j, j.ri)
            j.cpu_ns += self.cost.switch
            self.switches += 1
        self.last = j
        j.status = "running"
        return j

    def _run_slice(self, j: _Job) -> bool:
        """Run ``j`` reference by reference until it blocks, ends, is killed or
        is preempted. False: a policy hook raised (the run stops)."""
        m, cost = self.m, self.cost
        since_dispatch = 0
        while True:
            # Rule 8: the machine changes at the instant a reference starts, so
            # every exit due by now comes first.
            self._settle()
            addr, code, size = j.records[j.ri]
            kind = _ACCESS[code]
            m._t_ns = self.now       # events carry the instant the reference starts
            if j.pi == 0:
                # Rule 2: a record's pages are checked when the record starts.
                try:
                    j.vmas = m._check_pages(j.proc, addr, size, kind)
                except MemoryFault:
                    self._kill(j)    # rule 8: costs nothing, kills its process
                    return True
            vpn = (addr >> m._shift) + j.pi
            at = addr if j.pi == 0 else vpn << m._shift
            before = dict(m._stats)
            try:
                m._touch(j.proc, j.proc._as, j.vmas[j.pi], vpn, kind, at)
            except (MemoryFault, OutOfMemory) as e:
                e.index = j.ri       # rule 8: its position in its job's trace
                raise
            except Exception as e:   # from a Python policy's victim()
                _set_index(e, j.ri)
                raise
            index = j.ri
            j.pi += 1
            if j.pi == len(j.vmas):  # the record is complete: counted as replay does
                m._count(j.proc, _COUNTER[kind])
                if kind == "write" and j.proc._lender is not None:
                    m._count(j.proc, "vfork_child_writes")   # lands in the parent (section 5)
                j.ri, j.pi = j.ri + 1, 0
            delta = {k: m._stats[k] - before[k] for k in STAT_NAMES}
            j.references += 1
            j.minor += delta["minor_faults"]
            j.major += delta["major_faults"]
            if self.window:          # rule 10: the last `window` pages referenced
                j.recent.append(vpn)
                j.ws[vpn] += 1
                if len(j.recent) > self.window:
                    old = j.recent.popleft()
                    j.ws[old] -= 1
                    if not j.ws[old]:
                        del j.ws[old]
            if m._hook_exc is not None:   # as replay: stop after that record
                _set_index(m._hook_exc, index)
                return False
            # Rule 3: the reference's CPU time; the clock advances by it.
            cpu = (cost.ref + cost.tlb_miss * delta["tlb_misses"]
                   + cost.minor * delta["minor_faults"]
                   + cost.zero * (delta["zero_fills"] - delta["zero_pool_hits"])
                   + cost.copy * delta["cow_copies"]
                   + cost.major * delta["major_faults"])
            self.now = self._at(self.now + cpu, _CPU, j, index)
            j.cpu_ns += cpu
            since_dispatch += 1
            # Rule 4: when the CPU time ends, its disk operations are queued:
            # one write per page written to swap, then one read if it read one.
            done = None
            for _ in range(delta["swap_outs"]):
                done = self._disk(cost.disk_write, j, index)
            if delta["swap_ins"] or delta["file_reads"]:
                done = self._disk(cost.disk_read, j, index)
            waited = done if done is not None else self.now
            if j.ri == len(j.records):
                # Rule 8: the job ends when its last record completes, its disk
                # wait included; no I/O burst follows the last record.
                self._block(j, self.now, waited, waited, _END)
                return True
            # Rule 5: after every io_every-th reference, an I/O burst of io_ns,
            # starting when the CPU time and the disk wait end.
            burst = j.job.io_every > 0 and j.references % j.job.io_every == 0
            if done is not None or burst:
                # Rule 4: blocked until the last operation completes.
                wake = self._at(waited + j.job.io_ns, _IO, j, index) if burst else waited
                self._block(j, self.now, waited, wake, _WAKE)
                return True
            if since_dispatch == self.quantum:
                # Rule 6/7: processes that woke by now join the queue first; the
                # expired process goes to the tail, unless the queue is empty.
                self._settle()
                if self.ready:
                    j.status = "ready"
                    j.ready_since = self.now
                    self.ready.append(j)
                    return True
                since_dispatch = 0   # a fresh quantum, no switch

    def _disk(self, ns: int, j: _Job, index) -> int:
        """Rule 1/4: queue one operation on the paging disk now, for job ``j``
        (its record ``index``, None for a suspension): it starts when the disk
        is free (first come, first served); returns its completion."""
        start = max(self.disk_free, self.now)
        self.disk_free = self._at(start + ns, _SUSPEND if index is None else _DISK, j, index)
        self.disk_busy += ns
        return self.disk_free

    def _kill(self, j: _Job) -> None:
        """Rule 8: a MemoryFault kills the job's process now, exit status 139."""
        j.status = "ended"
        j.end_ns = self.now
        j.faulted = True
        j.proc.exit(139)

    # ------------------------------------------------------------------ load control

    def _admit(self) -> int:
        self.admissions += 1
        return self.admissions

    def _load_control(self) -> None:
        """Rule 10: first resume, then suspend."""
        frames = self.m._frames
        active = [j for j in self.jobs if j.status not in ("suspended", "ended")]
        total = sum(len(j.ws) for j in active)
        # Resume, first suspended first, while each fits (or nothing is active);
        # stop at the first that does not fit. A suspended process references
        # nothing, so its working set now is its working set at suspension.
        while self.suspended:
            j = self.suspended[0]
            if active and len(j.ws) + total > frames:
                break
            self.suspended.pop(0)
            self._resume(j)
            active.append(j)
            total += len(j.ws)
        # Suspend the active process admitted last while more than one is
        # active and their working sets add up to more than the frames.
        while len(active) > 1 and total > frames:
            j = max(active, key=lambda a: a.admitted)
            active.remove(j)
            total -= len(j.ws)
            self._suspend(j, active)

    def _suspend(self, j: _Job, active: list) -> None:
        if j.status == "ready":
            self.ready.remove(j)
            j.ready_ns += self.now - j.ready_since
        else:                        # blocked on the disk or its I/O
            self._account_wait(j, self.now)
        j.suspended_from = j.status
        j.status = "suspended"
        j.susp_since = self.now
        self.suspended.append(j)
        # Evict its resident pages that no active process maps, in ascending
        # virtual address; a page that cannot be evicted stays. The evictions
        # are counted (to the suspended process) and make events at this
        # instant; their writes go on the disk queue, and nobody waits for them.
        m = self.m
        m._t_ns = self.now
        keep = {id(a.proc._as) for a in active}
        space = j.proc._as
        for vpn, _ in list(space.entries()):
            pte = space.get(vpn)     # an earlier eviction may have changed it
            if not pte & PRESENT or pte & ZERO:
                continue             # not resident, or the shared zero page
            pfn = pte >> PFN_SHIFT
            if any(id(s) in keep for s, _ in m._mappers(pfn)) or not m._evictable(pfn):
                continue
            outs = m._stats["swap_outs"]
            m._evict(j.proc, pfn)
            for _ in range(m._stats["swap_outs"] - outs):
                self._disk(self.cost.disk_write, j, None)

    def _resume(self, j: _Job) -> None:
        """Counts as admitted now; joins the ready queue's tail, or keeps waiting
        if its wait has not ended (its wake-up event is still to come)."""
        j.suspended_ns += self.now - j.susp_since
        j.admitted = self._admit()
        if j.suspended_from == "blocked":
            j.status = "blocked"
            j.mark = self.now
        else:
            j.status = "ready"
            j.ready_since = self.now
            self.ready.append(j)


def run(m, jobs, *, quantum=10_000, cost=None, load_control=None):
    """``m.run`` for the reference machine ``m`` (DESIGN.md section 12).

    Parameters and result as ``pymmu.reference.Machine.run``; the arguments
    are checked by ``pymmu.run.check_run_args`` before anything changes.
    Returns None only when a Python policy's hook raised (the caller's ``_api``
    wrapper then raises that exception, its ``.index`` set).
    """
    entries, quantum, cost, window = check_run_args(m, jobs, quantum, cost, load_control)
    return _Run(m, entries, quantum, cost, window).go()
