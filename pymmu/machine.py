"""``Machine`` and ``Process``: the public API over the Cython core.

This layer owns what is not hot: argument checking, processes (pids, parents,
states, vfork lending), and the mappings of each address space (an
``AddressMap`` per space, pushed to the core as a table after every change).
Everything an access does happens in ``pymmu._core.Core``.
"""
from __future__ import annotations

import copy
import functools
import weakref
from contextlib import contextmanager
from fractions import Fraction
from typing import Mapping as TMapping

import numpy as np

from pymmu import pte as _pte
from pymmu._args import (
    MMAP_MIN,
    STAT_NAMES,
    as_buffer,
    as_int,
    check_machine_args,
    count_int,
    parse_prot,
)
from pymmu._children import Children
from pymmu import _introspect, _invariants
from pymmu._core import Core, ProcessCore
from pymmu.errors import InvariantError, ProcessStateError, SegmentationFault, TraceError
from pymmu.image import Image
from pymmu.tables import COSTS, POLICY_CODES, PROT_EXEC, PROT_READ, PROT_WRITE
from pymmu.policy import Policy
from pymmu.vmas import KINDS, AddressMap, Mapping, Vma, mapping_of

__all__ = ["Machine", "Process"]

_STAT_INDEX = {name: i for i, name in enumerate(STAT_NAMES)}
# The counters of completed accesses: one of them goes up per completed record.
_DONE = [_STAT_INDEX[name] for name in ("reads", "writes", "fetches")]


class _Space:
    """One address space: its core id, its mappings, and how many processes use it
    (more than one only while a vfork child borrows it)."""

    __slots__ = ("mm", "amap", "users")

    def __init__(self, mm: int, amap: AddressMap):
        self.mm = mm
        self.amap = amap
        self.users = 1


def _holding(method):
    """Run a ``Machine`` or ``Process`` method holding the machine for its whole
    duration (``Core.hold_acquire``, pymmu/include/hold.h).

    An operation makes several core calls and changes Python-level state
    between them (spawn: the address space, its mappings, the process; check:
    the core's tables, then every space's mappings). Held, another thread's
    call is refused with ``RuntimeError`` before it changes anything, instead
    of finding the machine half changed or being refused half way; this
    thread's own calls (an operation's parts, m.run's exit callback) go
    through. Refused itself, the method changes nothing.
    """
    @functools.wraps(method)
    def held(self, *args, **kwargs):
        core = self._core
        core.hold_acquire()
        try:
            return method(self, *args, **kwargs)
        finally:
            core.hold_release()
    return held


def _table(amap: AddressMap) -> np.ndarray:
    """The core's mapping table of ``amap`` (``Core.set_vmas``): one int64 row
    (start, end, prot, kind, obj or -1, pgoff) per mapping."""
    return np.array([(v.start, v.end, v.prot, KINDS[v.kind], -1 if v.obj is None else v.obj,
                      v.pgoff) for v in amap], dtype=np.int64).reshape(-1, 6)


def _vma_problem(v) -> str | None:
    """Why ``v`` is not a mapping a machine could have made (its fields' types:
    ``_table`` would convert a float or a bool silently), or None."""
    def whole(x):
        return type(x) is int
    if type(v) is not Vma:
        return f"a {type(v).__name__} among the mappings"
    if not (whole(v.start) and whole(v.end) and whole(v.prot) and whole(v.pgoff)):
        return f"mapping at page {v.start!r} has a field that is not an int"
    if v.kind not in KINDS:
        return f"mapping at page {v.start:#x} has kind {v.kind!r}"
    if (v.obj is None) != (v.kind not in ("shared", "file")) or not (
            v.obj is None or whole(v.obj)):
        return f"mapping at page {v.start:#x} has backing {v.obj!r} for kind {v.kind!r}"
    return None


def _backings(amap: AddressMap) -> set:
    """The shared objects and images an address space maps, as ``(kind, id)``."""
    return {(v.kind, v.obj) for v in amap if v.kind in ("shared", "file")}


class _CoreRecorder:
    """The core's event log behind ``pymmu.events.EventLog``."""

    def __init__(self, core):
        self.core = core

    def start(self, limit) -> None:
        self.core.events_start(limit)

    def snapshot(self):
        # (RuntimeError while a replay in another thread records into the log)
        return self.core.events_snapshot()

    def stop(self):
        """Close the block, waiting first for another thread's replay or run.

        The core refuses while another thread holds the machine: that thread
        writes the log without the GIL, so the log must not be closed (its
        buffer handed over) under it. Giving up would leave the machine
        recording with no block to close it, so wait, polling with the GIL
        released (``time.sleep``), until the machine is free, then close: the
        log gets that operation's events. A refusal because a policy hook is
        running (``in_hook``) is final: it is raised at once.
        """
        import time

        core = self.core
        free_refusals = 0        # in a row, the machine seen free after each
        while True:
            try:
                return core.events_stop()
            except RuntimeError:
                if core.in_hook:
                    raise
                if core.busy:
                    free_refusals = 0
                else:
                    # the holder left between the refusal and this look, or the
                    # refusal has another cause: then do not wait for ever
                    free_refusals += 1
                    if free_refusals > 50:
                        raise
            time.sleep(0.001)


