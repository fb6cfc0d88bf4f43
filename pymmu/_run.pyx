"""``m.run``'s time model (DESIGN.md section 12), in the core and without the GIL.

One CPU, one first-come-first-served paging disk, a private I/O device per job,
a round-robin ready queue, and working-set load control. Every page reference is
the core's own ``Core._touch`` (full MMU semantics, the machine's policy); its
CPU time and disk operations come from the counters it moved (rules 3 and 4).

Time only moves forward, and the scheduler is event-driven around the running
process: wake-ups and job ends that fall due while a reference runs are applied
(``_advance``) before anything that can observe them: the next reference (the
machine changes at the instant a reference starts), a dispatch, or a quantum
expiry's push to the ready queue. Rule numbers in comments are section 12's.

``machine.Machine.run`` owns the arguments, the processes and the result; this
module owns the loop. Exits (a fresh job's end, a killed job) call back into
Python with the GIL at their instant, since they change the machine.

The clock is int64 nanoseconds and the costs are the user's: every sum that
makes an instant (a reference's CPU time, a switch, a disk operation's end, an
I/O burst's end) is checked (``ckd_add_i64``, ``ckd_mul_i64``), and one that
would pass 2**63 - 1 stops the run with ``pymmu.run.time_overflow``'s
``OverflowError``, as the reference does. The durations of a job's row are
parts of ``[0, end_ns]`` and ``disk_busy`` of ``[0, disk free]``, so they fit
once the instants do. On the main thread the loop looks for Ctrl-C every
``POLL_REFS`` references (between two references, the machine consistent).
"""
from libc.stdint cimport INT64_MAX, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free

cimport cython
import numpy as np
cimport numpy as cnp

from pymmu._core cimport *
from pymmu._pte cimport *
from pymmu.counting cimport *


cnp.import_array()

# A job's state.
cdef enum:
    J_READY = 0         # in the ready queue (held out of it while suspended)
    J_RUNNING = 1
    J_BLOCKED = 2       # waiting until `wake` (paging disk, then its I/O device)
    J_ENDING = 3        # its last record's disk operations end at `wake`: it ends then
    J_DONE = 4

# The columns of a job's row (pymmu.run.JOBS_DTYPE, in order).
cdef enum:
    C_PID = 0
    C_REFS
    C_MINOR
    C_MAJOR
    C_CPU
    C_DISK
    C_IO
    C_READY
    C_SUSP
    C_END
    C_FAULTED
    C_N

# The counters a reference's cost and disk operations are read from (rules 3, 4).
cdef enum:
    D_TLB = 0
    D_MINOR
    D_MAJOR
    D_ZERO_FILLS
    D_POOL_HITS
    D_COPIES
    D_SWAP_OUTS
    D_SWAP_INS
    D_FILE_READS
    D_N

cdef int[9] _D_STAT = [S_TLB_MISSES, S_MINOR, S_MAJOR, S_ZERO_FILLS, S_ZERO_POOL_HITS,
                       S_COW_COPIES, S_SWAP_OUTS, S_SWAP_INS, S_FILE_READS]

# What would pass the int64 clock (pymmu.run.OVERFLOW_WHAT's order).
cdef enum:
    OV_CPU = 0          # a reference's CPU time
    OV_SWITCH           # a switch
    OV_DISK             # a disk operation of a reference
    OV_IO               # an I/O burst
    OV_SUSPEND          # a disk write of a suspension

ctypedef struct job_t:
    int64_t mm
    int64_t pid
    const uint64_t *addr
    const uint8_t *kind
    const uint32_t *size
    int64_t n               # records
    int64_t rec             # the record running (or next)
    uint64_t vpn            # inside a record: its page referenced next ...
    uint64_t last           # ... and its last page
    bint mid                # inside a record (its pages were checked)
    int64_t vstart          # the mapping the last checked record fell in:
    int64_t vend            # [vstart, vend) with prot vprot (vend 0: none)
    int64_t vprot
    int acc
    int64_t *ps             # the process's counters
    int state
    bint fresh              # a process spawned for the run: exits at its end
    bint vchild             # a vfork child: its stores count vfork_child_writes
    bint suspended
    int64_t wake            # blocked or ending: when the wait ends ...
    int64_t disk_until      # ... and when its paging-disk part ends (then I/O)
    int64_t ready_since
    int64_t susp_since
    int64_t susp_order      # when suspended, in suspension order
    int64_t admitted        # admission order (rule 10)
    int64_t ws_at_susp
    int64_t io_every
    int64_t io_ns
    int64_t col[C_N]
    wset_t ws