class Machine:
    """A physical machine: frames, a swap device, a TLB and processes.

    Parameters
    ----------
    frames : int
        Number of user frames (at least 1).
    page_size : int, optional
        Bytes per page, a power of two from 512 to 65536. Default 4096.
    swap_slots : int, optional
        Pages of swap. Default 0 (no swap: anonymous pages cannot be evicted).
    policy : str, optional
        Page replacement: "clock" (default), "fifo", "lru", "random", "opt"
        (replay only) or "mru" (most recently used: for looping scans).
    va_bits : int, optional
        Virtual address width: 32, 39 or 48 (default).
    zero_pool : int or None, optional
        Target size of the pre-zeroed free-frame pool that ``idle`` refills
        (None: no limit).
    zero_page : bool, optional
        Map the shared zero page on a first read (default True).
    tlb_entries : int, optional
        Entries of the direct-mapped software TLB (0 disables it). Default 64.
    strict_vfork : bool, optional
        Make a write by a vfork child raise ``ProcessStateError``.
    seed : int, optional
        Seed of the "random" policy.

    Examples
    --------
    >>> m = Machine(16)
    >>> p = m.spawn()
    >>> a = p.mmap(4096)
    >>> p.read(a, 4)
    b'\\x00\\x00\\x00\\x00'
    >>> m.stats["zero_page_maps"], m.frames_free
    (1, 16)
    """

    def __init__(self, frames, *, page_size=4096, swap_slots=0, policy="clock", va_bits=48,
                 zero_pool=None, zero_page=True, tlb_entries=64, strict_vfork=False, seed=0):
        (frames, page_size, swap_slots, policy, va_bits, zero_pool, tlb_entries,
         seed) = check_machine_args(frames, page_size, swap_slots, policy, va_bits,
                                    zero_pool, tlb_entries, seed)
        for name, value in (("zero_page", zero_page), ("strict_vfork", strict_vfork)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
        code = POLICY_CODES.index("python" if isinstance(policy, Policy) else policy)
        self._core = Core(frames, page_size, swap_slots, code, va_bits,
                          -1 if zero_pool is None else zero_pool, bool(zero_page),
                          tlb_entries, seed % (1 << 64))
        if isinstance(policy, Policy):
            self._core.set_policy(policy)
        self._stats = self._core.stats_array
        self._shift = page_size.bit_length() - 1
        self._top = 1 << va_bits
        self.policy = policy
        self.va_bits = va_bits
        self.zero_pool = zero_pool
        self.zero_page = bool(zero_page)
        self.tlb_entries = tlb_entries
        self.strict_vfork = bool(strict_vfork)
        self.seed = seed
        # Processes that have not exited; exited ones are kept only while
        # something else holds them (a long-lived machine keeps no garbage).
        self._procs: dict[int, Process] = {}
        self._gone: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._next_pid = 1
        self._spaces: dict[int, _Space] = {}
        # Shared objects and images in use: (kind, id) -> how many address
        # spaces map some of it; freed when that reaches 0 (not by a rescan).
        self._users: dict[tuple, int] = {}
        self._images: dict[int, tuple[Image, int]] = {}     # id(image) -> (image, img)
        self._image_of: dict[int, Image] = {}               # img -> image

    def _guard(self) -> None:
        """Refuse a call from inside a Python policy's hook (DESIGN.md section 11)."""
        if self._core.in_hook:
            raise RuntimeError("a policy hook may not call the machine it serves")

    @contextmanager
    def _held(self):
        """Hold the machine for a block of several calls (see ``_holding``)."""
        self._core.hold_acquire()
        try:
            yield self
        finally:
            self._core.hold_release()

    # ---- numbers ---------------------------------------------------------

    @property
    def page_size(self) -> int:
        """Bytes per page."""
        return self._core.page_size

    @property
    def frames(self) -> int:
        """Number of user frames (the zero page is not one of them)."""
        return self._core.frames

    @property
    def frames_free(self) -> int:
        """User frames that hold no page: the zero pool plus the dirty free frames."""
        self._guard()
        return self._core.frames_free

    @property
    def swap_slots(self) -> int:
        """Size of the swap device, in pages."""
        return self._core.swap_slots

    @property
    def swap_free(self) -> int:
        """Swap slots that no PTE and no shared object refers to."""
        self._guard()
        return self._core.swap_free

    @property
    def page_table_pages(self) -> int:
        """Page-table nodes in existence, over all address spaces."""
        self._guard()
        return self._core.nodes

    @property
    def stats(self) -> TMapping[str, int]:
        """Counters since the start or the last ``reset_stats()`` (a copy)."""
        self._guard()
        return dict(zip(STAT_NAMES, self._stats.tolist()))

    @_holding
    def reset_stats(self) -> None:
        """Zero the machine's counters (processes keep theirs)."""
        self._stats[:] = 0

    @_holding
    def refcount(self, pfn) -> int:
        """Number of PTEs, over all processes, that map frame ``pfn``.

        Parameters
        ----------
        pfn : int
            A user frame, 0 .. frames-1, or ``frames`` for the shared zero page.

        Returns
        -------
        int
            0 for a free frame.
        """
        pfn = as_int(pfn, "pfn")
        if not 0 <= pfn <= self.frames:
            raise ValueError(f"pfn must be in 0..{self.frames} (the last is the zero page), "
                             f"got {pfn}")
        return int(_introspect.refcounts(self._core)[pfn])

    @_holding
    def idle(self, n=None) -> int:
        """Zero dirty free frames into the pre-zeroed pool, as an idle loop does.

        Parameters
        ----------
        n : int or None
            At most this many (None: until the pool reaches its ``zero_pool``
            target, or every dirty frame if there is no target).

        Returns
        -------
        int
            How many frames were zeroed.
        """
        if n is not None:
            n = count_int(n, "n")
        return self._core.idle(n)

    @_holding
    def check(self) -> None:
        """Verify every invariant; raise ``InvariantError`` naming the first broken one."""
        mms = sorted(self._spaces)
        problem = _invariants.check(self._core, mms)
        if problem is None:
            for mm in mms:
                problem = self._check_space(self._spaces[mm])
                if problem:
                    break
        if problem is None:
            for p in self._procs.values():
                problem = p._check_state()
                if problem:
                    break
        if problem is None:
            problem = self._check_backings()
        if problem:
            raise InvariantError(problem)

    def _check_backings(self) -> str | None:
        """The counts of address spaces per shared object and image are right,
        and exactly the images in use are registered."""
        users: dict[tuple, int] = {}
        for space in self._spaces.values():
            for key in _backings(space.amap):
                users[key] = users.get(key, 0) + 1
        if users != self._users:
            return f"shared object / image users out of sync: {self._users} != {users}"
        in_use = {obj for kind, obj in users if kind == "file"}
        if set(self._image_of) != in_use or len(self._images) != len(in_use):
            return f"images registered {sorted(self._image_of)} but in use {sorted(in_use)}"
        if any(key != id(image) or self._image_of.get(img) is not image
               for key, (image, img) in self._images.items()):
            return "image index out of sync"
        return None

    def _check_space(self, space: _Space) -> str | None:
        """Mappings sorted and disjoint; every PTE inside a mapping, with bits that
        agree with its protection."""
        amap = space.amap
        problem = amap.check(self._top >> self._shift)
        if problem:
            return f"mm {space.mm}: {problem}"
        vpns, ptes = self._core.ptes(space.mm)
        inside = np.zeros(len(vpns), bool)
        P, R, W, X, C, Z, S = (np.uint64(b) for b in (
            _pte.PRESENT, _pte.READABLE, _pte.WRITABLE, _pte.EXECUTABLE, _pte.COW,
            _pte.ZERO, _pte.SHARED))
        for v in amap:
            sel = (vpns >= v.start) & (vpns < v.end)
            inside |= sel
            pt = ptes[sel & ((ptes & P) != 0)]
            if np.any(((pt & R) != 0) != bool(v.prot & PROT_READ)):
                return f"mm {space.mm}: READABLE bit disagrees with mapping at {v.start:#x}"
            if np.any(((pt & X) != 0) != bool(v.prot & PROT_EXEC)):
                return f"mm {space.mm}: EXECUTABLE bit disagrees with mapping at {v.start:#x}"
            if not v.prot & PROT_WRITE and np.any(pt & (W | C)):
                return f"mm {space.mm}: writable or COW PTE in read-only mapping {v.start:#x}"
            if np.any(((pt & S) != 0) != v.shared):
                return f"mm {space.mm}: SHARED bit disagrees with mapping at {v.start:#x}"
            if v.prot & PROT_WRITE and not v.shared:
                priv = pt[(pt & Z) == 0]
                if np.any(((priv & W) != 0) == ((priv & C) != 0)):
                    return (f"mm {space.mm}: private PTE without exactly one of WRITABLE "
                            f"and COW in mapping {v.start:#x}")
        if not inside.all():
            return f"mm {space.mm}: PTE at page {int(vpns[~inside][0]):#x} outside every mapping"
        return None

    # ---- trace replay ------------------------------------------------------

    @_holding
    def replay(self, trace, process=None) -> TMapping[str, int]:
        """Run a ``pymmu.traces.Trace`` (or chunks of one) and return the counters it added.

        Parameters
        ----------
        trace : pymmu.traces.Trace or iterable of Trace
            The records: lackey I is an execute, L a read, S a write, M one write.
            A record whose bytes cross a page boundary touches every page it
            covers; each page touched is an independent reference. An iterable
            (``pymmu.traces.stream(path)``) is replayed as the concatenation of
            its Traces, one chunk in memory at a time; the opt policy, which
            needs the whole future, takes only a single Trace.
        process : Process, optional
            Replay in this (running) process's address space. A record that
            faults raises its ``MemoryFault`` (or ``OutOfMemory``) with ``.index``
            set to the record's position (in the concatenation); earlier records
            stay applied. Without a process, a fresh one whose whole address
            space is one private anonymous rwx mapping runs the trace and exits
            at the end.

        Returns
        -------
        dict
            Counter deltas of this replay (the keys of ``Machine.stats``).

        Raises
        ------
        pymmu.traces.TraceError
            A record with a kind code over 3 or a size of 0 (``.index`` set; the
            records before it stay applied), or a bad line in a streamed file.
        """
        from pymmu.traces import replay_parts

        parts = replay_parts(trace, single=self.policy == "opt")
        if process is not None:
            if not isinstance(process, Process) or process._m is not self:
                raise ValueError("process must be a Process of this machine")
            process._running("replay")
            proc = process
        else:
            proc = self.spawn()
            proc.mmap(self._top, "rwx", addr=0)
        added = np.zeros(len(STAT_NAMES), np.int64)     # (by the core, while busy)
        offset = 0
        try:
            for part in parts:
                self._replay_part(proc, part, offset, added)
                offset += len(part)
        except BaseException:
            if process is None:
                try:
                    proc.exit()
                except Exception:       # (a policy hook again): the first error wins
                    pass
            raise
        if process is None:
            proc.exit()
        return dict(zip(STAT_NAMES, added.tolist()))

    @_holding
    def run(self, jobs, *, quantum=10_000, cost=None, load_control=None):
        """Run jobs on one CPU in simulated time (DESIGN.md section 12).

        Each job's records run in its own address space, with every access's
        full MMU semantics and this machine's policy, interleaved by a
        round-robin scheduler over one paging disk (first come, first served)
        and a private I/O device per job; time is integer nanoseconds, exact
        and deterministic (docs/semantics.md, "Many processes in time"). The
        loop runs in the core without the GIL.

        Parameters
        ----------
        jobs : sequence of pymmu.Job
            One per process, in order (a bare Trace stands for ``Job(trace)``).
            A job without a process runs in a fresh one (one private rwx mapping
            over the whole space, as ``replay``) that exits when the job ends.
        quantum : int
            Page references per time slice.
        cost : pymmu.Cost, optional
            Nanoseconds of each event; None means ``pymmu.Cost()``.
        load_control : pymmu.WorkingSet, optional
            Working-set load control: suspend the last admitted process while
            the active working sets exceed the frames.

        Returns
        -------
        pymmu.RunResult

        Raises
        ------
        ValueError
            The ``opt`` policy, a job whose process is not a running process of
            this machine, two jobs with one process (nothing changes).
        pymmu.OutOfMemory
            No frame could be freed: the run stops (``.index``: the record's
            position in its job's trace, ``.pid``), after the fresh processes
            of the run exit. A ``MemoryFault`` does not stop the run: it kills
            the job's process (exit status 139, ``faulted`` in its row).
        """
        from pymmu._run import Scheduler
        from pymmu.run import JOBS_DTYPE, RunResult, check_run_args

        entries, quantum, cost, window = check_run_args(self, jobs, quantum, cost,
                                                        load_control)
        procs = []
        for job, proc, trace in entries:
            if proc is None:                    # rule 1: spawned now, in job order
                proc = self.spawn()
                proc.mmap(self._top, "rwx", addr=0)
                procs.append((proc, True))
            else:
                procs.append((proc, False))

        def on_exit(j: int, status: int) -> None:
            procs[j][0].exit(status)            # (the core lets this thread in)

        specs = [(proc._mm, proc.pid, trace.addr, trace.kind, trace.size, proc._stats,
                  job.io_every, job.io_ns, fresh, proc._lender is not None)
                 for (job, _, trace), (proc, fresh) in zip(entries, procs)]
        costs = tuple(getattr(cost, name) for name in COSTS)
        try:
            rows, disk_busy, switches, added = Scheduler(self._core, specs, quantum, costs,
                                                  window, on_exit).run()
        except BaseException:
            for proc, fresh in procs:           # rule 8: the fresh ones exit
                if fresh and proc.state == "running":
                    try:
                        proc.exit()
                    except Exception:           # (a policy hook again): the first wins
                        pass
            raise
        table = np.zeros(len(rows), dtype=JOBS_DTYPE)
        for i, name in enumerate(table.dtype.names):
            table[name] = rows[:, i]
        return RunResult(table, disk_busy_ns=disk_busy, switches=switches,
                         stats=dict(zip(STAT_NAMES, added.tolist())))

    def _replay_part(self, proc: "Process", trace, offset: int, added) -> None:
        """Replay one Trace whose first record is record ``offset`` of the whole,
        adding what it counts to ``added`` (an int64 array of the counters).

        A vfork child's STORE and MODIFY records write into its parent's
        memory, as ``write`` does: each one that completes counts
        ``vfork_child_writes``, and with ``strict_vfork`` the first one raises
        ``ProcessStateError`` (``.index`` set) after the records before it ran.
        """
        if not proc._borrowing:
            self._replay_run(proc, trace, offset, added)
            return
        from pymmu.traces import MODIFY, STORE

        writes = (trace.kind == STORE) | (trace.kind == MODIFY)
        refused = None
        if self.strict_vfork and writes.any():
            refused = int(np.argmax(writes))
            trace = trace[:refused]
        done = int(proc._stats[_DONE].sum())
        try:
            if len(trace):
                self._replay_run(proc, trace, offset, added)
        finally:
            # the records that completed are the first ones (reads, writes and
            # fetches count one per completed record, whatever stopped the rest)
            completed = int(proc._stats[_DONE].sum()) - done
            stores = int(np.count_nonzero(writes[:completed]))
            if stores:
                self._core.count(_STAT_INDEX["vfork_child_writes"], stores, proc._stats,
                                 added)
        if refused is not None:
            error = ProcessStateError(
                f"pid {proc.pid} is a vfork child: trace record {offset + refused} writes "
                "to the borrowed address space, refused (strict_vfork)")
            error.index = offset + refused
            raise error

    def _replay_run(self, proc: "Process", trace, offset: int, added) -> None:
        """Replay one Trace in the core (see ``_replay_part``)."""
        from pymmu.traces import bad_record_error, first_bad_record

        run = trace
        next_use = bad = None
        if self.policy == "opt":
            # the look-ahead covers the records that will run: those before a bad one
            bad = first_bad_record(trace)
            if bad is not None:
                run = trace[:bad]
            next_use = run.next_use(self.page_size)
        failure = self._core.replay(proc._mm, proc.pid, run.addr, run.kind, run.size,
                                    next_use, proc._stats, added)
        if failure is None and bad is not None:
            raise bad_record_error(trace, bad, offset)
        if failure is not None:
            error, index = failure
            if isinstance(error, TraceError):     # the core refused a record: say which
                raise bad_record_error(trace, int(index), offset)
            error.index = offset + int(index)
            raise error

    # ---- processes -------------------------------------------------------

    @_holding
    def spawn(self) -> "Process":
        """A new process with an empty address space and no parent (ppid 0)."""
        space = self._new_space(self._core.mm_new(), AddressMap())
        return self._new_process(0, space)

    @_holding
    def process(self, pid) -> "Process":
        """The process with this pid: one that has not exited, or an exited one
        that something else still holds (the machine lets exited ones go).

        Parameters
        ----------
        pid : int

        Raises
        ------
        KeyError
            If no process ever had this pid, or it exited and nothing holds it.
        """
        pid = as_int(pid, "pid")
        p = self._procs.get(pid)
        if p is None:
            p = self._gone.get(pid)
        if p is None:
            if 0 < pid < self._next_pid:
                raise KeyError(f"pid {pid} has exited and its Process was let go")
            raise KeyError(f"no process with pid {pid}")
        return p

    def _forget(self, p: "Process") -> None:
        """``p`` has exited (reaped, or parentless): keep it only while others do."""
        del self._procs[p.pid]
        self._gone[p.pid] = p

    def _new_process(self, ppid: int, space: _Space) -> "Process":
        p = Process(self, self._next_pid, ppid, space)
        self._procs[p.pid] = p
        self._next_pid += 1
        if space.users == 1:        # made for it (a vfork child borrows one)
            self._core.set_mm_pid(space.mm, p.pid)
        return p

    def _new_space(self, mm: int, amap: AddressMap) -> _Space:
        space = _Space(mm, amap)
        self._spaces[mm] = space
        for key in _backings(amap):
            self._users[key] = self._users.get(key, 0) + 1
        self._push(space)
        return space

    def _push(self, space: _Space) -> None:
        """Hand the core the mapping table of ``space``."""
        self._core.set_vmas(space.mm, _table(space.amap))

    def _drop_space(self, space: _Space) -> None:
        """One user less; free the space when none is left."""
        space.users -= 1
        if space.users:
            return
        keys = _backings(space.amap)
        self._core.mm_destroy(space.mm)
        del self._spaces[space.mm]
        self._unuse(keys)

    def _unuse(self, keys) -> None:
        """One address space fewer maps each of ``keys`` (see ``_backings``):
        free the shared objects and images that none maps any more."""
        for key in sorted(keys):
            n = self._users[key] - 1
            if n:
                self._users[key] = n
            else:
                del self._users[key]
                self._release(key)

    def _release(self, key) -> None:
        """Free a shared object or an image that no address space maps."""
        kind, obj = key
        if kind == "shared":
            self._core.obj_release(obj)
            return
        image = self._image_of.pop(obj)
        del self._images[id(image)]
        self._core.image_release(obj)         # (the core reuses its id)

    def _image_id(self, image: Image) -> int:
        """The core's id of ``image``, registered if no address space maps it
        yet (it is let go again when none does: ``_release``)."""
        entry = self._images.get(id(image))
        if entry is not None and entry[0] is image:
            return entry[1]
        layout = image.layout(self.page_size)
        img = self._core.image_new(layout.file_vpns, layout.file_pages)
        self._images[id(image)] = (image, img)
        self._image_of[img] = image
        return img

    def _image_name(self, img_id: int) -> str:
        image = self._image_of.get(img_id)
        return "" if image is None else image.name

    # ---- introspection -------------------------------------------------

    def events(self, limit=None):
        """An event log: ``with m.events() as log:`` records what the MMU does.

        One event per increment of each counter named in
        ``pymmu.events.KINDS`` (and one per access refused with ``OutOfMemory``,
        ``SegmentationFault`` or ``ProtectionFault``), so that over the block
        ``log.counts()[k]`` equals the counter's delta. Recording costs nothing
        when no block is open. Nested or concurrent blocks raise RuntimeError.

        Parameters
        ----------
        limit : int, optional
            Keep only the latest ``limit`` events; ``log.dropped`` counts the rest.

        Returns
        -------
        pymmu.events.EventLog
        """
        self._guard()
        from pymmu.events import EventLog

        return EventLog(_CoreRecorder(self._core), limit)

    @property
    def references(self) -> int:
        """Page references started since the machine was made (events' ``seq``).

        Each page an access or a trace record touches is one reference. It only
        grows: ``reset_stats`` leaves it alone.
        """
        self._guard()
        return self._core.references

    @_holding
    def processes(self) -> list["Process"]:
        """Every process that has not exited (running, suspended or zombie), by pid."""
        return [p for _, p in sorted(self._procs.items()) if p.state != "exited"]

    @_holding
    def frame_table(self) -> np.ndarray:
        """One row per user frame: a numpy structured array of
        ``pymmu.introspect.FRAME_TABLE_DTYPE`` (a new array; changing it changes
        nothing).

        Fields: ``pfn``; ``state`` ("free_zeroed", "free_dirty", "used");
        ``refcount``; ``kind`` ("anon", "shared", "file", "" when free); ``pid``
        and ``vaddr`` of one mapper, the lowest pid (-1 / 0 when no PTE maps
        it); ``accessed`` and ``dirty``, OR over the PTEs that map it;
        ``swap_slot``, the slot of its swap-cache copy (-1 when none).
        """
        from pymmu.introspect import frame_table

        state, kind, slot = _introspect.frame_info(self._core)
        # the core's F_FREE, F_ANON, F_FILE, F_SHMEM as FRAME_KINDS indices
        kind = np.array([0, 1, 3, 2])[kind]
        refs = _introspect.refcounts(self._core)[:self.frames]

        def mappers():
            for p in self.processes():
                if p._space is not None and p.state in ("running", "suspended"):
                    vpns, ptes = self._core.ptes(p._space.mm)
                    yield p.pid, vpns, ptes, self._shift
        return frame_table(self.frames, state, kind, refs, slot, mappers())

    @property
    def clock_hand(self) -> int | None:
        """The pfn under the clock hand (policy "clock"); None for a policy
        without a hand (its unit says: ``Core.hand`` is -1)."""
        self._guard()
        hand = self._core.hand
        return None if hand < 0 else hand

    def _count(self, p: "Process", name: str) -> None:
        """Count one ``name`` for the machine and process ``p`` (in the core's
        counting unit, as every counter)."""
        self._core.count(_STAT_INDEX[name], 1, p._stats)

    # ---- snapshots -------------------------------------------------------

    def __copy__(self):
        raise TypeError("copy.copy of a Machine would share its frames and page tables: "
                        "use copy.deepcopy(m) or pickle for an independent snapshot")

    @_holding
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        # weak references do not pickle: the exited processes still held go as
        # a plain dict (a snapshot holds them only if it pickles them too). Its
        # items(), not dict(): the collector may free an entry meanwhile, which
        # items() skips and a lookup by key would raise KeyError for.
        state["_gone"] = dict(self._gone.items())
        return state

    def __deepcopy__(self, memo):
        """An independent machine in the same state, copied whole while this
        one is held (another thread's operation cannot tear the copy)."""
        with self._held():
            new = type(self).__new__(type(self))
            memo[id(self)] = new
            new.__setstate__(copy.deepcopy(self.__getstate__(), memo))
            return new

    def __setstate__(self, state: dict) -> None:
        gone = state.pop("_gone", {})
        self.__dict__.update(state)
        try:
            self._gone = weakref.WeakValueDictionary(gone)
            # images are found by id(), which a copy does not keep
            self._images = {id(image): (image, img) for image, img in self._images.values()}
        except (TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"snapshot: {e}") from e
        self._restored()

    def _restored(self) -> None:
        """Raise ``ValueError("snapshot: ...")`` if the state just loaded is not
        one a machine could be in: the core checked its own tables when it was
        restored (``pymmu._snapshot.restore``); this checks the Python level
        against it (``_check_restored``). Called by ``__setstate__`` and again
        by each ``Process.__setstate__`` that comes after it (see there)."""
        try:
            problem = self._check_restored()
        except Exception as e:           # a value of a wrong type somewhere
            problem = f"{type(e).__name__}: {e}"
        if problem is not None:
            raise ValueError(f"snapshot: {problem}")

    def _check_restored(self) -> str | None:
        """The first disagreement of the Python-level state with the core, or
        None: the address spaces are the core's live ones, each one's mappings
        (its ``AddressMap``) are exactly the table the core holds, and, once
        every process is loaded, the processes: unique pids, each running or
        suspended one in a live space it counts as a user of, parents and
        children that name each other, and the users of shared objects and
        images. What ``check`` would otherwise find later (a mapping's
        protection changed: the first check fails) or never (two processes
        sharing a space that is not a vfork's) is refused here.
        """
        from pymmu import _snapshot

        core = self._core
        if type(core) is not Core:
            return "the machine has no core"
        tables = _snapshot.spaces(core)
        if type(self._spaces) is not dict or set(self._spaces) != set(tables):
            return (f"the address spaces {sorted(self._spaces)} are not the core's "
                    f"{sorted(tables)}")
        top = self._top >> self._shift
        for mm, space in self._spaces.items():
            if type(space) is not _Space or space.mm != mm or type(space.amap) is not AddressMap:
                return f"address space {mm} is malformed"
            problem = next(filter(None, map(_vma_problem, space.amap)), None) \
                or space.amap.check(top)
            if problem:
                return f"mm {mm}: {problem}"
            if not np.array_equal(_table(space.amap), tables[mm][0]):
                return f"mm {mm}: its mappings are not the core's table"
        procs = self._procs
        if type(procs) is not dict:
            return "the process table is malformed"
        # pickling a Process loads the machine from inside the process's own
        # state: the machine's __setstate__ runs before that process has its
        # state, and the process's __setstate__ finishes the check
        if any("_space" not in vars(p) for p in procs.values() if isinstance(p, Process)):
            return None
        users: dict[int, int] = {}
        for pid, p in procs.items():
            if type(pid) is not int or not isinstance(p, Process) or p.pid != pid \
                    or not 0 < pid < self._next_pid:
                return f"the process table's entry {pid!r} is not its process"
            if p._m is not self or p._core is not core or not p._serves(core):
                return f"pid {pid} belongs to another machine"
            problem = p._check_state() if p.state != "exited" else f"pid {pid} has exited"
            if problem:
                return problem
            space = p._space
            if space is not None:
                if self._spaces[space.mm] is not space or p._mm != space.mm:
                    return f"pid {pid}: its address space is not the machine's"
                users[space.mm] = users.get(space.mm, 0) + 1
            elif p._mm != 0:
                return f"pid {pid} has exited but names address space {p._mm}"
            if p._active != (p.state == "running") or p._borrowing != (p._lender is not None):
                return f"pid {pid}: its running flags disagree with its state"
            lender = p._lender
            if lender is not None and (lender._borrower is not p or lender._space is not space):
                return f"pid {pid}: its vfork lender is not lending to it"
            if p._borrower is not None and p._borrower._lender is not p:
                return f"pid {pid}: its vfork child is not borrowing from it"
            if p.ppid != 0 and (p.ppid not in procs
                                or procs[p.ppid]._children.get(pid) is not p):
                return f"pid {pid}: its parent {p.ppid} does not have it as a child"
            kids = p._children
            zombies = set()
            for c in kids:
                if procs.get(c.pid) is not c or c.ppid != pid:
                    return f"pid {pid}: child {c.pid} is not its child"
                if c._status is not None:
                    zombies.add(c.pid)
            if kids._exited != len(zombies) or not zombies <= set(kids._heap) or any(
                    kids.get(q) is not None and q not in zombies for q in kids._heap):
                return f"pid {pid}: its exited children are not the zombies among them"
        for mm, space in self._spaces.items():
            if space.users != users.get(mm, 0) or not space.users:
                return f"address space {mm} has {users.get(mm, 0)} processes, not {space.users}"
            made_for = procs.get(tables[mm][1])
            if made_for is None or made_for._space is not space:
                return f"address space {mm} was made for pid {tables[mm][1]}, not one of its users"
        if any(pid in procs or not 0 < pid < self._next_pid for pid in self._gone):
            return "an exited process's pid is also a live one's, or was never given"
        return self._check_backings()

    def __repr__(self) -> str:
        return (f"Machine(frames={self.frames}, page_size={self.page_size}, "
                f"swap_slots={self.swap_slots}, policy={self.policy!r}, "
                f"frames_free={self.frames_free})")


class Process(ProcessCore):
    """A process: a pid, a parent, a state and an address space.

    Made by ``Machine.spawn``, ``fork`` and ``vfork``; never constructed directly.
    ``state`` is "running", "suspended" (lending its space to a vfork child),
    "zombie" (exited, not yet waited for) or "exited".
    """

    def __init__(self, machine: Machine, pid: int, ppid: int, space: _Space):
        super().__init__(machine._core, pid, space.mm, machine.strict_vfork)
        self._m = machine
        self._core = machine._core
        self.ppid = ppid
        self._space: _Space | None = space
        self._children = Children()
        self._lender: Process | None = None      # whom we borrow from (vfork child)
        self._borrower: Process | None = None    # who borrows from us (we are suspended)
        self._status: int | None = None
        self._exited = False

    # ---- state -----------------------------------------------------------

    @property
    def state(self) -> str:
        """"running", "suspended", "zombie" or "exited"."""
        if self._exited:
            return "exited"
        if self._status is not None:
            return "zombie"
        if self._borrower is not None:
            return "suspended"
        return "running"

    @property
    def stats(self) -> TMapping[str, int]:
        """This process's counters since it was created (a copy)."""
        self._m._guard()
        return dict(zip(STAT_NAMES, self._stats.tolist()))

    def _running(self, what: str) -> None:
        # (its callers hold the machine: another thread and a policy hook were
        # refused before anything changed)
        state = self.state
        if state != "running":
            raise ProcessStateError(f"pid {self.pid} is {state}: cannot {what}")

    def __setstate__(self, state: dict) -> None:
        # (a Process pickles its __dict__ through ProcessCore.__reduce__)
        self.__dict__.update(state)
        m = self.__dict__.get("_m")
        if "_spaces" in vars(m):     # the machine came first: its check waited for this
            m._restored()

    def _check_state(self) -> str | None:
        alive = self._space is not None
        if alive != (self.state in ("running", "suspended")):
            return f"pid {self.pid}: state {self.state} but address space present={alive}"
        if alive and self._space.mm not in self._m._spaces:
            return f"pid {self.pid}: uses a freed address space"
        return None

    # ---- mappings --------------------------------------------------------

    def _range(self, addr, length) -> tuple[int, int]:
        """Check ``addr``/``length`` of munmap/mprotect; return the page range."""
        addr = as_int(addr, "addr")
        length = as_int(length, "length")
        if addr < 0 or length < 0:
            raise ValueError(f"addr and length must not be negative ({addr:#x}, {length})")
        if length == 0:
            raise ValueError("length must be positive")
        ps = self._m.page_size
        if addr % ps:
            raise ValueError(f"addr {addr:#x} is not page-aligned (page size {ps})")
        end = addr + length
        if end > self._m._top:
            raise ValueError(f"range {addr:#x}+{length:#x} ends beyond the address space "
                             f"(2**{self._m.va_bits})")
        return addr >> self._m._shift, (end + ps - 1) >> self._m._shift

    @_holding
    def mmap(self, length, prot="rw", *, addr=None, shared=False) -> int:
        """Map ``length`` bytes (rounded up to pages); returns the base address.

        Parameters
        ----------
        length : int
            Bytes, > 0.
        prot : str or int
            ``"r"``, ``"rw"``, ``"r-x"``, ``""`` (a guard mapping), or PROT_ flags.
        addr : int, optional
            A page-aligned free address (like MAP_FIXED_NOREPLACE); by default
            the lowest free range at or above 0x10000.
        shared : bool
            A MAP_SHARED anonymous mapping, inherited shared across fork.
        """
        self._running("mmap")
        length = as_int(length, "length")
        if length <= 0:
            raise ValueError(f"length must be positive, got {length}")
        prot = parse_prot(prot)
        if not isinstance(shared, (bool, np.bool_)):
            raise TypeError(f"shared must be a bool, not {type(shared).__name__}")
        m = self._m
        npages = (length + m.page_size - 1) >> m._shift
        top = m._top >> m._shift
        amap = self._space.amap
        if addr is None:
            start = amap.find_free(npages, MMAP_MIN >> m._shift, top)
            if start is None:
                raise ValueError(f"no free range of {npages} pages in the address space")
        else:
            addr = as_int(addr, "addr")
            if addr < 0:
                raise ValueError(f"addr must not be negative, got {addr}")
            if addr % m.page_size:
                raise ValueError(f"addr {addr:#x} is not page-aligned (page size {m.page_size})")
            start = addr >> m._shift
            if start + npages > top:
                raise ValueError(f"mapping at {addr:#x} of {length:#x} bytes ends beyond "
                                 f"the address space (2**{m.va_bits})")
            if not amap.is_free(start, start + npages):
                raise ValueError(f"range {addr:#x}-{(start + npages) << m._shift:#x} "
                                 "overlaps an existing mapping")
        if shared:
            obj = self._core.obj_new(npages, start)
            vma = Vma(start, start + npages, prot, "shared", obj, 0)
            m._users[("shared", obj)] = 1
        else:
            vma = Vma(start, start + npages, prot, "anon")
        amap.insert(vma)
        m._push(self._space)
        return start << m._shift

    @_holding
    def munmap(self, addr, length) -> None:
        """Unmap every page in ``[addr, addr + length)``; holes are fine.

        Parameters
        ----------
        addr : int
            Page-aligned start.
        length : int
            Bytes (> 0), rounded up to whole pages.
        """
        self._running("munmap")
        lo, hi = self._range(addr, length)
        amap = self._space.amap
        removed = amap.remove(lo, hi)
        self._core.unmap(self._mm, lo, hi)
        self._m._push(self._space)
        # objects and images of which this space maps no piece any more (a
        # scan of this space only)
        self._m._unuse(_backings(AddressMap(removed)) - _backings(amap))
        self._core.hook_check()      # a policy's on_free that raised, now it is done

    @_holding
    def mprotect(self, addr, length, prot) -> None:
        """Change the protection of ``[addr, addr + length)``.

        Parameters
        ----------
        addr : int
            Page-aligned start.
        length : int
            Bytes (> 0), rounded up to whole pages. Every page must be mapped,
            else ``ValueError`` and nothing changes.
        prot : str or int
            As for ``mmap``. Resident pages are rewritten at once; a private page
            made writable takes a write-protect fault on its next write.
        """
        self._running("mprotect")
        lo, hi = self._range(addr, length)
        prot = parse_prot(prot)
        amap = self._space.amap
        if not amap.covers(lo, hi):
            raise ValueError(f"mprotect range {lo << self._m._shift:#x}-"
                             f"{hi << self._m._shift:#x} is not entirely mapped")
        amap.protect(lo, hi, prot)
        self._core.protect(self._mm, lo, hi, prot)
        self._m._push(self._space)

    # ---- accesses --------------------------------------------------------

    # read, fetch and write live in ProcessCore (Cython): their fast path takes
    # the common case; everything else lands in these two, which apply the rules.

    def _checked(self, addr, n, access: str) -> tuple[int, int]:
        """State, then types and signs, of an access."""
        self._running(access)
        addr = as_int(addr, "addr")
        n = as_int(n, "n")
        if addr < 0 or n < 0:
            raise ValueError(f"addr and n must not be negative ({addr}, {n})")
        return addr, n

    @_holding
    def _read_slow(self, addr, n, access: str) -> bytes:
        addr, n = self._checked(addr, n, "fetch" if access == "execute" else access)
        if n == 0:
            return b""
        if addr >= self._m._top:
            raise self._beyond(addr, access)
        # Longer than the address space: it faults anyway; keep a C-sized length.
        n = min(n, self._m._top + 1)
        return self._core.read(self._mm, self.pid, addr, n, 0 if access == "read" else 2,
                               self._stats)

    @_holding
    def _write_slow(self, addr, data) -> None:
        self._running("write")
        if self._borrowing and self._m.strict_vfork:
            raise ProcessStateError(f"pid {self.pid} is a vfork child: writes to the "
                                    "borrowed address space are refused (strict_vfork)")
        addr, _ = self._checked(addr, 0, "write")
        view = as_buffer(data)
        if len(view) == 0:
            return
        if addr >= self._m._top:
            raise self._beyond(addr, "write")
        self._write_buffer(addr, view)

    def _beyond(self, addr: int, access: str) -> SegmentationFault:
        """The fault of an access at or above ``2**va_bits`` (and its event; an
        address past 2**64 is named by the last 64-bit page)."""
        page = min(addr, (1 << 64) - 1) & -self._m.page_size
        self._core.refused(self.pid, page)
        return SegmentationFault(addr, access, self.pid)

    # ---- process lifecycle -------------------------------------------------

    @_holding
    def fork(self) -> "Process":
        """A child with a copy-on-write copy of this address space."""
        self._running("fork")
        m = self._m
        mm = self._core.mm_fork(self._mm)
        space = m._new_space(mm, self._space.amap.copy())
        child = m._new_process(self.pid, space)
        self._children.add(child)
        m._count(self, "forks")
        return child

    @_holding
    def vfork(self) -> "Process":
        """A child that borrows this address space; this process is suspended
        until the child calls ``exec`` or ``exit``."""
        self._running("vfork")
        m = self._m
        self._space.users += 1
        child = m._new_process(self.pid, self._space)
        child._lender = self
        child._borrowing = True
        self._borrower = child
        self._active = False
        self._children.add(child)
        m._count(self, "vforks")
        return child

    def _leave_space(self) -> None:
        """Give up the address space: return it to a vfork lender, or drop it."""
        space, self._space, self._mm = self._space, None, 0
        self._core.tlb_flush(space.mm)     # a context switch away from the space
        if self._lender is not None:
            self._lender._borrower = None
            self._lender._active = self._lender._status is None
            self._lender = None
            self._borrowing = False
        self._m._drop_space(space)

    @_holding
    def exec(self, image: Image) -> None:
        """Replace the address space with ``image`` (demand-paged: nothing is read now).

        Parameters
        ----------
        image : pymmu.Image
            Segments, entry point and stack size. A vfork child gives its
            parent's space back and the parent resumes.

        Raises
        ------
        ValueError
            If the image does not fit the address space (nothing changes).
        """
        self._running("exec")
        if not isinstance(image, Image):
            raise TypeError(f"exec needs a pymmu.Image, not {type(image).__name__}")
        m = self._m
        # checked on the segments before anything is laid out: a segment that
        # ends past the address space is refused at once, however large
        end = max((s.end for s in image.segments), default=0)
        if end > m._top:
            raise ValueError(f"image segment ends at {end:#x}, beyond the address space "
                             f"(2**{m.va_bits})")
        layout = image.layout(m.page_size)
        top = m._top >> m._shift
        stack = (image.stack_size + m.page_size - 1) >> m._shift
        if stack > top or (layout.runs and layout.runs[-1][1] > top - stack):
            raise ValueError("the stack would overlap an image segment")
        # (an image without segments maps nothing of it: it is not registered)
        img = m._image_id(image) if layout.runs else None
        amap = AddressMap([Vma(s, e, prot, "file", img) for s, e, prot in layout.runs])
        if stack:
            amap.insert(Vma(top - stack, top, PROT_READ | PROT_WRITE, "stack"))
        try:
            mm = self._core.mm_new()
        except BaseException:
            if img is not None and ("file", img) not in m._users:   # for this exec only
                m._release(("file", img))
            raise
        space = m._new_space(mm, amap)
        self._core.set_mm_pid(space.mm, self.pid)
        self._leave_space()
        self._space, self._mm = space, space.mm
        m._count(self, "execs")
        self._core.hook_check()

    @_holding
    def exit(self, status=0) -> None:
        """Terminate: release the address space, resume a vfork lender, orphan
        the children; a zombie until the parent waits (reaped at once if ppid 0).

        Parameters
        ----------
        status : int
            The exit status ``wait`` returns.
        """
        self._running("exit")
        status = as_int(status, "status")
        m = self._m
        self._leave_space()
        for c in self._children:
            if c._status is not None:
                c._exited = True          # a zombie orphan is reaped
                m._forget(c)
            else:
                c.ppid = 0
        self._children.clear()
        self._status = status
        self._active = False
        if self.ppid == 0:
            self._exited = True
            m._forget(self)
        else:                             # the parent has not exited (see above)
            m._procs[self.ppid]._children.exited(self.pid)
        self._core.hook_check()

    @_holding
    def wait(self, child=None) -> int:
        """Reap an exited child and return its exit status.

        Parameters
        ----------
        child : Process or int, optional
            The child (or its pid) to reap; by default the exited child with the
            lowest pid.

        Raises
        ------
        ProcessStateError
            If there is no such exited child: an emulator never blocks.
        """
        self._running("wait")
        kids = self._children
        if child is None:
            pid = kids.lowest_exited()
            if pid is None:
                raise ProcessStateError(f"pid {self.pid} has no exited child to wait for")
        else:
            if isinstance(child, Process):
                if child._m is not self._m:   # its pid names another process here
                    raise ProcessStateError(
                        f"child pid {child.pid} is a process of another Machine, not "
                        f"a child of pid {self.pid}")
                pid = child.pid
            else:
                pid = as_int(child, "child")
            target = kids.get(pid)
            if target is None:
                raise ProcessStateError(f"pid {pid} is not a child of pid {self.pid} "
                                        "that can be waited for")
            if target._status is None:
                raise ProcessStateError(f"child pid {pid} has not exited")
        target = kids.reap(pid)
        target._exited = True
        self._m._forget(target)
        return target._status

    # ---- introspection (never raises for state) --------------------------

    def _page_addr(self, addr) -> int:
        addr = as_int(addr, "addr")
        if addr < 0:
            raise ValueError(f"addr must not be negative, got {addr}")
        return addr

    @_holding
    def clear_accessed(self) -> int:
        """Clear the accessed (A) bit of every present PTE; returns how many were set.

        Also drops the process's TLB entries, as a kernel flushes them, so the
        next touch of each page sets A again: what a working-set estimator
        (or the clock algorithm by hand) needs.
        """
        self._running("clear accessed bits")
        return _introspect.clear_accessed(self._core, self._mm)

    def translate(self, addr) -> int | None:
        """Physical address that ``addr`` maps to, or None if not present.

        Never faults and never changes anything; works in every state.

        Parameters
        ----------
        addr : int
            A virtual address (>= 0).
        """
        addr = self._page_addr(addr)
        if self._space is None or addr >= self._m._top:
            return None
        return _introspect.translate(self._core, self._mm, addr)

    def pte(self, addr) -> int:
        """The raw PTE of the page holding ``addr`` (0 if none); see ``pymmu.pte``.

        Parameters
        ----------
        addr : int
            A virtual address (>= 0).
        """
        addr = self._page_addr(addr)
        if self._space is None or addr >= self._m._top:
            return 0
        return int(_introspect.pte(self._core, self._mm, addr))

    @_holding
    def page_table(self) -> np.ndarray:
        """One row per existing PTE (present or swap entry), sorted by address;
        see ``pymmu.pte.PAGE_TABLE_DTYPE``. A snapshot: the caller owns it."""
        if self._space is None:
            return np.zeros(0, _pte.PAGE_TABLE_DTYPE)
        vpns, ptes = self._core.ptes(self._mm)
        pfn = (ptes >> np.uint64(_pte.PFN_SHIFT)).astype(np.int64)
        present = (ptes & np.uint64(_pte.PRESENT)) != 0
        rc = _introspect.refcounts(self._core)[np.where(present, pfn, 0)]
        return _pte.page_table_rows(vpns << np.uint64(self._m._shift), ptes, rc)

    @_holding
    def maps(self) -> list[Mapping]:
        """The mappings, like ``/proc/PID/maps``."""
        if self._space is None:
            return []
        names = {"stack": "[stack]"}
        out = []
        for v in self._space.amap:
            if v.kind == "file":
                name = self._m._image_name(v.obj)
            else:
                name = names.get(v.kind, "")
            out.append(mapping_of(v, self._m._shift, name))
        return out

    @_holding
    def _resident(self) -> np.ndarray:
        """Refcounts of the frames this process maps (zero page excluded)."""
        if self._space is None:
            return np.zeros(0, np.int64)
        _, ptes = self._core.ptes(self._mm)
        ptes = ptes[((ptes & np.uint64(_pte.PRESENT)) != 0)
                    & ((ptes & np.uint64(_pte.ZERO)) == 0)]
        pfn = (ptes >> np.uint64(_pte.PFN_SHIFT)).astype(np.int64)
        return _introspect.refcounts(self._core)[pfn].astype(np.int64)

    @property
    def rss(self) -> int:
        """Resident bytes: present pages, not counting zero-page mappings."""
        return len(self._resident()) * self._m.page_size

    @property
    def pss(self) -> int:
        """Proportional set size: page_size / sharers for each resident page,
        summed exactly and rounded down."""
        rc = self._resident()
        total = Fraction(0)
        for count, n in zip(*np.unique(rc, return_counts=True)):
            total += Fraction(int(n) * self._m.page_size, int(count))
        return int(total)

    @property
    def uss(self) -> int:
        """Unique set size: resident bytes that no other process maps."""
        return int(np.count_nonzero(self._resident() == 1)) * self._m.page_size

    def __deepcopy__(self, memo):
        """A copy of this process in a copy of its machine, made whole while
        the machine is held (like ``Machine.__deepcopy__``)."""
        with self._m._held():
            restore, args, state = self.__reduce__()
            new = restore(*copy.deepcopy(args, memo))
            memo[id(self)] = new
            if state:
                new.__setstate__(copy.deepcopy(state, memo))
            return new

    def __repr__(self) -> str:
        return f"<Process pid={self.pid} ppid={self.ppid} {self.state}>"