@cython.final
cdef class Scheduler:
    """One ``m.run``: the jobs, the clock, the ready queue and the disk."""

    cdef Core core
    cdef job_t *jobs
    cdef int64_t nj
    cdef int64_t *queue                 # the ready queue: a ring of job indices
    cdef int64_t qhead, qlen
    cdef int64_t now, disk_free, disk_busy, switches
    cdef int64_t running, last_ran, since
    cdef int64_t quantum, window
    cdef int64_t next_wake              # earliest due time of a blocked or ending job
    cdef int64_t admit_seq, susp_seq
    cdef int64_t poll_at                # core.references when to look for Ctrl-C next
    cdef int64_t cost[COST_COUNT]      # by COST_* (tables.COSTS)
    cdef object on_exit                 # on_exit(job index, status): a process exits
    cdef list keep                      # the trace columns and counter arrays
    cdef readonly int64_t err_job, err_rec

    def __cinit__(self):
        self.jobs = NULL
        self.queue = NULL

    def __init__(self, Core core, list jobs, int64_t quantum, tuple cost, int64_t window,
                 object on_exit):
        """``jobs``: per job ``(mm, pid, addr, kind, size, ps, io_every, io_ns, fresh,
        vfork_child)``
        with the trace columns as numpy arrays (uint64, uint8, uint32) and ``ps`` the
        process's counters; ``cost``: pymmu.Cost's fields in
        tables.COSTS's order (the COST_* codes); ``window``: 0 without
        load control."""
        cdef int64_t j, k
        cdef job_t *J
        cdef const uint64_t[::1] addr
        cdef const uint8_t[::1] kind
        cdef const uint32_t[::1] size
        self.core = core
        self.nj = len(jobs)
        self.quantum = quantum
        self.window = window
        self.on_exit = on_exit
        self.keep = []
        for k in range(COST_COUNT):
            self.cost[k] = cost[k]
        self.jobs = <job_t *>calloc(max(self.nj, 1), sizeof(job_t))
        self.queue = <int64_t *>calloc(max(self.nj, 1), sizeof(int64_t))
        if self.jobs == NULL or self.queue == NULL:
            raise MemoryError()
        for j in range(self.nj):
            mm, pid, a, kd, sz, ps, io_every, io_ns, fresh, vchild = jobs[j]
            addr, kind, size = a, kd, sz
            if kind.shape[0] != addr.shape[0] or size.shape[0] != addr.shape[0]:
                raise ValueError(f"job {j}: trace columns of different lengths")
            self.keep.append((a, kd, sz, ps))
            J = &self.jobs[j]
            if not core._live(mm):
                raise ValueError(f"job {j}: no live address space {mm}")
            J.mm, J.pid = mm, pid
            J.n = addr.shape[0]
            J.addr = &addr[0] if J.n else NULL
            J.kind = &kind[0] if J.n else NULL
            J.size = &size[0] if J.n else NULL
            J.ps = core._counters(ps)
            J.io_every, J.io_ns, J.fresh, J.vchild = io_every, io_ns, fresh, vchild
            J.admitted = j
            J.vstart, J.vend = 1, 0
            J.col[C_PID] = pid
            if wset_init(&J.ws, window) != 0:
                raise MemoryError()
        self.admit_seq = self.nj
        self.err_job = self.err_rec = -1

    def __dealloc__(self):
        cdef int64_t j
        if self.jobs != NULL:
            for j in range(self.nj):
                wset_free(&self.jobs[j].ws)
            free(self.jobs)
        free(self.queue)

    # ------------------------------------------------------------------
    # the ready queue (rule 2: first in, first out)

    cdef inline void _push(self, int64_t j, int64_t t) noexcept nogil:
        self.queue[(self.qhead + self.qlen) % self.nj] = j
        self.qlen += 1
        self.jobs[j].state = J_READY
        self.jobs[j].ready_since = t

    cdef inline int64_t _pop(self) noexcept nogil:
        cdef int64_t j = self.queue[self.qhead]
        self.qhead = (self.qhead + 1) % self.nj
        self.qlen -= 1
        return j

    cdef void _unqueue(self, int64_t j) noexcept nogil:
        """Take job ``j`` out of the ready queue, keeping the others' order."""
        cdef int64_t i, k = 0, x
        for i in range(self.qlen):
            x = self.queue[(self.qhead + i) % self.nj]
            if x != j:
                self.queue[(self.qhead + k) % self.nj] = x
                k += 1
        self.qlen = k

    # ------------------------------------------------------------------
    # time: wake-ups and ends that fall due

    cdef void _recompute_next(self) noexcept nogil:
        """The earliest instant a blocked job wakes or an ending job ends (a
        suspended job's wake-up too: it is held, but it is an event, at which
        an idle CPU runs load control)."""
        cdef int64_t j, t = INT64_MAX
        cdef job_t *J
        for j in range(self.nj):
            J = &self.jobs[j]
            if (J.state == J_ENDING or J.state == J_BLOCKED) and J.wake < t:
                t = J.wake
        self.next_wake = t

    cdef int _advance(self, int64_t t) except -1 nogil:
        """Apply everything due at or before ``t``: jobs end (rule 8: before
        anything else at their instant), then blocked jobs join the ready
        queue, by wake-up time, at the same instant in pid order (rule 7)."""
        cdef int64_t j, best
        cdef job_t *J
        if t < self.next_wake:
            return 0
        while True:
            best = self._earliest(t, J_ENDING)
            if best < 0:
                break
            self._end(best, self.jobs[best].wake, 0)
        while True:
            best = self._earliest(t, J_BLOCKED)
            if best < 0:
                break
            J = &self.jobs[best]
            self._push(best, J.wake)
        for j in range(self.nj):
            J = &self.jobs[j]
            if J.suspended and J.state == J_BLOCKED and J.wake <= t:
                J.state = J_READY               # held: it joins the queue on resumption
        self._recompute_next()
        return 0

    cdef int64_t _earliest(self, int64_t t, int state) noexcept nogil:
        """The job in ``state`` (not suspended, unless ending) due at or before
        ``t`` with the earliest (time, pid); -1 if none."""
        cdef int64_t j, best = -1
        cdef job_t *J
        for j in range(self.nj):
            J = &self.jobs[j]
            if J.state != state or J.wake > t or (state == J_BLOCKED and J.suspended):
                continue
            if best < 0 or J.wake < self.jobs[best].wake or (
                    J.wake == self.jobs[best].wake and J.pid < self.jobs[best].pid):
                best = j
        return best

    cdef int _end(self, int64_t j, int64_t t, int status) except -1 nogil:
        """Job ``j`` ends at ``t`` (rule 8); its process exits then if it was
        spawned for the run, or if it is killed (``status`` 139)."""
        cdef job_t *J = &self.jobs[j]
        J.state = J_DONE
        J.col[C_END] = t
        if J.suspended:
            J.col[C_SUSP] += t - J.susp_since
            J.suspended = False
        if J.fresh or status != 0:
            with gil:
                return self._exit(j, t, status)
        return 0

    cdef int _exit(self, int64_t j, int64_t t, int status) except -1:
        self.core.now_ns = t
        self.on_exit(j, status)     # (on the thread that holds the machine: let in)
        return 0

    # ------------------------------------------------------------------
    # dispatch and load control

    cdef int _dispatch(self) except -1 nogil:
        """Give the CPU to the ready queue's head at ``now`` (rule 2), idling
        until the earliest wake-up while nothing is ready (rule 7). Returns 1
        when every job has ended."""
        cdef int64_t j, t
        cdef job_t *J
        while True:
            self._advance(self.now)
            if self.window:
                self._load_control()        # rule 10: at every dispatch, and before idling
            if self.qlen:
                break
            if self._all_done():
                return 1
            # (cannot happen: load control resumes; next_wake is INT64_MAX also
            # when a wait ends at that very instant)
            if self.next_wake == INT64_MAX and not self._waiting():
                with gil:
                    raise SystemError("m.run: no job can make progress")
            self.now = self.next_wake
        j = self._pop()
        J = &self.jobs[j]
        J.col[C_READY] += self.now - J.ready_since
        if self.last_ran >= 0 and self.last_ran != j:
            if ckd_add_i64(&t, self.now, self.cost[COST_SWITCH]):
                return self._overflow(j, J.rec, OV_SWITCH)
            self.now = t
            J.col[C_CPU] += self.cost[COST_SWITCH]
            self.switches += 1
        self.last_ran = j
        self.running = j
        self.since = 0
        J.state = J_RUNNING
        return 0

    cdef bint _all_done(self) noexcept nogil:
        cdef int64_t j
        for j in range(self.nj):
            if self.jobs[j].state != J_DONE:
                return False
        return True

    cdef bint _waiting(self) noexcept nogil:
        """Whether a job waits for a wake-up or its end (an event to come)."""
        cdef int64_t j
        for j in range(self.nj):
            if self.jobs[j].state == J_BLOCKED or self.jobs[j].state == J_ENDING:
                return True
        return False

    cdef int _overflow(self, int64_t j, int64_t rec, int what) except -1 with gil:
        """Stop the run: an instant of job ``j`` would pass the int64 clock
        (``what``: an ``OV_*``), at its record ``rec`` (-1: none). Raises the
        ``OverflowError`` the reference raises there (pymmu.run.time_overflow)."""
        from pymmu.run import OVERFLOW_WHAT, time_overflow
        raise time_overflow(OVERFLOW_WHAT[what], j, self.jobs[j].pid,
                            None if rec < 0 else rec)

    cdef bint _active(self, int64_t j) noexcept nogil:
        return self.jobs[j].state != J_DONE and not self.jobs[j].suspended

    cdef int _load_control(self) except -1 nogil:
        """Rule 10: resume the suspended that fit, first suspended first and
        stopping at the first that does not; then suspend the active admitted
        last while several are active and their working sets exceed memory."""
        cdef int64_t j, k, total, nact
        while True:
            j = -1
            for k in range(self.nj):
                if self.jobs[k].suspended and self.jobs[k].state != J_DONE and (
                        j < 0 or self.jobs[k].susp_order < self.jobs[j].susp_order):
                    j = k
            if j < 0:
                break
            self._active_total(&total, &nact)
            if nact and self.jobs[j].ws_at_susp + total > self.core.frames:
                break
            self._resume(j)
        while True:
            self._active_total(&total, &nact)
            if nact <= 1 or total <= self.core.frames:
                break
            j = -1
            for k in range(self.nj):
                if self._active(k) and (j < 0 or self.jobs[k].admitted > self.jobs[j].admitted):
                    j = k
            with gil:
                self._suspend(j)
        return 0

    cdef void _active_total(self, int64_t *total, int64_t *nact) noexcept nogil:
        cdef int64_t k
        total[0] = nact[0] = 0
        for k in range(self.nj):
            if self._active(k):
                total[0] += self.jobs[k].ws.distinct
                nact[0] += 1

    cdef void _resume(self, int64_t j) noexcept nogil:
        """A suspended job becomes active (admitted now); a ready one (also one
        whose wake-up was held) joins the ready queue's tail, a blocked one keeps
        waiting."""
        cdef job_t *J = &self.jobs[j]
        J.suspended = False
        J.col[C_SUSP] += self.now - J.susp_since
        J.admitted = self.admit_seq
        self.admit_seq += 1
        if J.state == J_READY:                  # (its wake-up may have been held)
            self._push(j, self.now)
        elif J.state == J_BLOCKED or J.state == J_ENDING:
            self._wait_time(J, 1)               # the rest of its wait counts again
        self._recompute_next()

    cdef int _suspend(self, int64_t j) except -1:
        """Suspend job ``j`` at ``now``: out of the ready queue, its resident
        pages that no active process maps evicted in ascending address (those
        that cannot be stay); their writes go on the disk, nobody waits."""
        cdef job_t *J = &self.jobs[j]
        cdef Core c = self.core
        cdef int64_t i, n, k, pfn, writes
        cdef uint64_t vpn
        cdef pte_t *p
        cdef uint64_t[::1] vpns
        J.suspended = True
        J.susp_since = self.now
        J.susp_order = self.susp_seq
        self.susp_seq += 1
        J.ws_at_susp = J.ws.distinct
        if J.state == J_READY:
            self._unqueue(j)
            J.col[C_READY] += self.now - J.ready_since
        elif J.state == J_BLOCKED or J.state == J_ENDING:
            self._wait_time(J, -1)              # suspended time is not waiting time
        self._recompute_next()
        n = pt_collect(&c.pt, J.mm, 0, c.max_vpn, NULL, NULL)
        vpns = np.empty(n, np.uint64)
        if n:
            pt_collect(&c.pt, J.mm, 0, c.max_vpn, &vpns[0], NULL)
        c.cur_pid = J.pid
        c.ps = J.ps
        c.now_ns = self.now
        for i in range(n):
            vpn = vpns[i]
            p = pt_walk(&c.pt, J.mm, vpn, False)
            if p == NULL or not (p[0] & PTE_PRESENT):
                continue
            pfn = <int64_t>pte_pfn(p[0])
            if pfn == c.zero_pfn or self._mapped_by_active(pfn, vpn, j) \
                    or not c._evictable(pfn):
                continue
            writes = c.stats[S_SWAP_OUTS]
            c._evict(pfn)
            for k in range(c.stats[S_SWAP_OUTS] - writes):
                if self._disk(self.cost[COST_DISK_WRITE]) < 0:
                    return self._overflow(j, -1, OV_SUSPEND)
        return 0

    cdef void _wait_time(self, job_t *J, int64_t sign) noexcept nogil:
        """Add (``sign`` 1) or take back (-1) the part of a blocked job's wait
        that lies after ``now``: its disk part, then its I/O part (rule 9: every
        instant counts in one field, and suspended time is its own)."""
        cdef int64_t io_from = J.disk_until if J.disk_until > self.now else self.now
        if J.disk_until > self.now:
            J.col[C_DISK] += sign * (J.disk_until - self.now)
        if J.wake > io_from:
            J.col[C_IO] += sign * (J.wake - io_from)

    cdef bint _mapped_by_active(self, int64_t pfn, uint64_t vpn, int64_t j) noexcept nogil:
        """Whether an active job other than ``j`` maps frame ``pfn`` (sharers map
        a page at one address: COW through fork, shared objects at their base)."""
        cdef int64_t k
        cdef pte_t *p
        for k in range(self.nj):
            if k == j or not self._active(k):
                continue
            p = pt_walk(&self.core.pt, self.jobs[k].mm, vpn, False)
            if p != NULL and (p[0] & PTE_PRESENT) and <int64_t>pte_pfn(p[0]) == pfn:
                return True
        return False

    cdef inline int64_t _disk(self, int64_t duration) noexcept nogil:
        """Queue one disk operation now (rule 4: FIFO, one at a time); returns
        when it completes, or -1 (nothing queued) when that instant would not
        fit the int64 clock. (``disk_busy`` is at most ``disk_free``.)"""
        cdef int64_t end
        if ckd_add_i64(&end, self.disk_free if self.disk_free > self.now else self.now,
                       duration):
            return -1
        self.disk_free = end
        self.disk_busy += duration
        return end

    # ------------------------------------------------------------------
    # one page reference of the running job

    cdef int _fast(self, job_t *J) except -1 nogil:
        """The running job's references that need nothing but their TLB entry
        (or page-walk cache) and leave the job running, inline with the hot state
        in locals, as replay's loop runs them; stops before any other reference
        (a fault, a record outside the job's remembered mapping, an event due,
        the quantum's last reference, an I/O burst's, the job's last, one whose
        CPU time might not fit the clock, one at which to look for Ctrl-C: these
        bounds cost one compare per reference), which ``_reference`` then runs.
        The counts are added once at the end. Raises ``MemoryError`` (the run
        stops, the machine consistent) if the working set of a reference it
        made found no memory to grow."""
        cdef tlb_t tlb = self.core.tlb        # (a copy in a local: see tlb_lookup)
        cdef int64_t tn = 0 if self.core.py_access else tlb.n
        cdef int64_t mm = J.mm, n = J.n, rec = J.rec
        cdef int shift = self.core.page_shift
        cdef int64_t now = self.now, stop = self.next_wake
        cdef int64_t c_hit = self.cost[COST_REF], c_miss
        cdef int64_t since = self.since, quantum = self.quantum, lim
        cdef int64_t total = J.col[C_REFS], io_every = J.io_every
        cdef int64_t zero_pfn = self.core.zero_pfn
        cdef int64_t hits = 0, misses = 0, cpu = 0, refs = 0, vwrites = 0, t, pfn
        cdef int64_t done[3]
        cdef uint64_t vpn = J.vpn, last = J.last, a
        cdef uint64_t vstart = <uint64_t>J.vstart, vend = <uint64_t>J.vend
        cdef int acc = J.acc, k
        cdef bint mid = J.mid, window = self.window != 0, nomem = False
        cdef pte_t *p
        cdef pte_t *q
        if tn == 0:
            return 0
        # the clock: while now < stop, a reference's CPU time (at most c_miss)
        # cannot pass INT64_MAX
        if ckd_add_i64(&c_miss, c_hit, self.cost[COST_TLB_MISS]):
            return 0
        if stop > INT64_MAX - c_miss:
            stop = INT64_MAX - c_miss
        # the references: up to the quantum's last, and those before the next
        # look for Ctrl-C (since < lim: one compare for both)
        lim = quantum - 1
        if self.poll_at - self.core.references < lim - since:
            lim = since + (self.poll_at - self.core.references)
        done[0] = done[1] = done[2] = 0
        while now < stop and since < lim:
            if io_every > 0 and (total + 1) % io_every == 0:
                break
            if not mid:
                k = J.kind[rec]
                if k > 3 or J.size[rec] == 0:
                    break
                a = J.addr[rec]
                vpn = a >> shift
                last = (a + <uint64_t>(J.size[rec] - 1)) >> shift
                acc = kind_access(k)
                if last < vpn or vpn < vstart or last >= vend \
                        or not (J.vprot & access_need(acc)):
                    break                       # _reference checks it
                mid = True                      # (its pages are checked)
            if vpn == last and rec + 1 == n:
                break                           # the job's last reference
            t = tlb_slot(&tlb, vpn)
            p = tlb_lookup(&tlb, t, mm, vpn)
            if p != NULL:
                if not pte_allows(p[0], acc):
                    break
                hits += 1
                now += c_hit
                cpu += c_hit
            else:
                q = pt_walk_cached(&self.core.pt, mm, vpn)
                if q == NULL or not pte_allows(q[0], acc):
                    break
                p = q
                tlb_fill(&tlb, t, mm, vpn, q)
                misses += 1
                now += c_miss
                cpu += c_miss
            p[0] |= PTE_ACCESSED | (PTE_DIRTY if acc == ACC_WRITE else 0)
            pfn = <int64_t>pte_pfn(p[0])
            if pfn != zero_pfn:
                policy_use(self.core, pfn, self.core.references + refs + 1)
            if window and wset_add(&J.ws, vpn) != 0:
                nomem = True                    # (this reference is made)
                lim = since + 1                 # stop after it
            refs += 1
            since += 1
            total += 1
            if vpn == last:
                mid = False
                rec += 1
                done[acc] += 1
                if J.vchild and acc == ACC_WRITE:
                    vwrites += 1
            else:
                vpn += 1
        J.rec, J.vpn, J.last, J.acc, J.mid = rec, vpn, last, acc, mid
        J.col[C_REFS] = total
        J.col[C_CPU] += cpu
        self.now = now
        self.since = since
        self.core.references += refs
        self.core.ps = J.ps
        stat_add(self.core, S_TLB_HITS, hits)
        stat_add(self.core, S_TLB_MISSES, misses)
        for k in range(3):
            stat_add(self.core, access_stat(k), done[k])
        stat_add(self.core, S_VFORK_CHILD_WRITES, vwrites)
        if nomem:
            with gil:
                raise MemoryError("m.run: out of memory for a working set")
        return 0

    cdef int _reference(self) except -1 nogil:
        """Run the running job's next page reference at ``now`` (rules 2-6, 8).

        A page whose TLB entry (or, on a TLB miss, the page-walk cache) allows
        the access is handled inline, as replay's loop does: no fault, so its
        cost is ``ref`` (+ ``tlb_miss``) and it queues nothing. Anything else
        goes through ``Core._touch``, and its cost and disk operations are read
        off the counters it moved. Its CPU time is counted by ``_after`` (-1
        there: it does not fit an int64)."""
        cdef int64_t j = self.running, k, c, t, pfn, miss = 0
        cdef job_t *J = &self.jobs[j]
        cdef int64_t before[9]
        cdef uint64_t a, vpn, last
        cdef int st
        cdef int64_t *vma
        cdef pte_t *p = NULL
        cdef pte_t *q
        cdef tlb_t *tlb = &self.core.tlb
        if self.now >= self.next_wake:
            self._advance(self.now)             # ends and wake-ups due: first
        self.core.cur_pid = J.pid
        self.core.ps = J.ps
        self.core.now_ns = self.now
        if not J.mid:
            # rule 2: a record's pages are checked when it starts (the job's last
            # mapping is remembered: most records fall inside it)
            if J.kind[J.rec] > 3 or J.size[J.rec] == 0:
                self.err_job, self.err_rec = j, J.rec
                return ST_BAD_RECORD
            a = J.addr[J.rec]
            J.acc = kind_access(J.kind[J.rec])
            vpn = a >> self.core.page_shift
            last = (a + <uint64_t>(J.size[J.rec] - 1)) >> self.core.page_shift
            if last < vpn or vpn < J.vstart or last >= J.vend or not (J.vprot & access_need(J.acc)):
                st = self.core._check(J.mm, a, J.size[J.rec], J.acc)
                if st != ST_OK:
                    # rule 8: a MemoryFault costs nothing and kills the job's process
                    self.core._refusal_event(st, J.pid)
                    J.col[C_FAULTED] = 1
                    self.running = -1
                    self._end(j, self.now, 139)
                    return ST_OK
                vma = self.core._vma(J.mm, vpn)
                J.vstart, J.vend, J.vprot = vma[V_START], vma[V_END], vma[V_PROT]
                if last >= <uint64_t>J.vend:    # spans mappings: check each record
                    J.vstart, J.vend = 1, 0
            J.vpn, J.last, J.mid = vpn, last, True
        if self.window and wset_reserve(&J.ws) != 0:
            with gil:                           # (before the reference changes anything)
                raise MemoryError("m.run: out of memory for a working set")
        vpn = J.vpn
        if tlb.n and not self.core.py_access:
            t = tlb_slot(tlb, vpn)
            q = tlb_lookup(tlb, t, J.mm, vpn)
            if q != NULL:
                if pte_allows(q[0], J.acc):
                    p = q
            else:
                q = pt_walk_cached(&self.core.pt, J.mm, vpn)
                if q != NULL and pte_allows(q[0], J.acc):
                    p = q
                    miss = 1
                    tlb_fill(tlb, t, J.mm, vpn, q)
        if p != NULL:
            self.core.references += 1
            p[0] |= PTE_ACCESSED | (PTE_DIRTY if J.acc == ACC_WRITE else 0)
            pfn = <int64_t>pte_pfn(p[0])
            if pfn != self.core.zero_pfn:
                policy_use(self.core, pfn, self.core.references)
            stat_count(self.core, S_TLB_MISSES if miss else S_TLB_HITS)
            if self.window:
                wset_add(&J.ws, vpn)            # (cannot fail: reserved)
            c = self.cost[COST_REF]
            if miss and ckd_add_i64(&c, self.cost[COST_REF], self.cost[COST_TLB_MISS]):
                c = -1
            J.col[C_REFS] += 1
            return self._after(j, J, c, 0, 0)
        a = J.addr[J.rec]
        for k in range(D_N):
            before[k] = self.core.stats[_D_STAT[k]]
        self.core.fault_addr = a if vpn == a >> self.core.page_shift else vpn << self.core.page_shift
        self.core.fault_kind = J.acc
        self.core.references += 1
        st = self.core._touch(J.mm, vpn, J.acc, self.core._vma(J.mm, vpn), &p)
        if st != ST_OK:
            self.err_job, self.err_rec = j, J.rec
            return st
        wset_add(&J.ws, vpn)
        for k in range(D_N):
            before[k] = self.core.stats[_D_STAT[k]] - before[k]
        J.col[C_REFS] += 1
        J.col[C_MINOR] += before[D_MINOR]
        J.col[C_MAJOR] += before[D_MAJOR]
        return self._after(j, J, self._cpu_time(before), before[D_SWAP_OUTS],
                           before[D_SWAP_INS] + before[D_FILE_READS] > 0)

    cdef int64_t _cpu_time(self, const int64_t *d) noexcept nogil:
        """Rule 3: the CPU time of a reference whose counters moved by ``d``
        (``D_*`` order), or -1 if it does not fit an int64."""
        cdef int64_t zero = d[D_ZERO_FILLS] - d[D_POOL_HITS]
        cdef int64_t n[5]
        cdef int64_t w[5]
        cdef int64_t c = self.cost[COST_REF], term
        cdef int k
        # (cost, count) pairs: tlb_miss, minor, zero, copy, major
        w[0], w[1], w[2], w[3], w[4] = (self.cost[COST_TLB_MISS], self.cost[COST_MINOR],
                                        self.cost[COST_ZERO], self.cost[COST_COPY],
                                        self.cost[COST_MAJOR])
        n[0], n[1], n[2], n[3], n[4] = (d[D_TLB], d[D_MINOR], zero if zero > 0 else 0,
                                        d[D_COPIES], d[D_MAJOR])
        for k in range(5):
            if ckd_mul_i64(&term, w[k], n[k]) or ckd_add_i64(&c, c, term):
                return -1
        return c

    cdef int _after(self, int64_t j, job_t *J, int64_t c, int64_t writes,
                    bint read) except -1 nogil:
        """The rest of a reference of job ``j`` once it touched its page: the
        record's progress, its CPU time ``c`` (rule 3; -1: more than an int64),
        then its ``writes`` and ``read`` on the disk (rule 4), its end (8), an
        I/O burst (5) or the quantum (6). In the reference's order: a time
        that would pass the int64 clock stops the run after the record's
        progress and a policy hook's error."""
        cdef int64_t k, t, rec
        if J.vpn == J.last:
            J.mid = False
            J.rec += 1
            stat_count(self.core, access_stat(J.acc))
            if J.vchild and J.acc == ACC_WRITE:   # it wrote into its parent (section 5)
                stat_count(self.core, S_VFORK_CHILD_WRITES)
        else:
            J.vpn += 1
        self.since += 1
        rec = J.rec - (0 if J.mid else 1)       # the reference's record
        if unlikely(self.core.hook_failed):          # a policy hook raised: stop here
            self.err_job, self.err_rec = j, rec
            return ST_HOOK_LATE
        # rule 3: the clock advances by its CPU time (a job's CPU time is a part
        # of [0, now]: its column fits when the clock does)
        if c < 0 or ckd_add_i64(&t, self.now, c):
            return self._overflow(j, rec, OV_CPU)
        self.now = t
        J.col[C_CPU] += c
        # rule 4: its disk operations, writes first
        for k in range(writes):
            t = self._disk(self.cost[COST_DISK_WRITE])
            if t < 0:
                return self._overflow(j, rec, OV_DISK)
        if read:
            t = self._disk(self.cost[COST_DISK_READ])
            if t < 0:
                return self._overflow(j, rec, OV_DISK)
        J.col[C_DISK] += t - self.now
        J.disk_until = t
        if J.rec == J.n:                        # rule 8: it ends with its disk wait
            self.running = -1
            if t > self.now:
                J.state = J_ENDING
                J.wake = t
                if t < self.next_wake:
                    self.next_wake = t
                return ST_OK
            self._end(j, self.now, 0)
            return ST_OK
        if J.io_every > 0 and J.col[C_REFS] % J.io_every == 0:
            if ckd_add_i64(&t, t, J.io_ns):     # rule 5: after the disk wait
                return self._overflow(j, rec, OV_IO)
            J.col[C_IO] += J.io_ns
        elif writes == 0 and not read:          # (a wait of 0 ns still blocks)
            # rule 6: the quantum, after wake-ups due now (they queue first)
            if self.since >= self.quantum:
                self._advance(self.now)
                if self.qlen:
                    self._push(j, self.now)
                    self.running = -1
                else:
                    self.since = 0
            return ST_OK
        J.state = J_BLOCKED
        J.wake = t
        self.running = -1
        if t < self.next_wake:
            self.next_wake = t
        return ST_OK

    cdef int _loop(self) except -1 nogil:
        """Run until every job has ended; returns a status."""
        cdef int st
        cdef int64_t j
        self.running = self.last_ran = -1
        self.next_wake = INT64_MAX
        for j in range(self.nj):
            if self.jobs[j].n == 0:
                self._end(j, 0, 0)              # an empty trace ends at once
            else:
                self._push(j, 0)                # rule 2: the jobs in order
        while True:
            if self.running < 0:
                if self._dispatch() == 1:
                    return ST_OK
            self._fast(&self.jobs[self.running])
            st = self._reference()
            if st != ST_OK:
                return st
            if unlikely(self.core.references >= self.poll_at):
                self.poll_at = self.core.references + POLL_REFS
                if signal_raised():             # Ctrl-C: stop between two references
                    return -1

    def run(self):
        """Run the jobs. Returns ``(rows, disk_busy_ns, switches, added)``,
        ``rows`` one int64 row per job in ``C_*`` order, ``added`` what the run
        added to the machine's counters (taken while the machine is busy: no
        other thread's access is in it); raises the run's error, with ``.index``,
        ``.pid`` and ``.job`` when a record caused it (``OverflowError`` too,
        when time would pass the int64 clock). On the main thread a pending
        signal's exception (KeyboardInterrupt) propagates, raised between two
        references."""
        cdef Core core = self.core
        cdef int st = ST_OK
        cdef int64_t j, k
        core._take_hold()
        added = np.array(core.stats_array, copy=True)
        # Python runs signal handlers on the main thread only: elsewhere, never look
        self.poll_at = core.references + POLL_REFS if on_main_thread() else INT64_MAX
        try:
            try:
                with nogil:
                    st = self._loop()
            except BaseException:
                core.hook_error = None          # the run's own error is the one raised
                core.hook_failed = False
                raise
            finally:
                added = core.stats_array - added
                hold_give(&core.hold)
                core.ps = core.scratch
            if st != ST_OK:
                pid = self.jobs[self.err_job].pid
                try:
                    if st == ST_BAD_RECORD:
                        from pymmu.errors import TraceError
                        raise TraceError("bad trace record: kind code over 3 or size 0")
                    core._raise_status(st, pid)     # (the oom event, at its instant)
                except Exception as e:
                    e.index = self.err_rec
                    e.pid = pid
                    e.job = self.err_job
                    raise
            core._hook_check()
        finally:
            core.now_ns = 0
        rows = np.empty((self.nj, C_N), np.int64)
        for j in range(self.nj):
            for k in range(C_N):
                rows[j, k] = self.jobs[j].col[k]
        return rows, self.disk_busy, self.switches, added
